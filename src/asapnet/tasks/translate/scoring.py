"""Pieces every ``asapnet evaluate --task translate`` path shares: dataset constants, which pairs are scored,
generating the images, one metric entry (FID, segscore, LPIPS), the shipped segmenters."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...console import progress as _progress
from ...data.datasets import LabelPhotoDataset, Pair, _stem
from ...data.io import DataError
from ...inference.optimize import model_device
from ...options import EVALUATE_DATASETS as DATASETS, shipped_weights

#: dataset -> (folder under the data root, split that is scored, split the trivial images come from).
SPLITS = {"cityscapes-pix2pix": ("cityscapes_pix2pix", "val", "train"), "facades": ("facades_cmp", "test", "train")}


#: dataset -> (H, W) the images are scored at unless ``size`` is given.
DEFAULT_SIZES = {"cityscapes-pix2pix": (256, 512), "facades": (256, 256)}


_CITYSCAPES_BLOCKS = {"road": 7, "sidewalk": 8, "building": 11, "vegetation": 21, "car": 26}


#: dataset -> {class name: label id} of the ``block_std`` columns.
BLOCK_CLASSES = {"cityscapes-pix2pix": _CITYSCAPES_BLOCKS, "cityscapes": _CITYSCAPES_BLOCKS,
                 "facades": {"facade": 1, "window": 2, "door": 3, "balcony": 6, "shop": 11}}


BLOCK = 16  # block size (pixels) of block_std


REFERENCE_ROWS = ("mean colour", "class mean colour", "real photos")


SEGMENTER_WEIGHTS = "segmenter-cityscapes.safetensors"


#: dataset -> file name of its segmenter in ``asapnet/weights`` (used when shipped).
SEGMENTER_FILES = {"cityscapes": SEGMENTER_WEIGHTS, "cityscapes-pix2pix": "segmenter-cityscapes-pix2pix.safetensors",
                   "facades": "segmenter-facades.safetensors"}


def default_segmenter(dataset: str = "cityscapes") -> Optional[Path]:
    """The segmenter of ``dataset`` shipped in ``asapnet/weights`` (:data:`SEGMENTER_FILES`) if
    present, else ``None``."""
    name = SEGMENTER_FILES.get(dataset)
    if name is None:
        return None
    p = shipped_weights(name)
    return p if p.is_file() else None


def checkpoint_load_size(checkpoint: Path, meta: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """(H, W) the generator was trained at: ``meta['load_size']``, ``meta['train']['load_size']`` or
    ``load_size`` of ``run.json`` next to the checkpoint; ``None`` = the data's own size."""
    for cand in (meta.get("load_size"), (meta.get("train") or {}).get("load_size")):
        if cand:
            return tuple(cand)
    run = Path(checkpoint).parent / "run.json"
    if run.is_file():
        try:
            ls = (json.loads(run.read_text()).get("train") or {}).get("load_size")
            return tuple(ls) if ls else None
        except (json.JSONDecodeError, AttributeError):
            return None
    return None


def select_pairs(pairs: List[Pair], meta: Dict[str, Any], which: str = "heldout",
                 holdout: Optional[int] = None) -> Tuple[List[Pair], str]:
    """Pairs to score and a note on how they were chosen.

    ``which="heldout"``: the last ``holdout`` pairs if given, else the pairs whose names are not in
    the checkpoint's ``train_pairs``; ``"all"``: every pair (training pairs included).

    Raises:
        DataError: no pair is left (e.g. every pair was trained on).
    """
    if which == "all":
        return pairs, "all pairs (training pairs included)"
    if which != "heldout":
        raise ValueError(f"which must be 'heldout' or 'all', got {which!r}")
    if holdout is not None:
        if not 0 < holdout <= len(pairs):
            raise DataError(f"holdout {holdout} out of range: the data has {len(pairs)} pairs")
        return pairs[-holdout:], f"last {holdout} pair(s)"
    trained = {_stem(Path(str(p))) for p in meta.get("train_pairs", [])}
    if not trained:
        return pairs, "all pairs (the checkpoint does not list its training pairs)"
    chosen = [p for p in pairs if p.name not in trained]
    if not chosen:
        raise DataError(f"every pair of the data folder was used to train this checkpoint ({len(trained)} pairs); "
                        "pass pairs='all' (--pairs all) to score training pairs")
    return chosen, "pairs not in the checkpoint's train_pairs"


