"""Reference SPADE (NVlabs/SPADE) and pix2pixHD (NVIDIA/pix2pixHD) generators: their configurations; the
module names stay the same."""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

from .state_dict import Converted, StateDict, _load_mapped, _sn_ref_name
from .options import ReferenceOptions


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
