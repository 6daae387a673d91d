"""ONNX export of ASAP-Net generators (``asapnet export``) and onnxruntime inference.

    asapnet export --checkpoint runs/cs/generator.safetensors -o model.onnx

The exported graph takes ``input`` (N, C, H, W) float32 with N, H and W dynamic and returns
``output`` (N, out_channels, H, W) float32 (in [-1, 1] with the tanh output). Any H, W >= 1
works: the graph replicate-pads to multiples of S and crops back, like
:meth:`ASAPGenerator.forward`. What differs from the PyTorch module, and why:

* the HR stream is the batched :meth:`HRStream.forward_reference` (the fast path loops in
  Python and cannot be traced);
* spectral normalisation is folded into plain weights (the eval-mode weights, bit for bit);
* the anti-aliased bilinear downsampling by S1 before the LR stream is written as a strided
  depthwise convolution with the same triangle kernel (ONNX ``Resize`` with ``antialias=1``
  uses a different filter: measured 0.05 apart on [0, 1] data);
* the padding is unconditional (padding by 0 is a no-op), so the graph has no size branch.

One difference stays: an input of at most S x S pixels gives the LR stream a single cell, which
PyTorch's instance norm refuses (ValueError) while ONNX ``InstanceNormalization`` normalises it
to 0. :func:`verify_onnx` therefore checks sizes of more than one tile.

Library entry points: :func:`export_onnx`, :func:`verify_onnx`, :func:`onnxruntime_runner`;
``asapnet export`` runs them (:mod:`asapnet.tasks.translate.export`).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..models.asap import ASAPGenerator, tent_downsample
from .optimize import prepare_for_inference
# choices shared with the command line (asapnet.options, no torch)
from ..options import ONNX_DEFAULT_OPSET, ONNX_DEFAULT_OPSET_DYNAMO

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
Size = Tuple[int, int]

#: Default ONNX opset of the TorchScript exporter: every operator of the graph (Conv, Pad "edge",
#: InstanceNormalization, MatMul, Slice with dynamic ends) is in opset 17, which onnxruntime
#: >= 1.14 runs. The torch.export-based exporter starts at opset 18.
DEFAULT_OPSET = ONNX_DEFAULT_OPSET  # 17
DEFAULT_OPSET_DYNAMO = ONNX_DEFAULT_OPSET_DYNAMO  # 18


# ---------------------------------------------------------------------------------------------
# the traceable generator
# ---------------------------------------------------------------------------------------------


def triangle_kernel(factor: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """PyTorch's anti-aliased bilinear filter for downsampling by an integer ``factor`` s:
    the triangle 1 - |d| / s at d = -s + 1/2, ..., s - 1/2, as a (1, 1, 2s, 2s) outer product."""
    d = torch.arange(2 * factor, dtype=torch.float64) - factor + 0.5
    k = (1 - d.abs() / factor).clamp(min=0)
    return (k[:, None] * k[None, :]).to(dtype)[None, None]


def antialiased_downsample(x: torch.Tensor, factor: int, kernel: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.interpolate(x, scale 1/factor, "bilinear", align_corners=False, antialias=True)``
    as a strided depthwise convolution, for inputs whose H and W are multiples of ``factor``.

    The filter is :func:`triangle_kernel` (2s taps, stride s, s/2 taps of padding), renormalised
    where it overhangs the border; the renormalisation is the same convolution of an all-ones
    image. Matches PyTorch to ~1e-7.

    Args:
        x: (N, C, H, W) float, H and W multiples of ``factor``.
        factor: an even integer >= 2 (S1 is a power of two).
        kernel: :func:`triangle_kernel` expanded to (C, 1, 2s, 2s); pass it when tracing, so that
            the convolution weight has a static shape.

    Returns:
        (N, C, H / factor, W / factor), same dtype.
    """
    if factor < 2 or factor % 2:
        raise ValueError(f"factor must be an even integer >= 2, got {factor}")
    if kernel is None:
        kernel = triangle_kernel(factor, x.dtype).to(x.device).expand(x.shape[1], 1, -1, -1)
    num = F.conv2d(x, kernel, stride=factor, padding=factor // 2, groups=kernel.shape[0])
    den = F.conv2d(torch.ones_like(x[:, :1]), kernel[:1], stride=factor, padding=factor // 2)
    return num / den


class ExportableASAP(nn.Module):
    """Wraps an :class:`ASAPGenerator` into a module whose trace is valid for every H, W.

    Same input and output as the generator's ``forward`` (no ``region``). The wrapped module is a
    fresh copy with spectral norm folded into the weights (:func:`prepare_for_inference`); the
    caller's model, prepared or not, is not modified.
    """

    def __init__(self, model: ASAPGenerator):
        super().__init__()
        g = ASAPGenerator(model.cfg)
        if not any(parametrize.is_parametrized(m) for m in model.modules()):
            prepare_for_inference(g)  # ``model`` was prepared already: same state-dict keys
        g.load_state_dict(model.state_dict())
        prepare_for_inference(g)  # eval mode, spectral norm folded into the weights
        g.hr.fast = False
        self.g = g.to(next(model.parameters()).device)
        s1, C = model.cfg.s1, model.cfg.in_channels
        k = triangle_kernel(s1).expand(C, 1, -1, -1).contiguous() if s1 > 1 else torch.zeros(0)
        self.register_buffer("aa_kernel", k.to(next(model.parameters()).device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, S, s1 = self.g, self.g.S, self.g.cfg.s1
        H, W = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (0, (S - W % S) % S, 0, (S - H % S) % S), mode="replicate")
        if s1 == 1:
            xl = xp
        elif g.cfg.s1_filter == "tent":  # converted reference checkpoints
            xl = tent_downsample(xp, s1)
        else:
            xl = antialiased_downsample(xp, s1, self.aa_kernel)
        params = g.lr(xl)
        y = g.hr.forward_reference(g.hr_input(xp), params)[..., :H, :W]
        return g._finish(y, x)


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


def _load(checkpoint_or_model: Union[PathLike, nn.Module]) -> Tuple[ASAPGenerator, Dict]:
    if isinstance(checkpoint_or_model, nn.Module):
        model, meta = checkpoint_or_model, {}
    else:
        from ..checkpoint import load_generator
        model, meta = load_generator(checkpoint_or_model)
    if not isinstance(model, ASAPGenerator):
        raise ValueError(f"ONNX export supports ASAP-Net generators only, got {type(model).__name__}")
    return model.eval(), meta


def example_input(in_channels: int, height: int, width: int, num_classes: Optional[int] = None,
                  seed: int = 0) -> torch.Tensor:
    """A deterministic test input (1, in_channels, height, width) float32.

    With ``num_classes`` (label-map models): one-hot class ids drawn on 8 x 8 pixel blocks, plus
    the edge map of those blocks as the last channel when ``in_channels == num_classes + 1``.
    Without (image models): uniform values in [-1, 1].
    """
    g = torch.Generator().manual_seed(seed)
    if not num_classes:
        return torch.rand(1, in_channels, height, width, generator=g) * 2 - 1
    from ..data.labels import instance_edges, one_hot
    ids = torch.randint(0, num_classes, (1, -(-height // 8), -(-width // 8)), generator=g)
    ids = ids.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :height, :width]
    edges = None
    if in_channels == num_classes + 1:
        edges = torch.from_numpy(instance_edges(ids[0].numpy()))[None, None]
    return one_hot(ids, num_classes, edges)


#: Lowest opset :func:`export_onnx` writes (InstanceNormalization / Pad semantics used here).
MIN_OPSET = 17


def max_opset(dynamo: bool = False) -> int:
    """Highest ONNX opset the installed ``torch.onnx`` exports: the TorchScript exporter's, or
    with ``dynamo`` the ``torch.export``-based one's (from ``torch.onnx._constants``; 20 / 23 when
    torch does not say)."""
    try:
        from torch.onnx import _constants as c
    except ImportError:  # pragma: no cover - a torch without the module
        return 23 if dynamo else 20
    if dynamo:
        return int(getattr(c, "ONNX_MAX_OPSET", 23))
    return int(getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(c, "ONNX_MAX_OPSET", 20)))


def check_opset(opset: int, dynamo: bool = False, option: str = "opset") -> None:
    """Refuse an opset :func:`export_onnx` cannot write with the installed torch.

    Raises:
        ValueError: ``"<option> N: ..."`` with the range this torch exports.
    """
    hi, hi_dynamo = max_opset(dynamo), max_opset(True)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= hi:
        more = " with --dynamo" if dynamo else (f", up to {hi_dynamo} with --dynamo" if hi_dynamo > hi else "")
        raise ValueError(f"{option} {opset}: the installed torch {torch.__version__.split('+')[0]} exports ONNX "
                         f"opsets {MIN_OPSET} (the lowest ASAP-Net's operators need) to {hi}{more}")


def export_onnx(checkpoint_or_model: Union[PathLike, nn.Module], path: PathLike, opset: Optional[int] = None,
                sample_size: Size = (70, 130), dynamo: bool = False) -> Path:
    """Export an ASAP-Net generator to ONNX with dynamic batch, height and width.

    Args:
        checkpoint_or_model: a generator checkpoint (``.safetensors``, see
            :func:`asapnet.checkpoint.load_generator`) or an :class:`ASAPGenerator`.
        path: the ``.onnx`` file to write (parent folders are created; written atomically).
        opset: ONNX opset version, from 17 to :func:`max_opset` (what the installed torch.onnx
            exports); default 17 (18 with ``dynamo``).
        sample_size: (H, W) of the tracing input; any size works, the graph does not depend on it.
        dynamo: use the ``torch.export``-based exporter (minutes on a small CPU) instead of the
            TorchScript one (about a second).

    Returns:
        ``path``. The model's metadata (``asapnet`` key of ``metadata_props``) holds the
        checkpoint metadata plus S, in_channels and out_channels, as JSON.

    Raises:
        FileNotFoundError, ValueError: missing or invalid checkpoint, a non-ASAP model, an opset
            out of range (:func:`check_opset`).
    """
    import onnx

    opset = opset or (DEFAULT_OPSET_DYNAMO if dynamo else DEFAULT_OPSET)
    check_opset(opset, dynamo)
    model, meta = _load(checkpoint_or_model)
    wrapper = ExportableASAP(model).eval()
    x = example_input(model.cfg.in_channels, *sample_size, num_classes=meta.get("num_classes"))
    x = x.to(next(model.parameters()).device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    axes = {0: "batch", 2: "height", 3: "width"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation of the TorchScript exporter, train-mode instance norm
            if dynamo:
                dim = torch.export.Dim.DYNAMIC
                prog = torch.onnx.export(wrapper, (x,), dynamo=True, opset_version=opset,
                                         input_names=["input"], output_names=["output"],
                                         dynamic_shapes={"x": {0: dim, 2: dim, 3: dim}})
                prog.save(str(tmp), external_data=False)
            else:
                torch.onnx.export(wrapper, (x,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": axes, "output": axes})
        proto = onnx.load(str(tmp))
        info = {**meta, "S": model.S, "in_channels": model.cfg.in_channels,
                "out_channels": model.cfg.out_channels}
        onnx.helper.set_model_props(proto, {"asapnet": json.dumps(info, default=str)})
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def onnx_metadata(path: PathLike) -> Dict:
    """The ``asapnet`` metadata written by :func:`export_onnx` ({} if absent)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return json.loads(sess.get_modelmeta().custom_metadata_map.get("asapnet", "{}"))


# ---------------------------------------------------------------------------------------------
# onnxruntime inference and verification
# ---------------------------------------------------------------------------------------------


def onnxruntime_runner(path: PathLike, threads: Optional[int] = None,
                       providers: Sequence[str] = ("CPUExecutionProvider",)) -> Callable:
    """An onnxruntime session for an exported model, as a function (for ``asapnet bench``).

    Args:
        path: ``.onnx`` file written by :func:`export_onnx`.
        threads: intra-op threads (default: ``torch.get_num_threads()``, so that PyTorch and
            onnxruntime are compared with the same number of cores).
        providers: onnxruntime execution providers.

    Returns:
        ``run(x)``: x (N, C, H, W) float32 as a ``torch.Tensor`` or ``np.ndarray`` -> output
        (N, out_channels, H, W) of the same kind (torch tensors come back on the CPU).

    Raises:
        FileNotFoundError: no such file. onnxruntime errors for a file that is not a valid model.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=list(providers))
    name = sess.get_inputs()[0].name

    def run(x):
        is_torch = isinstance(x, torch.Tensor)
        arr = x.detach().cpu().numpy() if is_torch else np.asarray(x)
        out = sess.run(None, {name: np.ascontiguousarray(arr, dtype=np.float32)})[0]
        return torch.from_numpy(out) if is_torch else out

    run.session = sess
    return run


def default_verify_sizes(S: int) -> Tuple[Size, Size]:
    """Two (H, W) sizes that are not multiples of S (so padding is exercised), differ from each
    other and from usual training crops, and span more than one S x S tile:
    (3S - 5, 5S + 3) and (2S + 7, 3S - 1); 187x323 and 135x191 for S = 64."""
    return (3 * S - 5, 5 * S + 3), (2 * S + 7, 3 * S - 1)


def verify_onnx(checkpoint_or_model: Union[PathLike, nn.Module], onnx_path: PathLike,
                sizes: Optional[Sequence[Size]] = None, seed: int = 0) -> Dict[Size, float]:
    """Compare onnxruntime with the PyTorch generator on test inputs of the given sizes.

    Args:
        checkpoint_or_model: the checkpoint or model that was exported.
        onnx_path: the exported ``.onnx`` file.
        sizes: (H, W) sizes; default :func:`default_verify_sizes`. Each must be more than one
            S x S tile (see the module docstring).
        seed: seed of :func:`example_input`.

    Returns:
        {(H, W): max abs difference of the outputs}; outputs lie in [-1, 1] with tanh.

    Raises:
        ValueError: a size of at most S x S, or an output of the wrong shape.
    """
    model, meta = _load(checkpoint_or_model)
    S = model.S
    sizes = list(sizes or default_verify_sizes(S))
    run = onnxruntime_runner(onnx_path)
    diffs: Dict[Size, float] = {}
    for h, w in sizes:
        if h <= S and w <= S:
            raise ValueError(f"verify size {h}x{w} is a single {S}x{S} tile; use a larger size")
        x = example_input(model.cfg.in_channels, h, w, num_classes=meta.get("num_classes"), seed=seed)
        with torch.no_grad():
            ref = model(x.to(next(model.parameters()).device)).cpu()
        out = run(x)
        if out.shape != ref.shape:
            raise ValueError(f"ONNX output shape {tuple(out.shape)} != PyTorch {tuple(ref.shape)} at {h}x{w}")
        diffs[(h, w)] = float((out - ref).abs().max())
    return diffs
