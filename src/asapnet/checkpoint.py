"""Checkpoints: tensors in safetensors, everything else in JSON (never pickle).

Files are written atomically (temporary file + ``os.replace``), so a crash leaves either the
previous or the new checkpoint, never a truncated one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ASAPConfig

PathLike = str | os.PathLike


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Atomically replace the text file ``path`` with ``text``."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_tensors(path: PathLike, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> None:
    """Atomically write ``tensors`` to a safetensors file with ``meta`` (JSON) as metadata."""
    t = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(t, tmp, metadata={"asapnet": json.dumps(meta)}))


def load_tensors(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read a safetensors file written by :func:`save_tensors` -> (tensors, meta).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a valid safetensors checkpoint (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("asapnet", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{path}: not a valid safetensors checkpoint ({e})") from None
    return tensors, meta


def prefixed(prefix: str, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def unprefixed(prefix: str, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix + ".")}


def optimizer_tensors(opt: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> None:
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_generator(path: PathLike, model: nn.Module, model_name: str, config: Dict[str, Any],
                   extra: Dict[str, Any] | None = None) -> None:
    """Write an inference checkpoint: ``path`` (safetensors, config in its metadata) and a
    human-readable ``path.json`` with the same config."""
    meta = {"model": model_name, "config": config, **(extra or {})}
    save_tensors(path, model.state_dict(), meta)
    _atomic_write(Path(str(path) + ".json"),
                  lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))


def _generator_tensors(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Generator weights (``G.`` prefix of a training state removed) and metadata of ``path``.

    Raises:
        FileNotFoundError, ValueError: missing file, or no asapnet ``model`` metadata.
    """
    tensors, meta = load_tensors(path)
    if "model" not in meta:
        raise ValueError(f"{path}: safetensors file has no asapnet model/config metadata")
    if any(k.startswith("G.") for k in tensors):
        tensors = unprefixed("G", tensors)
    return tensors, meta


def init_discriminator_from_state(D: nn.Module, path: PathLike) -> bool:
    """Copy the discriminator weights of training state ``path`` (``D.`` tensors) into ``D``.

    Used by ``train --init RUN/state.safetensors`` to continue a GAN with a changed generator
    configuration (for example ``--param-upsampling``) without retraining the discriminator from
    scratch. Returns False (nothing copied) when ``path`` holds no discriminator, e.g. a shipped
    generator file.

    Raises:
        ValueError: the state's discriminator does not fit ``D`` (the message names the file).
    """
    tensors, _ = load_tensors(path)
    if not any(k.startswith("D.") for k in tensors):
        return False
    try:
        D.load_state_dict(unprefixed("D", tensors))
    except RuntimeError as e:
        raise ValueError(f"{path}: its discriminator does not fit this run's (--ndf, --n-layers-d, --num-d): {e}") from None
    return True


def load_generator(path: PathLike, map_location: str = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a generator checkpoint written by :func:`save_generator` or a training state.

    Returns:
        (model in eval mode, metadata dict with ``model`` and ``config``).

    Raises:
        FileNotFoundError, ValueError: missing file, not an asapnet checkpoint, or weights that do
        not fit the stored config.
    """
    from .models import create_model

    tensors, meta = _generator_tensors(path)
    if "config" not in meta:
        raise ValueError(f"{path}: safetensors file has no asapnet model/config metadata")
    cfg = meta["config"]
    model = create_model(meta["model"], cfg=ASAPConfig.from_dict(cfg)) if meta["model"] == "asap" \
        else create_model(meta["model"], **cfg)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the stored config: {e}") from None
    return model.to(map_location).eval(), meta


def trained_steps(meta: Dict[str, Any]) -> Optional[int]:
    """Training steps behind a checkpoint's weights, from its metadata.

    A shipped file that continued earlier runs (``--init``) stores the chain's length as
    ``total_steps`` and its last run's as ``step``; otherwise ``step``. ``None`` if neither is there.
    """
    steps = meta.get("total_steps", meta.get("step"))
    return None if steps is None else int(steps)


def init_from_checkpoint(model: nn.Module, path: PathLike) -> Dict[str, Any]:
    """Copy the weights of generator checkpoint ``path`` into ``model`` (fine-tuning start).

    Only the weights are taken; the optimiser state, step and schedule of the new run start fresh.
    ``model`` must have the architecture stored in the checkpoint.

    Returns:
        the checkpoint's metadata (``model``, ``config``, ``step`` ...).

    Raises:
        FileNotFoundError, ValueError: missing file, not an asapnet checkpoint, or weights whose
        names or shapes do not fit ``model`` (the message names the file).
    """
    tensors, meta = _generator_tensors(path)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights of a {meta['model']!r} checkpoint do not fit this model: {e}") from None
    return meta
