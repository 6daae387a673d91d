"""Reference ASAP-Net (tamarott/ASAPNet) -> :class:`asapnet.models.asap.ASAPGenerator`: the configuration, the
LR-stream names, and the reordered, rescaled rows of the head that predicts the per-pixel MLPs."""
from __future__ import annotations

import math
import re
from typing import Callable, List, Mapping, Tuple

import torch

from ..config import ASAPConfig
from .state_dict import Converted, StateDict, _load_mapped, _sn_ref_name
from .options import ReferenceOptions

#: LR-stream normalisations of the reference ASAP-Net (``--norm_G`` without ``spectral``) -> ASAPConfig.norm
_ASAP_NORMS = {"instanceaffine": "instance_affine", "instance": "instance", "batch": "batch",
               "sync_batch": "batch", "syncbatch": "batch", "none": "none", "": "none"}


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
