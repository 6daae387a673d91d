"""Model registry in the spirit of timm: ``@register_model`` next to each architecture,
``create_model(name, **kwargs)`` and ``list_models()`` as the one door to every model."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch.nn as nn

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {list_models()}")
    return _MODELS[name](**kwargs)


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered under ``name`` (to inspect its keyword arguments without building).

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {list_models()}")
    return _MODELS[name]


def list_models() -> List[str]:
    """Sorted names of every registered model."""
    return sorted(_MODELS)
