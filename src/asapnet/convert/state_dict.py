"""Reading a reference checkpoint (tensors only, ``torch.load(weights_only=True)``) and loading its tensors into an
asapnet model under mapped names, with one-line reports of missing, unexpected or mis-shaped keys."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

PathLike = Union[str, os.PathLike]


StateDict = Dict[str, torch.Tensor]


#: (model, registry name, config) of a conversion
Converted = Tuple[nn.Module, str, Dict[str, Any]]


_NESTED_KEYS = ("state_dict", "netG", "G", "generator", "model", "params_ema", "params")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def load_reference_state_dict(path: PathLike, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Read the generator state dict of a reference checkpoint (``.pth``), tensors only.

    The file is read with ``torch.load(map_location="cpu", weights_only=True)``: no code in it is
    run. A bare state dict is taken as is; otherwise the one under ``key`` (dots walk nested
    dicts), or under ``state_dict`` / ``netG`` / ``G`` / ``generator`` / ``model`` /
    ``params_ema`` / ``params``, or the only state dict among the values. A ``module.`` prefix
    (``DataParallel``) is removed. Floating-point tensors are returned as float32.

    Returns:
        {name: tensor} on the CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a weights-only PyTorch file, or no state dict is found in it
            (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip / pickle file), EOFError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path}: cannot be read as a PyTorch weights file with weights_only=True ({first})") from None
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                raise ValueError(f"{path}: has no entry {key!r}")
            obj = obj[part]
        if not _is_state_dict(obj):
            raise ValueError(f"{path}: entry {key!r} is not a state dict of tensors")
    elif not _is_state_dict(obj):
        found = None
        if isinstance(obj, Mapping):
            found = next((obj[k] for k in _NESTED_KEYS if k in obj and _is_state_dict(obj[k])), None)
            if found is None:
                cands = [v for v in obj.values() if _is_state_dict(v)]
                found = cands[0] if len(cands) == 1 else None
        if found is None:
            what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{path}: no generator state dict found ({what}); give --key")
        obj = found
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


# PyTorch's spectral-norm parametrization <-> the reference's torch.nn.utils.spectral_norm names
_SN_OURS_TO_REF = ((".parametrizations.weight.original", ".weight_orig"),
                   (".parametrizations.weight.0._u", ".weight_u"),
                   (".parametrizations.weight.0._v", ".weight_v"))


def _sn_ref_name(key: str) -> str:
    for ours, ref in _SN_OURS_TO_REF:
        if key.endswith(ours):
            return key[: -len(ours)] + ref
    return key


def _upgrade_old_spectral_norm(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """State dicts of PyTorch < 1.0 store ``weight_orig``, ``weight_u`` and the normalised
    ``weight`` but no ``weight_v``. Keep the normalised weight as ``weight_orig`` and choose
    v = W^T u / |W^T u|^2, so that u^T W v = 1 and the parametrization computes W itself."""
    sd = dict(sd)
    for k in [k for k in sd if k.endswith(".weight_orig")]:
        p = k[: -len("_orig")]
        if p + "_v" not in sd and p in sd and p + "_u" in sd:
            w = sd.pop(p)
            wtu = w.flatten(1).t().double() @ sd[p + "_u"].double()
            sd[k] = w
            sd[p + "_v"] = (wtu / wtu.dot(wtu)).float()
    return sd


def _shape(t: Union[torch.Tensor, Tuple[int, ...]]) -> Tuple[int, ...]:
    return tuple(t.shape) if torch.is_tensor(t) else tuple(t)


def _check_keys(sd: Mapping[str, torch.Tensor], expected: Dict[str, Tuple[int, ...]], name: str, what: str,
                hint: Callable[[str], str]) -> None:
    """Raise ValueError naming the first key of ``expected`` that is missing from ``sd`` or has
    another shape, else the first key of ``sd`` not expected (``num_batches_tracked`` counters may
    be missing or extra). ``hint(key)`` is appended to the message."""
    problem, key = None, None
    for k, shape in expected.items():
        if k not in sd:
            if k.endswith("num_batches_tracked"):
                continue
            problem, key = f"missing key {k!r} (expected shape {shape})", k
        elif _shape(sd[k]) != shape:
            problem, key = f"key {k!r}: expected shape {shape}, found {_shape(sd[k])}", k
        if problem:
            break
    if problem is None:
        extra = [k for k in sd if k not in expected and not k.endswith("num_batches_tracked")]
        if extra:
            problem, key = f"unexpected key {extra[0]!r} (shape {_shape(sd[extra[0]])})", extra[0]
    if problem is not None:
        h = hint(key)
        raise ValueError(f"{name}: not a {what} with these options: {problem}" + (f"; {h}" if h else ""))


def _load_mapped(model: nn.Module, sd: Mapping[str, torch.Tensor], ref_name: Callable[[str], str],
                 transform: Optional[Callable[[str, torch.Tensor], torch.Tensor]], name: str, what: str,
                 hint: Callable[[str], str]) -> None:
    """Fill ``model`` from reference state dict ``sd``: our key k takes ``sd[ref_name(k)]``
    (through ``transform(k, tensor)`` if given) after the reference keys and shapes are checked."""
    ours = model.state_dict()
    mapping = {k: ref_name(k) for k in ours}
    expected = {mapping[k]: tuple(v.shape) for k, v in ours.items()}
    _check_keys(sd, expected, name, what, hint)
    new = {}
    for k, v in ours.items():
        r = mapping[k]
        if r not in sd:  # an optional num_batches_tracked counter
            new[k] = v
            continue
        t = sd[r]
        if transform is not None:
            t = transform(k, t)
        new[k] = t.to(v.dtype)
    model.load_state_dict(new)
