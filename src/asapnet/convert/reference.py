"""Run the released reference checkpoints: convert ASAP-Net, SPADE and pix2pixHD generators
(``latest_net_G.pth`` of tamarott/ASAPNet, NVlabs/SPADE, NVIDIA/pix2pixHD) into asapnet
generator checkpoints (``asapnet convert``)::

    asapnet convert latest_net_G.pth -o asap-cityscapes.safetensors --from asapnet --dataset cityscapes
    asapnet translate LABELS.png -o out/ --checkpoint asap-cityscapes.safetensors

The reference code builds its networks from command-line options that are not stored in the
weights; the options that fix the architecture are given here the same way (``--dataset`` fills
the defaults of the reference's dataset option file, single options override them). The
checkpoint is read with ``torch.load(weights_only=True)`` (tensors only, no code runs), its keys
and shapes are compared with those the options imply, and the first mismatch is reported in one
line. What is mapped, and why the outputs are the same (docs/compatibility.md):

* ASAP-Net: the LR-stream convolutions and norms keep their weights under new names
  (``lowres_stream.model.N`` -> ``lr.body.i``). The rows of the 1x1 head that predicts the
  per-pixel MLPs are reordered and rescaled: the reference lays out every MLP layer as
  [bias, weights] and uses the predicted weights as they are, asapnet lays it out as
  [weights, bias] and multiplies the weights by 1/sqrt(c_in) (so the reference rows are multiplied
  by sqrt(c_in)); the positional-encoding inputs of the first layer are permuted from the
  reference order (periods S, S/2, ..., 2; cos x, sin x, cos y, sin y) to asapnet's (periods 2, 4,
  ..., S; sin x, cos x, sin y, cos y). With S1 > 1 the converted model downsamples the LR
  stream's input with the reference's tent filter (``ASAPConfig.s1_filter="tent"``), and a
  checkpoint trained with ``--reflection_pad`` / ``--replicate_pad`` (the released Facades
  models: ``--dataset facades`` sets it) gets an LR stream padded the same way
  (``ASAPConfig.lr_padding``); the outputs agree up to float rounding.
* SPADE and pix2pixHD keep their module names.
* Spectrally normalised weights (``weight_orig``, ``weight_u``, ``weight_v``; SPADE, or ASAP-Net
  with ``--norm_G spectral...``) go into PyTorch's spectral-norm parametrization, which in eval
  mode computes the same W / (u^T W v) from the stored vectors.

Library entry points: :func:`reference_options`, :func:`load_reference_state_dict`,
:func:`convert_state_dict`, :func:`convert_checkpoint`; :func:`add_convert_parser` /
:func:`cmd_convert` are the CLI shell.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..config import ASAPConfig
# the CLI's argument builder lives in asapnet.parsers (no torch); re-exported here
from ..options import CONVERT_SOURCES

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]
#: (model, registry name, config) of a conversion
Converted = Tuple[nn.Module, str, Dict[str, Any]]

#: reference code bases that can be converted (``--from``)
SOURCES = CONVERT_SOURCES  # ("asapnet", "spade", "pix2pixhd")

# Option defaults of each reference code base without a dataset (its base_options.py plus the
# generator's own defaults), then what each dataset option file of the reference sets.
_BASE: Dict[str, Dict[str, Any]] = {
    "asapnet": dict(label_nc=182, contain_dontcare_label=False, instance=True, crop_size=512, aspect_ratio=1.0,
                    norm_g="instanceaffine", lr_instance=True),
    "spade": dict(label_nc=182, contain_dontcare_label=False, instance=True, crop_size=512, aspect_ratio=1.0,
                  norm_g="spectralspadesyncbatch3x3", num_upsampling_layers="normal"),
    "pix2pixhd": dict(label_nc=35, contain_dontcare_label=False, instance=True, crop_size=None, aspect_ratio=1.0,
                      norm_g="instance"),
}
DATASET_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "asapnet": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True, lr_instance=True,
                           crop_size=512, aspect_ratio=2.0),
        # lr_padding: not in the dataset option file, but every released Facades model was trained
        # and tested with --reflection_pad (test_facades512.sh, test_facades1024.sh)
        "facades": dict(label_nc=13, contain_dontcare_label=False, instance=False, lr_instance=False,
                        crop_size=256, aspect_ratio=1.0, lr_padding="reflect"),
    },
    "spade": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True, crop_size=512,
                           aspect_ratio=2.0, num_upsampling_layers="more"),
        "ade20k": dict(label_nc=150, contain_dontcare_label=True, instance=False, crop_size=256, aspect_ratio=1.0),
        "coco": dict(label_nc=182, contain_dontcare_label=True, instance=True, crop_size=256, aspect_ratio=1.0),
    },
    "pix2pixhd": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True),
    },
}
DATASETS = tuple(sorted({d for per in DATASET_DEFAULTS.values() for d in per}))

#: LR-stream normalisations of the reference ASAP-Net (``--norm_G`` without ``spectral``) -> ASAPConfig.norm
_ASAP_NORMS = {"instanceaffine": "instance_affine", "instance": "instance", "batch": "batch",
               "sync_batch": "batch", "syncbatch": "batch", "none": "none", "": "none"}


@dataclass
class ReferenceOptions:
    """The reference command-line options that fix a generator's architecture.

    Names follow the reference options (``--label_nc`` -> ``label_nc``; ``instance`` is the
    instance-edge input channel, ``--no_instance`` / ``--no_instance_edge`` off). Fields of another
    code base are ignored.

    Attributes:
        source: ``"asapnet"``, ``"spade"`` or ``"pix2pixhd"``.
        label_nc: label classes (without the don't-care class).
        contain_dontcare_label: one more input channel for the don't-care class (id ``label_nc``).
        instance: an instance-edge channel follows the label channels.
        crop_size, aspect_ratio: training crop width and width/height ratio; they fix S for
            ASAP-Net (S = crop_size // (16 * aspect_ratio)) and the latent grid of a SPADE VAE.
        output_nc: output image channels.
        norm_g: ``--norm_G`` (ASAP-Net, SPADE) or ``--norm`` (pix2pixHD).
        lr_width, lr_max_width, lr_depth, hr_width, hr_depth, learned_ds_factor, lr_instance:
            ASAP-Net options of the same names.
        lr_padding: ``"zeros"``, or ``"reflect"`` / ``"replicate"`` for ``--reflection_pad`` /
            ``--replicate_pad`` (ASAP-Net; ``--dataset facades`` sets ``"reflect"``, the option
            the released Facades models were trained and tested with).
        positional_encoding: ``--hr_coor cosine`` (True) or ``None`` (ASAP-Net).
        ngf: generator width (SPADE, pix2pixHD).
        num_upsampling_layers, use_vae, z_dim: SPADE options.
        netg, n_downsample_global, n_blocks_global, n_local_enhancers, n_blocks_local: pix2pixHD
            options (``netg`` ``"global"`` or ``"local"``).

    Raises:
        ValueError: unknown source or invalid values.
    """

    source: str
    label_nc: int
    contain_dontcare_label: bool = False
    instance: bool = True
    crop_size: Optional[int] = 512
    aspect_ratio: float = 1.0
    output_nc: int = 3
    norm_g: str = ""
    lr_width: int = 64
    lr_max_width: int = 1024
    lr_depth: int = 7
    hr_width: int = 64
    hr_depth: int = 5
    learned_ds_factor: int = 16
    lr_instance: bool = True
    lr_padding: str = "zeros"
    positional_encoding: bool = True
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    use_vae: bool = False
    z_dim: int = 256
    netg: str = "global"
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown reference {self.source!r}; known: {'|'.join(SOURCES)}")
        if self.label_nc < 1 or self.output_nc < 1:
            raise ValueError(f"label_nc and output_nc must be >= 1, got {self.label_nc}, {self.output_nc}")
        if self.lr_padding not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"lr_padding must be zeros|reflect|replicate, got {self.lr_padding!r}")
        if self.num_upsampling_layers not in ("normal", "more", "most"):
            raise ValueError(f"num_upsampling_layers must be normal|more|most, got {self.num_upsampling_layers!r}")
        if self.netg not in ("global", "local"):
            raise ValueError(f"netg must be global|local, got {self.netg!r}")

    @property
    def num_classes(self) -> int:
        """Label channels of the input: label_nc (+1 with the don't-care class)."""
        return self.label_nc + int(self.contain_dontcare_label)

    @property
    def semantic_nc(self) -> int:
        """Input channels: label channels (+1 instance-edge channel)."""
        return self.num_classes + int(self.instance)

    def to_dict(self) -> Dict[str, Any]:
        """The options that matter for ``source`` (the common ones and its own), as plain data."""
        keep = _COMMON_FIELDS + _SOURCE_FIELDS[self.source]
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keep}


_COMMON_FIELDS = ("source", "label_nc", "contain_dontcare_label", "instance", "crop_size", "aspect_ratio", "output_nc",
                  "norm_g")
_SOURCE_FIELDS = {
    "asapnet": ("lr_width", "lr_max_width", "lr_depth", "hr_width", "hr_depth", "learned_ds_factor", "lr_instance",
                "lr_padding", "positional_encoding"),
    "spade": ("ngf", "num_upsampling_layers", "use_vae", "z_dim"),
    "pix2pixhd": ("ngf", "netg", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local"),
}


def reference_options(source: str, dataset: Optional[str] = None, **overrides: Any) -> ReferenceOptions:
    """Options of a reference checkpoint: the reference defaults of ``source``, then those of
    ``dataset`` (as its dataset option file sets them), then ``overrides`` (``None`` values are
    ignored, so argparse namespaces can be passed through).

    Raises:
        ValueError: unknown source, a dataset without defaults for that source, unknown override
            names or invalid values.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown reference {source!r}; known: {'|'.join(SOURCES)}")
    opts: Dict[str, Any] = dict(_BASE[source])
    if dataset is not None:
        if dataset not in DATASET_DEFAULTS[source]:
            raise ValueError(f"the {source} reference has no option defaults for dataset {dataset!r}; "
                             f"known: {'|'.join(DATASET_DEFAULTS[source])}")
        opts.update(DATASET_DEFAULTS[source][dataset])
    names = {f.name for f in dataclasses.fields(ReferenceOptions)} - {"source"}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown reference options: {sorted(unknown)}")
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return ReferenceOptions(source=source, **opts)


# ---------------------------------------------------------------------------------------------
# reading a reference checkpoint
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# name mapping and checks
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# ASAP-Net
# ---------------------------------------------------------------------------------------------


def _asap_norm(norm_g: str) -> Tuple[str, bool]:
    """``--norm_G`` of the reference ASAP-Net -> (ASAPConfig.norm, spectral norm)."""
    spectral = norm_g.startswith("spectral")
    sub = norm_g[len("spectral"):] if spectral else norm_g
    if sub not in _ASAP_NORMS:
        raise ValueError(f"unsupported ASAP-Net --norm_G {norm_g!r}; known: "
                         f"[spectral]{'|'.join(k for k in _ASAP_NORMS if k)}")
    return _ASAP_NORMS[sub], spectral


def asap_config(opts: ReferenceOptions) -> ASAPConfig:
    """The :class:`ASAPConfig` of a reference ASAPNetsGenerator.

    S = crop_size // (16 * aspect_ratio) as in the reference, S2 = learned_ds_factor, S1 = S / S2.

    The LR stream pads as ``opts.lr_padding`` and, when S1 > 1, downsamples its input with the
    reference's tent filter (``s1_filter="tent"``).

    Raises:
        ValueError: options the reference rejects or asapnet cannot represent (S not a power-of-two
            multiple of learned_ds_factor, ``lr_instance`` without the instance channel,
            learned_ds_factor 1 with lr_width != lr_max_width).
    """
    if opts.crop_size is None:
        raise ValueError("ASAP-Net needs --crop-size (with --aspect-ratio) to determine S")
    S = int(opts.crop_size // (16 * opts.aspect_ratio))
    ds = opts.learned_ds_factor
    if ds < 1 or ds & (ds - 1) or S < ds or S % ds or (S // ds) & (S // ds - 1):
        raise ValueError(f"crop size {opts.crop_size} / aspect ratio {opts.aspect_ratio} give S = {S}, which is not "
                         f"a power-of-two multiple of --learned-ds-factor {ds}")
    if opts.lr_instance and not opts.instance:
        raise ValueError("--lr-instance needs the instance-edge channel (drop --no-instance or give --no-lr-instance)")
    if ds == 1 and opts.lr_width != opts.lr_max_width:
        raise ValueError("with --learned-ds-factor 1 the reference LR stream stays at --lr-width; "
                         "give --lr-max-width equal to --lr-width")
    norm, spectral = _asap_norm(opts.norm_g)
    return ASAPConfig(in_channels=opts.semantic_nc, out_channels=opts.output_nc, s1=S // ds, s2=ds,
                      lr_width=opts.lr_width, lr_max_width=opts.lr_max_width, lr_depth=opts.lr_depth,
                      hr_width=opts.hr_width, hr_depth=opts.hr_depth, positional_encoding=opts.positional_encoding,
                      norm=norm, first_norm=True, spectral_norm=spectral, hr_slope=0.01,
                      lr_only_channels=int(opts.lr_instance and opts.instance), output_activation="tanh",
                      lr_padding=opts.lr_padding, s1_filter="tent")


def asap_lr_reference_names(cfg: ASAPConfig, norm_g: str,
                            lr_padding: str = "zeros") -> Tuple[List[Tuple[str, str]], str]:
    """Module paths of the reference ``ASAPNetsLRStream``.

    Returns:
        ([(conv path, norm path or "") per 3x3 conv, in the order of ``LRStream.body``], head path),
        e.g. ``("lowres_stream.model.0.0", "lowres_stream.model.0.1")`` for the first conv of the
        default instance-affine stream and ``"lowres_stream.model.17"`` for its head. The
        reference wraps a normalised conv as Sequential(conv, norm) and inserts one padding
        module before each conv with ``--reflection_pad`` / ``--replicate_pad``.
    """
    plain = _asap_norm(norm_g)[0] == "none"
    pad = int(lr_padding != "zeros")

    def block(path: str) -> Tuple[str, str]:
        return (path, "") if plain else (f"{path}.0", f"{path}.1")

    out, idx = [], 0
    for _ in range(1 + int(math.log2(cfg.s2))):  # first conv, then the strided convs
        idx += pad
        out.append(block(f"lowres_stream.model.{idx}"))
        idx += 2  # norm_layer(conv), ReLU
    for _ in range(cfg.lr_depth):  # ASAPNetsBlock: conv_block = [pad,] norm_layer(conv), ReLU
        out.append(block(f"lowres_stream.model.{idx}.conv_block.{pad}"))
        idx += 1
    return out, f"lowres_stream.model.{idx}"


def asap_head_permutation(cfg: ASAPConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row map of the LR-stream head from the reference layout to asapnet's.

    Reference, per MLP layer (c_in, c_out): [b (c_out), W (c_in x c_out, row major)], W used as
    is; first-layer inputs: image channels, then for periods f = S, S/2, ..., 2 the channels
    [cos x, sin x, cos y, sin y]. asapnet: [W (c_in x c_out, row major), b], W scaled by
    1/sqrt(c_in) at use; encoding channels for f = 2, 4, ..., S as [sin x, cos x, sin y, cos y]
    (:func:`asapnet.models.asap.positional_encoding`).

    Returns:
        (src (P,) int64, scale (P,) float32): our row p = reference row ``src[p]`` * ``scale[p]``
        (sqrt(c_in) for weight rows, 1 for bias rows).
    """
    widths = [cfg.hr_in_channels + cfg.pe_channels] + [cfg.hr_width] * (cfg.hr_depth - 1) + [cfg.out_channels]
    K = cfg.num_frequencies if cfg.positional_encoding else 0
    n_img = cfg.hr_in_channels
    # our first-layer input i <- reference input perm_in[i]
    perm_in = list(range(n_img)) + [n_img + 4 * (K - k) + (1, 0, 3, 2)[c] for k in range(1, K + 1) for c in range(4)]
    src, scale, base = [], [], 0
    for layer, (ci, co) in enumerate(zip(widths[:-1], widths[1:])):
        rows = torch.tensor(perm_in if layer == 0 else list(range(ci)), dtype=torch.int64)
        w_src = base + co + rows[:, None] * co + torch.arange(co)[None, :]  # reference W[i', o]
        src += [w_src.flatten(), base + torch.arange(co)]
        scale += [torch.full((ci * co,), math.sqrt(ci)), torch.ones(co)]
        base += ci * co + co
    return torch.cat(src), torch.cat(scale).float()


def _asap_hint(sd: Mapping[str, torch.Tensor], opts: ReferenceOptions, cfg: ASAPConfig, first: str,
               head: str) -> Callable[[str], str]:
    # index of the reference's first LR-stream conv: 0 without padding modules, 1 with
    # --reflection_pad / --replicate_pad (a parameter-free padding module comes first)
    found = [int(m.group(1)) for k, v in sd.items()
             for m in [re.fullmatch(r"lowres_stream\.model\.(\d+)\.(?:0\.)?weight(?:_orig)?", k)] if m and v.dim() == 4]
    first_idx = min(found) if found else None
    first_missing = not any(k.startswith(first + ".") for k in sd)

    def hint(key: str) -> str:
        if first_missing and first_idx == 1 and opts.lr_padding == "zeros":
            return "the layers are shifted by one padding module: trained with --reflection_pad (--lr-padding reflect)?"
        if first_missing and first_idx == 0 and opts.lr_padding != "zeros":
            return ("the layers are not shifted by padding modules: trained without --reflection_pad / "
                    "--replicate_pad (--lr-padding zeros)?")
        if key.startswith(head) or key.startswith(first):
            parts = [f"--label-nc {opts.label_nc}"] + (["1 don't-care"] if opts.contain_dontcare_label else []) \
                + (["1 instance edge"] if opts.instance else [])
            return (f"the input channels ({opts.semantic_nc} = {' + '.join(parts)}) and the head size (S = {cfg.S} "
                    "from --crop-size / --aspect-ratio, --hr-width, --hr-depth, --lr-instance) must be those of "
                    "the training run")
        return "check --lr-width, --lr-max-width, --lr-depth, --learned-ds-factor and --norm-g"
    return hint


def _convert_asap(sd: StateDict, opts: ReferenceOptions, name: str) -> Converted:
    from ..models import create_model

    cfg = asap_config(opts)
    model = create_model("asap", cfg=cfg)
    blocks, head = asap_lr_reference_names(cfg, opts.norm_g, opts.lr_padding)

    def ref_name(k: str) -> str:
        if k.startswith("lr.head."):
            return head + k[len("lr.head"):]
        m = re.match(r"lr\.body\.(\d+)\.([01])(\..+)$", k)
        if m is None:
            raise AssertionError(f"unmapped asapnet key {k}")
        conv, norm = blocks[int(m.group(1))]
        return _sn_ref_name((conv if m.group(2) == "0" else norm) + m.group(3))

    src, scale = asap_head_permutation(cfg)

    def transform(k: str, t: torch.Tensor) -> torch.Tensor:
        if k == "lr.head.weight":
            return t[src] * scale.view(-1, 1, 1, 1)
        if k == "lr.head.bias":
            return t[src] * scale
        return t

    _load_mapped(model, sd, ref_name, transform, name, "reference ASAP-Net generator",
                 _asap_hint(sd, opts, cfg, blocks[0][0], head))
    return model, "asap", cfg.to_dict()


# ---------------------------------------------------------------------------------------------
# SPADE and pix2pixHD
# ---------------------------------------------------------------------------------------------


def _spade_norm(norm_g: str) -> Tuple[str, int, bool]:
    """``--norm_G`` of SPADE -> (param-free norm, kernel size, spectral norm)."""
    m = re.fullmatch(r"(spectral)?spade(syncbatch|batch|instance)(\d)x\d", norm_g)
    if m is None:
        raise ValueError(f"unsupported SPADE --norm_G {norm_g!r}; expected [spectral]spade"
                         "{syncbatch|batch|instance}KxK, e.g. spectralspadesyncbatch3x3")
    return ("instance" if m.group(2) == "instance" else "batch"), int(m.group(3)), bool(m.group(1))


def spade_config(opts: ReferenceOptions) -> Dict[str, Any]:
    """Keyword arguments of :class:`asapnet.models.spade.SPADEGenerator` for a reference
    SPADEGenerator (``spade_hidden`` is the reference's fixed 128).

    Raises:
        ValueError: unsupported ``--norm_G``, or a VAE model without a crop size.
    """
    norm, kernel, spectral = _spade_norm(opts.norm_g)
    cfg: Dict[str, Any] = dict(in_channels=opts.semantic_nc, out_channels=opts.output_nc, ngf=opts.ngf,
                               spade_hidden=128, num_upsampling_layers=opts.num_upsampling_layers,
                               spade_norm=norm, spade_kernel=kernel, spectral_norm=spectral, z_dim=0,
                               latent_size=None)
    if opts.use_vae:
        if opts.crop_size is None:
            raise ValueError("a SPADE VAE generator needs --crop-size and --aspect-ratio (its latent grid)")
        n = {"normal": 5, "more": 6, "most": 7}[opts.num_upsampling_layers]
        sw = opts.crop_size // 2 ** n
        cfg.update(z_dim=opts.z_dim, latent_size=[round(sw / opts.aspect_ratio), sw])
    return cfg


def _convert_spade(sd: StateDict, opts: ReferenceOptions, name: str) -> Converted:
    from ..models import create_model

    cfg = spade_config(opts)
    model = create_model("spade", **cfg)

    def hint(key: str) -> str:
        if key.startswith("fc."):
            return ("the first layer is a conv of the label map without --use-vae and a linear map of z with it "
                    f"(input channels {opts.semantic_nc}: --label-nc, --contain-dontcare-label, --no-instance)")
        if key.startswith("up_4") or key.startswith("conv_img"):
            return "check --num-upsampling-layers (Cityscapes: more) and --ngf"
        return (f"the SPADE layers read {opts.semantic_nc} input channels (--label-nc, --contain-dontcare-label, "
                "--no-instance); check --ngf, --norm-g")

    _load_mapped(model, sd, _sn_ref_name, None, name, "reference SPADE generator", hint)
    return model, "spade", cfg


def pix2pixhd_config(opts: ReferenceOptions) -> Dict[str, Any]:
    """Keyword arguments of :class:`asapnet.models.pix2pixhd.Pix2PixHDGenerator` for a reference
    GlobalGenerator (``netg="global"``) or LocalEnhancer (``"local"``).

    Raises:
        ValueError: a normalisation other than ``instance``.
    """
    if opts.norm_g != "instance":
        raise ValueError(f"only pix2pixHD generators with --norm instance convert, got {opts.norm_g!r}")
    return dict(in_channels=opts.semantic_nc, out_channels=opts.output_nc, ngf=opts.ngf,
                n_downsampling=opts.n_downsample_global, n_blocks=opts.n_blocks_global,
                n_local_enhancers=opts.n_local_enhancers if opts.netg == "local" else 0,
                n_blocks_local=opts.n_blocks_local)


def _convert_pix2pixhd(sd: StateDict, opts: ReferenceOptions, name: str) -> Converted:
    from ..models import create_model

    cfg = pix2pixhd_config(opts)
    model = create_model("pix2pixhd", **cfg)

    def hint(key: str) -> str:
        if opts.netg == "global" and any(k.startswith("model1_1.") for k in sd):
            return "the checkpoint has a local enhancer: give --netg local (the released label2city_1024p: --ngf 32)"
        return (f"the first conv reads {opts.semantic_nc} input channels (--label-nc, --no-instance); check --ngf, "
                "--n-downsample-global, --n-blocks-global, --n-local-enhancers, --n-blocks-local")

    _load_mapped(model, sd, lambda k: k, None, name, f"reference pix2pixHD {opts.netg} generator", hint)
    return model, "pix2pixhd", cfg


_CONVERTERS = {"asapnet": _convert_asap, "spade": _convert_spade, "pix2pixhd": _convert_pix2pixhd}


def convert_state_dict(sd: Mapping[str, torch.Tensor], opts: ReferenceOptions, name: str = "state dict") -> Converted:
    """Build the asapnet generator equivalent to a reference generator state dict.

    Args:
        sd: reference state dict ({name: tensor}, e.g. from :func:`load_reference_state_dict`).
        opts: the reference options of the checkpoint (:func:`reference_options`).
        name: how error messages name the checkpoint (its path).

    Returns:
        (model in eval mode, registry name ``"asap"`` / ``"spade"`` / ``"pix2pixhd"``, the config
        :func:`asapnet.checkpoint.save_generator` stores). The model takes (N, opts.semantic_nc,
        H, W) one-hot labels (+ instance edges) in {0, 1} and returns (N, output_nc, H, W) in
        [-1, 1].

    Raises:
        ValueError: options asapnet cannot represent, or keys / shapes of ``sd`` that do not match
            the options (one line naming ``name``, the first mismatching key and both shapes).
    """
    sd = _upgrade_old_spectral_norm(dict(sd))
    try:
        model, model_name, cfg = _CONVERTERS[opts.source](sd, opts, name)
    except ValueError as e:
        if str(e).startswith(f"{name}: "):
            raise
        raise ValueError(f"{name}: {e}") from None
    return model.eval(), model_name, cfg


def conversion_notes(opts: ReferenceOptions, model_name: str, cfg: Dict[str, Any]) -> List[str]:
    """Differences between the converted model and the reference worth telling the user."""
    notes = []
    if model_name == "asap" and cfg["lr_padding"] == "reflect":
        S = cfg["s1"] * cfg["s2"]
        notes.append(f"the LR stream reflection-pads its convolutions (--reflection_pad), as the reference: inputs "
                     f"must be larger than S = {S} pixels in height and width")
    if model_name == "spade" and cfg.get("z_dim"):
        lh, lw = cfg["latent_size"]
        n = {"normal": 5, "more": 6, "most": 7}[cfg["num_upsampling_layers"]]
        notes.append(f"VAE generator: it takes {lh << n}x{lw << n} inputs and draws z ~ N(0, 1) per call, "
                     "as the reference")
    if opts.contain_dontcare_label:
        notes.append(f"label maps must hold ids 0..{opts.num_classes - 1}, the don't-care class as {opts.label_nc} "
                     "(the reference maps 255 to it when loading)")
    return notes


def convert_checkpoint(src: PathLike, out: PathLike, opts: ReferenceOptions, key: Optional[str] = None
                       ) -> Dict[str, Any]:
    """Convert reference checkpoint ``src`` into asapnet generator checkpoint ``out``
    (safetensors with its config and ``out.json``), loadable with
    :func:`asapnet.checkpoint.load_generator` and ``asapnet translate --checkpoint``.

    The metadata records ``num_classes`` (label channels), ``use_instance``, ``converted_from``,
    ``source_checkpoint`` (file name), ``reference_options`` and, when the reference fixes one,
    ``train_size`` [H, W].

    Returns:
        the metadata written, plus ``parameters`` (count) and ``notes`` (list of str).

    Raises:
        FileNotFoundError: ``src`` missing.
        ValueError: unreadable file, no state dict, options asapnet cannot represent, or a
            checkpoint whose keys / shapes do not match the options (one line naming the file).
    """
    from ..checkpoint import load_generator, save_generator

    sd = load_reference_state_dict(src, key)
    model, model_name, cfg = convert_state_dict(sd, opts, str(src))
    meta: Dict[str, Any] = {"num_classes": opts.num_classes, "use_instance": opts.instance,
                            "converted_from": opts.source, "source_checkpoint": Path(src).name,
                            "reference_options": opts.to_dict()}
    if opts.crop_size is not None and opts.source != "pix2pixhd":
        meta["train_size"] = [round(opts.crop_size / opts.aspect_ratio), opts.crop_size]
    save_generator(out, model, model_name, cfg, meta)
    reloaded, _ = load_generator(out)  # what translate will load: the same tensors
    ref = model.state_dict()
    bad = next((k for k, v in reloaded.state_dict().items() if not torch.equal(v, ref[k])), None)
    if bad is not None:
        raise ValueError(f"{out}: written weights differ from the converted ones at {bad!r}")
    return {**meta, "model": model_name, "config": cfg, "parameters": sum(p.numel() for p in model.parameters()),
            "notes": conversion_notes(opts, model_name, cfg)}


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


_OPTION_ARGS = ("label_nc", "contain_dontcare_label", "instance", "crop_size", "aspect_ratio", "output_nc", "norm_g",
                "lr_width", "lr_max_width", "lr_depth", "hr_width", "hr_depth", "learned_ds_factor", "lr_instance",
                "lr_padding", "positional_encoding", "ngf", "num_upsampling_layers", "use_vae", "z_dim", "netg",
                "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local")


def cmd_convert(a: argparse.Namespace) -> int:
    """Run ``asapnet convert``; prints what was written and the notes. Returns 0."""
    opts = reference_options(a.source, a.dataset, **{k: getattr(a, k) for k in _OPTION_ARGS})
    info = convert_checkpoint(a.checkpoint, a.out, opts, a.key)
    size = f", trained at {info['train_size'][0]}x{info['train_size'][1]}" if "train_size" in info else ""
    extra = f", S = {info['config']['s1'] * info['config']['s2']}" if info["model"] == "asap" else ""
    logger.info(f"wrote {a.out}: {info['model']} generator, {info['parameters'] / 1e6:.2f} M parameters, "
          f"{opts.num_classes} classes{' + instance edges' if opts.instance else ''}{extra}{size} "
          f"(from {a.source} {a.checkpoint})")
    for note in info["notes"]:
        logger.info(f"note: {note}")
    return 0
