"""asapnet: fast image-to-image translation with Spatially-Adaptive Pixelwise Networks.

Shaham, Gharbi, Zhang, Shechtman, Michaeli. "Spatially-Adaptive Pixelwise Networks for Fast
Image Translation", CVPR 2021.

The names below are imported on first use (PEP 562), so that ``import asapnet.cli`` (every
``asapnet`` command, ``asapnet --help``) does not pay for importing torch before it needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY = {
    "ASAPConfig": "config", "DiscriminatorConfig": "config", "TrainConfig": "config", "asap_preset": "config",
    "ASAP_PRESETS": "config",
    "create_model": "models", "list_models": "models", "register_model": "models",
    "Translator": "pipeline", "load_model": "pipeline", "shipped_models": "pipeline",
}

__all__ = ["ASAPConfig", "DiscriminatorConfig", "TrainConfig", "asap_preset", "ASAP_PRESETS",
           "create_model", "list_models", "register_model", "load_model", "shipped_models", "Translator",
           "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asapnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
