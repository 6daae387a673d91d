"""``asapnet evaluate --task translate``: the paper's quality numbers for label->photo checkpoints.

    asapnet evaluate --task translate --dataset cityscapes-pix2pix \
        --checkpoint asap=runs/cityscapes-asap/generator.safetensors pix2pixhd=runs/cityscapes-pix2pixhd/generator.safetensors \
        [--limit 100] [--segmenter runs/segmenter-pix2pix/segmenter.safetensors] [--json]
    asapnet evaluate --task translate --checkpoint runs/cs/generator.safetensors \
        --data ../shared/data/cityscapes_samples --metrics fid,segscore,psnr,ssim,lpips [--json]

Two kinds of evaluation:

* **comparison table** (:func:`compare_translations`; ``--dataset cityscapes-pix2pix`` = the 400
  photos of ``cityscapes_pix2pix/val``, or ``--dataset facades`` = the 50 of ``facades_cmp/test``):
  one row per checkpoint, all run on the same label maps, plus reference rows computed the same way:
  *mean colour* (every pixel the mean colour of the training photos), *class mean colour* (every pixel
  the mean training-photo colour of its class) and *real photos* (the photos themselves: the segscore
  ceiling, seam ratio ~1). The trivial images are estimated on an evenly spaced subsample of the
  training split (300 photos by default; the output says how many).
* **per-metric list** (:func:`evaluate_translation`; ``--dataset cityscapes`` = the
  ``cityscapes_samples`` layout, one checkpoint): the held-out pairs of a sample folder.

The dataset defaults to the checkpoint's ``dataset`` metadata, else ``cityscapes``.

Metrics (paper §4.1, Fig. 6, Fig. 11; every figure is a mean over the scored images):

* ``psnr`` (dB) / ``ssim``: generated vs real photo on the 0-255 scale (:mod:`asapnet.metrics.image`);
* ``fid``: Fréchet Inception Distance, real vs generated photos (:mod:`asapnet.metrics.fid`);
  standard InceptionV3 weights, or reported as unavailable with the reason;
* ``segscore``: mIoU / pixel accuracy / per-class IoU of a segmentation network run on the generated
  photos against the input label maps, and the same on the real photos (the ceiling)
  (:mod:`asapnet.tasks.segment`);
* ``lpips``: LPIPS-AlexNet (torchmetrics) when its ImageNet backbone weights can be loaded,
  otherwise reported as unavailable (never an error);
* ``tile_contrast``: mean colour difference between the two largest classes inside the S x S tiles
  that hold two, in gray levels (0-255); ~0 when ASAP's HR stream paints one flat colour per tile
  (:func:`asapnet.metrics.tiles.within_tile_contrast`). S is the ASAP checkpoint's tile size (16 if
  none is ASAP), the same for every row;
* ``seam_ratio``: mean jump across tile borders / mean jump elsewhere; ~1 for photos, >> 1 for
  tiled output (:func:`asapnet.metrics.tiles.tile_seam_ratio`);
* ``block_std``: texture per class: the standard deviation inside 16 x 16 blocks covered by one
  class, gray levels, for the classes of :data:`BLOCK_CLASSES` (road, sidewalk, building,
  vegetation, car; facade, window, door, balcony, shop)
  (:func:`asapnet.metrics.tiles.class_block_std`).

By default only *held-out* pairs are scored: the pairs of the data folder whose names are not in
the checkpoint's ``train_pairs`` metadata (written by ``asapnet train``). Images are generated at
the checkpoint's training size (``load_size`` in its metadata or in ``run.json`` next to it),
else at the label maps' own size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...checkpoint import load_generator
from ...data.datasets import cityscapes_pairs
from ...metrics.translation import TileStats
from ...inference.optimize import prepare_for_inference
# ALL_METRICS, DEFAULT_METRICS (the per-metric list, --dataset cityscapes), TABLE_METRICS (the
# comparison table) and DATASETS are defined in asapnet.options (no torch), shared with the command line
from ...options import ALL_METRICS, DEFAULT_METRICS, EVALUATE_DATASETS as DATASETS, TABLE_METRICS  # noqa: F401
from .scoring import (BLOCK, BLOCK_CLASSES, _fid_entry, _segscore_entry, _unavailable, checkpoint_load_size,
                      checkpoint_name, generate, lpips_score, model_tile, resolve_dataset, select_pairs)
from .compare import _row_to_entries, compare_translations


def evaluate_translation(checkpoint: str | Path, data_dir: Optional[str | Path] = None,
                         metrics: Sequence[str] = DEFAULT_METRICS,
                         split: str = "train", which: str = "heldout", holdout: Optional[int] = None,
                         size: Optional[Tuple[int, int]] = None, segmenter: Optional[str | Path] = None,
                         fid_weights: Optional[str | Path] = None, fid_feature: Optional[nn.Module] = None,
                         log: Callable[[str], None] = lambda s: None, dataset: Optional[str] = None,
                         limit: Optional[int] = None, tile: Optional[int] = None,
                         device: Optional[torch.device | str] = None) -> List[Dict[str, Any]]:
    """Score one label->photo checkpoint, one entry per metric.

    Args:
        checkpoint: generator ``.safetensors`` (see :func:`asapnet.checkpoint.load_generator`).
        data_dir: for ``dataset="cityscapes"``: folder with ``{split}_label`` (+ ``{split}_inst``,
            ``{split}_img``), e.g. ``cityscapes_samples`` (pairs without a photo only get
            ``segscore``); for ``cityscapes-pix2pix`` / ``facades``: the split folder (default
            ``<data root>/cityscapes_pix2pix/val`` / ``facades_cmp/test``, see :func:`compare_translations`).
        metrics: any of :data:`ALL_METRICS`.
        split, which, holdout: which pairs of a ``cityscapes`` folder to score (see :func:`select_pairs`).
        size: (H, W) to generate at; ``None`` = the checkpoint's training size (or the data's size).
        segmenter: segmenter checkpoint (default: the one shipped for the dataset, if any).
        fid_weights: local InceptionV3 weights file; fid_feature: injected FID feature extractor.
        dataset: one of :data:`DATASETS`; ``None`` = the checkpoint's ``dataset`` metadata if it is
            one of them, else ``"cityscapes"``.
        limit: ``cityscapes-pix2pix`` / ``facades``: score only the first ``limit`` images.
        tile: tile size of ``tile_contrast`` / ``seam_ratio`` (default: the model's S, else 16).
        device: where the generator runs (default cpu); the metrics run on the CPU.

    Returns:
        One dict per metric, in the order asked: ``{"metric", "value", ...}`` (``block_std``: value
        ``{class name: gray levels}``) or, for ``segscore``,
        ``{"metric", "miou", "pixel_accuracy", "per_class_iou", "real_miou", ...}``; a metric that
        cannot be computed here is ``{"metric", "available": False, "reason"}``. Every dict also has
        ``images`` (how many were scored), ``pairs`` and ``selection``.

    Raises:
        ValueError: an unknown metric or dataset name, or a checkpoint that does not fit the dataset.
        FileNotFoundError / DataError: bad checkpoint or data.
    """
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(ALL_METRICS)}")
    checkpoint = Path(checkpoint)
    model, meta = load_generator(checkpoint)
    if device is not None:
        model.to(device)
    dataset = resolve_dataset(dataset, [meta])
    if dataset != "cityscapes":
        res = compare_translations({checkpoint_name(checkpoint, meta): (model, meta, checkpoint)}, dataset, data_dir,
                                   metrics=metrics, references=("real photos",) if "segscore" in metrics else (),
                                   limit=limit, size=size, segmenter=segmenter, tile=tile, fid_weights=fid_weights,
                                   fid_feature=fid_feature, log=log, device=device)
        return _row_to_entries(res, metrics)
    if data_dir is None:
        raise ValueError("dataset 'cityscapes' needs a data folder (e.g. <data root>/cityscapes_samples)")
    prepare_for_inference(model)  # eval mode, spectral norm folded: same outputs, faster
    pairs, selection = select_pairs(cityscapes_pairs(data_dir, split), meta, which, holdout)
    size = size or checkpoint_load_size(checkpoint, meta)
    out = generate(model, meta, pairs, size, log, device=device)
    fake, real, labels = out["fake"], out["real"], out["labels"]
    common = {"images": len(pairs), "pairs": out["names"], "selection": selection,
              "size": list(fake.shape[-2:]), "checkpoint": str(checkpoint)}
    no_photo = f"the pairs of {Path(data_dir) / (split + '_img')} have no photos to compare with"
    tile = tile or model_tile([model])
    results: List[Dict[str, Any]] = []
    for m in metrics:
        if m in ("psnr", "ssim"):
            if real is None:
                r = _unavailable(m, no_photo)
            else:
                from ...metrics.image import psnr_ssim
                p, s = psnr_ssim(fake, real)
                r = {"metric": m, "value": p if m == "psnr" else s, "unit": "dB" if m == "psnr" else "",
                     "higher_is_better": True}
        elif m == "fid":
            r = _fid_entry(real, fake, fid_feature, fid_weights, no_photo)
        elif m == "segscore":
            r = _segscore_entry(fake, real, labels, segmenter)
        elif m in ("tile_contrast", "seam_ratio", "block_std"):
            acc = TileStats(tile, BLOCK_CLASSES["cityscapes"], BLOCK)
            acc.update(fake, labels)
            t = acc.result()
            r = {"metric": m, "value": t[m], "unit": "" if m == "seam_ratio" else "gray levels",
                 "tile": tile if m != "block_std" else BLOCK}
            if real is not None:
                acc = TileStats(tile, BLOCK_CLASSES["cityscapes"], BLOCK)
                acc.update(real, labels)
                r["real_value"] = acc.result()[m]
        else:  # lpips
            if real is None:
                r = _unavailable(m, no_photo)
            else:
                try:
                    r = {"metric": m, "value": lpips_score(fake, real), "unit": "", "higher_is_better": False}
                except RuntimeError as e:
                    r = _unavailable(m, str(e))
        results.append({**r, **common})
    return results


# ---------------------------------------------------------------------------------------------
# comparison table: checkpoints and reference rows on the same label maps
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------