@torch.no_grad()
def generate(model: nn.Module, meta: Dict[str, Any], pairs: List[Pair], size: Optional[Tuple[int, int]],
             batch_log: Callable[[str], None] = lambda s: None,
             device: Optional[torch.device | str] = None) -> Dict[str, Any]:
    """Run the generator over ``pairs``: inputs on ``device`` (default: where ``model``'s weights
    are), outputs brought back to the CPU.

    Returns:
        dict with ``fake`` (N, 3, H, W) in [-1, 1], ``real`` (N, 3, H, W) in [-1, 1] or ``None``
        when a pair has no photo, ``labels`` (N, H, W) int64 label ids, ``names``.
    """
    num_classes = int(meta.get("num_classes", getattr(getattr(model, "cfg", None), "in_channels", 35)))
    use_instance = bool(meta.get("use_instance", False))
    ds = LabelPhotoDataset(pairs, num_classes, use_instance, load_size=size, cache=False)
    device = model_device(model) if device is None else device
    fakes, reals, labels = [], [], []
    for i in _progress(range(len(ds)), desc="generate", unit="img"):
        it = ds[i]
        fakes.append(model(it["input"][None].to(device)).clamp(-1, 1).float().cpu())
        reals.append(it.get("target"))
        labels.append(it["label"])
        batch_log(f"generated {it['name']} ({fakes[-1].shape[-1]}x{fakes[-1].shape[-2]})")
    real = torch.stack(reals) if all(r is not None for r in reals) else None
    return {"fake": torch.cat(fakes), "real": real, "labels": torch.stack(labels), "names": [p.name for p in pairs]}


def _unavailable(metric: str, reason: str) -> Dict[str, Any]:
    return {"metric": metric, "available": False, "reason": reason}


def lpips_score(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean LPIPS-AlexNet (torchmetrics) of (N, 3, H, W) images in [-1, 1]; lower is better.

    Raises:
        RuntimeError: the LPIPS weights (torchvision AlexNet ImageNet backbone) cannot be loaded.
    """
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        m = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=False)
    except Exception as e:
        raise RuntimeError(f"LPIPS weights cannot be loaded ({type(e).__name__}: {e})") from None
    return float(m(fake.clamp(-1, 1), real.clamp(-1, 1)))


def _fid_entry(real, fake, feature, weights, no_photo) -> Dict[str, Any]:
    from ...metrics.fid import FIDUnavailable, compute_fid
    if real is None:
        return _unavailable("fid", no_photo)
    if len(real) < 2:
        return _unavailable("fid", f"FID needs at least 2 images per set, got {len(real)} "
                                   "(score more pairs: --pairs all, or a larger data folder)")
    try:
        value = compute_fid([real], [fake], feature=feature, weights_path=weights)
    except (FIDUnavailable, ValueError) as e:
        return _unavailable("fid", str(e))
    return {"metric": "fid", "value": value, "unit": "", "higher_is_better": False,
            "extractor": "custom" if feature is not None else "inception-v3-2048",
            "note": "FID of fewer than ~2048 images is strongly biased; compare only at equal set sizes"}


def _segscore_entry(fake, real, labels, segmenter) -> Dict[str, Any]:
    from ..segment.build import load_segmenter
    from ..segment.evaluate import segscore
    path = Path(segmenter) if segmenter else default_segmenter()
    if path is None:
        return _unavailable("segscore", "no segmenter: train one with 'asapnet train --task segment --holdout 1 "
                                        "--out runs/segmenter' and pass --segmenter runs/segmenter/segmenter.safetensors")
    seg = load_segmenter(path)
    s = segscore(fake, labels, seg)
    r: Dict[str, Any] = {"metric": "segscore", "miou": s.miou, "pixel_accuracy": s.pixel_accuracy,
                         "per_class_iou": s.to_dict()["per_class_iou"], "higher_is_better": True,
                         "segmenter": str(path), "segmenter_size": list(seg.cfg.size),
                         "segmenter_trained_on": seg.meta.get("train_pairs", [])}
    if real is not None:
        c = segscore(real, labels, seg)
        r.update(real_miou=c.miou, real_pixel_accuracy=c.pixel_accuracy,
                 real_per_class_iou=c.to_dict()["per_class_iou"])
    return r


def resolve_dataset(dataset: Optional[str], metas: Sequence[Dict[str, Any]]) -> str:
    """The dataset to score on: ``dataset`` if given, else the checkpoints' common ``dataset``
    metadata when it is one of :data:`DATASETS`, else ``"cityscapes"``.

    Raises:
        ValueError: an unknown name, or checkpoints trained on different datasets (give one).
    """
    if dataset is not None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        return dataset
    found = {m.get("dataset") for m in metas if m.get("dataset") in DATASETS}
    if len(found) > 1:
        raise ValueError(f"the checkpoints were trained on different datasets {sorted(found)}; "
                         "choose one with dataset= (--dataset)")
    return found.pop() if found else "cityscapes"


def model_tile(models: Sequence[nn.Module], default: int = 16) -> int:
    """Tile size of the tile metrics: ``S`` of the first model that has one (ASAP), else ``default``."""
    for m in models:
        if hasattr(m, "S"):
            return int(m.S)
    return default


def checkpoint_name(path: Optional[Path], meta: Dict[str, Any]) -> str:
    """Row name of a checkpoint given without ``NAME=``: its model name (``asap``, ``pix2pixhd``...),
    else the file's folder name."""
    return str(meta.get("model") or (Path(path).parent.name if path else "model"))
