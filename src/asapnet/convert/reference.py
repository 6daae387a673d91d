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

Library entry points: :func:`asapnet.convert.options.reference_options`,
:func:`asapnet.convert.state_dict.load_reference_state_dict`, :func:`convert_state_dict`,
:func:`convert_checkpoint`; :func:`cmd_convert` runs ``asapnet convert``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from .state_dict import Converted, PathLike, _upgrade_old_spectral_norm, load_reference_state_dict
from .options import ReferenceOptions, reference_options
from .asap import _convert_asap
from .baselines import _convert_pix2pixhd, _convert_spade

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# reading a reference checkpoint
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# name mapping and checks
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# ASAP-Net
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# SPADE and pix2pixHD
# ---------------------------------------------------------------------------------------------


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
