"""Checkpoints: tensors in safetensors, everything else in JSON (never pickle).

Files are written atomically (temporary file + ``os.replace``), so a crash leaves either the
previous or the new checkpoint, never a truncated one.
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ASAPConfig
from .validation import check_config

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


#: dtypes of generator weights (buffers named ``num_batches_tracked`` are integer counters).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def check_generator_meta(path: PathLike, meta: Dict[str, Any], need_config: bool = True) -> None:
    """Check a checkpoint's metadata before anything is built: ``model`` names a registered model,
    ``config`` (when present, or always with ``need_config``) is a JSON object.

    Raises:
        ValueError: one line naming ``path`` and the problem.
    """
    from .models import list_models

    if not isinstance(meta, dict) or "model" not in meta:
        raise ValueError(f"{path}: safetensors file has no asapnet model/config metadata")
    name = meta["model"]
    if not isinstance(name, str) or name not in list_models():
        raise ValueError(f"{path}: unknown model {str(name)[:60]!r} in its metadata; known: {list_models()}")
    if "config" not in meta:
        if need_config:
            raise ValueError(f"{path}: safetensors file has no asapnet model/config metadata")
        return
    cfg = meta["config"]
    if not isinstance(cfg, dict):
        shown = "null" if cfg is None else f"{type(cfg).__name__} {str(cfg)[:60]!r}"
        raise ValueError(f"{path}: the {name!r} config in its metadata must be a JSON object, got {shown}")


def check_generator_tensors(path: PathLike, tensors: Dict[str, torch.Tensor]) -> None:
    """Check generator weights before they are loaded: at least one tensor, every weight of a
    floating-point dtype (:data:`FLOAT_DTYPES`; ``*.num_batches_tracked`` counters are integer
    scalars) and finite (no NaN or inf).

    Raises:
        ValueError: one line naming ``path``, the first bad tensor and the problem.
    """
    if not tensors:
        raise ValueError(f"{path}: holds no generator weights")
    for k, t in tensors.items():
        if k.endswith("num_batches_tracked"):
            if t.dtype not in (torch.int64, torch.int32) or t.numel() != 1:
                raise ValueError(f"{path}: tensor {k!r} must be an integer counter, got {t.dtype} {list(t.shape)}")
            continue
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{path}: tensor {k!r} has dtype {str(t.dtype).replace('torch.', '')}; generator "
                             "weights must be floating point (float16, bfloat16, float32 or float64)")
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n = int((~finite).sum())
            raise ValueError(f"{path}: tensor {k!r} holds {n} non-finite value(s) (NaN or inf) of {t.numel()}; "
                             "the weights are broken (diverged training or a damaged file)")


def model_kwargs(name: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword arguments of ``create_model(name, ...)`` from a checkpoint's stored ``config``,
    type- and range-checked against the model's signature (:func:`asapnet.validation.check_config`):
    ``{"cfg": ASAPConfig}`` for ``asap``, the config itself for the other models.

    Raises:
        ValueError: unknown model, unknown or missing keys, values of the wrong type or range.
    """
    from .models import model_factory

    if name == "asap":
        return {"cfg": ASAPConfig.from_dict(config)}
    try:
        fn = model_factory(name)
    except KeyError as e:
        raise ValueError(_one_line(e)) from None

    def hints_of(f) -> Dict[str, Any]:
        try:
            return typing.get_type_hints(f)
        except Exception:  # an annotation that does not evaluate: its values are not type-checked
            return {}

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        cls = hints_of(fn).get("return")  # factory(**kwargs) -> Class(**kwargs): check Class's arguments
        if isinstance(cls, type):
            fn = cls.__init__
            params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return check_config(f"{name!r} model", config, {str(k): Any for k in (config or {})})  # no signature
    hints = hints_of(fn)
    named = {n: p for n, p in params.items() if n != "self"
             and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return check_config(f"{name!r} model", config, {n: hints.get(n, Any) for n in named},
                        required=[n for n, p in named.items() if p.default is inspect.Parameter.empty])


def _check_fit(path: PathLike, expected: Dict[str, torch.Tensor], tensors: Dict[str, torch.Tensor]) -> None:
    """The weights of ``path`` have the names, shapes and kinds (float / integer) of ``expected``
    (a model's state dict, e.g. built on the meta device)."""
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = ([f"{len(missing)} missing (first {missing[0]!r})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected (first {unexpected[0]!r})"] if unexpected else [])
        raise ValueError(f"{path}: weights do not match the stored config: {', '.join(parts)}")
    for k, v in expected.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(v.shape):
            raise ValueError(f"{path}: weights do not match the stored config: {k!r} is {list(t.shape)} in the "
                             f"file, {list(v.shape)} in the model the config builds")
        if t.is_floating_point() != v.is_floating_point():
            raise ValueError(f"{path}: weights do not match the stored config: {k!r} is {t.dtype} in the file, "
                             f"{v.dtype} in the model")


def _generator_tensors(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Generator weights (``G.`` prefix of a training state removed) and metadata of ``path``,
    checked (:func:`check_generator_meta`, :func:`check_generator_tensors`).

    Raises:
        FileNotFoundError, ValueError: missing file, no asapnet ``model`` metadata, an unknown
        model, a config that is not a JSON object, weights that are not finite floating point.
    """
    tensors, meta = load_tensors(path)
    check_generator_meta(path, meta, need_config=False)
    if any(k.startswith("G.") for k in tensors):
        tensors = unprefixed("G", tensors)
    check_generator_tensors(path, tensors)
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

    Everything is checked before the model is built: the metadata (a registered ``model``, a
    ``config`` object whose values have the types and ranges of the model's arguments:
    :func:`model_kwargs`), the weights (finite floating point: :func:`check_generator_tensors`),
    and the names and shapes of the weights against the model the config builds, first on the
    ``meta`` device (no memory), so a config describing a huge model is refused before allocating.

    Returns:
        (model in eval mode, metadata dict with ``model`` and ``config``).

    Raises:
        FileNotFoundError, ValueError: missing file, not an asapnet checkpoint, an unknown model,
        an invalid config, non-finite or non-float weights, or weights that do not fit the stored
        config (one line naming the file).
    """
    from .models import create_model

    tensors, meta = _generator_tensors(path)
    check_generator_meta(path, meta, need_config=True)
    name = meta["model"]
    try:
        kwargs = model_kwargs(name, meta["config"])
    except ValueError as e:
        raise ValueError(f"{path}: invalid config in its metadata: {_one_line(e)}") from None
    build_errors = (TypeError, ValueError, KeyError, IndexError, AssertionError, ZeroDivisionError)
    try:
        with torch.device("meta"):  # shapes only, nothing allocated
            skeleton = create_model(name, **kwargs)
    except build_errors as e:
        raise ValueError(f"{path}: its {name!r} config does not build a model: {_one_line(e)}") from None
    except (RuntimeError, NotImplementedError):
        skeleton = None  # a model that cannot be built on the meta device: checked after building
    if skeleton is not None:
        _check_fit(path, skeleton.state_dict(), tensors)
        del skeleton
    try:
        model = create_model(name, **kwargs)
    except build_errors as e:
        raise ValueError(f"{path}: its {name!r} config does not build a model: {_one_line(e)}") from None
    _check_fit(path, model.state_dict(), tensors)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the stored config: {_one_line(e)}") from None
    return model.to(map_location).eval(), meta


def require_translator(model: nn.Module, meta: Dict[str, Any], path: PathLike) -> Tuple[int, bool]:
    """Check that generator ``model`` of checkpoint ``path`` (as :func:`load_generator` returned
    them) translates label maps into photos, as ``asapnet translate``, the demo and
    :class:`asapnet.Translator` need: not a denoiser / deblurrer / segmenter checkpoint, a known
    number of label classes (``num_classes`` in the metadata, or the ASAP-Net input channels),
    input channels = classes (+1 instance-edge channel with ``use_instance``), 3 output channels.

    Returns:
        (num_classes, use_instance).

    Raises:
        ValueError: one line naming ``path``, what the checkpoint is and which command takes it.
    """
    name = meta.get("model", type(model).__name__)
    task = meta.get("task")
    if task not in (None, "translate"):
        cmd = {"denoise": "asapnet denoise", "deblur": "asapnet deblur"}.get(str(task))
        hint = f"; use '{cmd}'" if cmd else ""
        raise ValueError(f"{path}: is a {task} checkpoint ({name}), not a label-map-to-photo translator{hint}")
    cfg = getattr(model, "cfg", None)
    in_ch = getattr(cfg, "in_channels", None)
    if in_ch is None:
        in_ch = getattr(model, "in_channels", None)
    out_ch = getattr(cfg, "out_channels", None)
    if out_ch is None:
        out_ch = getattr(model, "out_channels", None)
    nc = meta.get("num_classes")
    use_instance = meta.get("use_instance", False)
    if not isinstance(use_instance, bool):
        raise ValueError(f"{path}: 'use_instance' in its metadata must be true/false, got {use_instance!r}")
    if nc is None:
        if cfg is None or in_ch is None:
            raise ValueError(f"{path}: is not a label-map-to-photo translator ({name} checkpoint without "
                             "'num_classes' in its metadata)")
        nc = int(in_ch) - int(use_instance)
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc < 10_000:
        raise ValueError(f"{path}: 'num_classes' in its metadata must be an integer in [1, 10000), got {nc!r}")
    if isinstance(in_ch, int) and in_ch != nc + int(use_instance):
        raise ValueError(f"{path}: its {name} generator reads {in_ch} input channels, not the {nc} label classes"
                         f"{' + 1 instance-edge channel' if use_instance else ''} of its metadata")
    if isinstance(out_ch, int) and out_ch != 3:
        raise ValueError(f"{path}: its {name} generator writes {out_ch} channel(s), not an RGB photo; "
                         "it is not a label-map-to-photo translator")
    return nc, use_instance


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
    from .models.asap import ASAPGenerator, rescale_hr_weights
    target = None
    if isinstance(model, ASAPGenerator):  # an ASAP checkpoint with the other hr_weight_scale: same function
        src = (meta.get("config") or {}).get("hr_weight_scale", "fan_in")
        if src != model.cfg.hr_weight_scale:
            target = model.cfg.hr_weight_scale
            rescale_hr_weights(model, src)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights of a {meta['model']!r} checkpoint do not fit this model: {e}") from None
    if target is not None:
        rescale_hr_weights(model, target)
    return meta
