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
  (:mod:`asapnet.segment`);
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

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...checkpoint import load_generator
from ...console import progress as _progress
from ...data.datasets import LabelPhotoDataset, Pair, _stem, cityscapes_pairs
from ...data.io import DataError
from ...metrics.translation import SetScores, TileStats, TrivialColours
from ...inference.optimize import model_device, prepare_for_inference, synchronize
# ALL_METRICS, DEFAULT_METRICS (the per-metric list, --dataset cityscapes), TABLE_METRICS (the
# comparison table) and DATASETS are defined with the CLI options in asapnet.parsers (no torch)
from ...options import ALL_METRICS, DEFAULT_METRICS, EVALUATE_DATASETS as DATASETS, TABLE_METRICS  # noqa: F401

logger = logging.getLogger(__name__)

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
    from importlib import resources
    name = SEGMENTER_FILES.get(dataset)
    if name is None:
        return None
    p = Path(str(resources.files("asapnet") / "weights" / name))
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
    from ..segment.task import load_segmenter, segscore
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


# ---------------------------------------------------------------------------------------------
# comparison table: checkpoints and reference rows on the same label maps
# ---------------------------------------------------------------------------------------------


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


def open_split(dataset: str, folder: str | Path, size: Optional[Tuple[int, int]] = None,
               limit: Optional[int] = None):
    """The scored images of ``folder`` as a dataset (items ``input``, ``target``, ``label``, ``name``).

    Args:
        dataset: ``"cityscapes-pix2pix"`` (:class:`asapnet.data.cityscapes.Pix2PixCityscapes`,
            35 one-hot channels) or ``"facades"`` (:class:`asapnet.data.facades.FacadesCMP`, 12).
        size: (H, W); default :data:`DEFAULT_SIZES`.
        limit: only the first ``limit`` files (sorted by number / name).

    Raises:
        ValueError: another dataset. DataError: missing or empty folder.
    """
    size = tuple(size or DEFAULT_SIZES[dataset]) if dataset in DEFAULT_SIZES else None
    if dataset == "cityscapes-pix2pix":
        from ...data.cityscapes import Pix2PixCityscapes
        return Pix2PixCityscapes(folder, size=size, limit=limit, cache=False)
    if dataset == "facades":
        from ...data.facades import FacadesCMP
        return FacadesCMP(folder, size=size, limit=limit, cache=False)
    raise ValueError(f"open_split reads 'cityscapes-pix2pix' or 'facades' splits, got {dataset!r}")


def trivial_colours(dataset: str, folder: str | Path, size: Optional[Tuple[int, int]] = None,
                    sample: int = 300) -> Tuple[TrivialColours, str]:
    """The trivial translators of ``dataset`` from ``sample`` evenly spaced training photos of ``folder``
    (read at ``size``, see :func:`open_split`), and a line saying so.

    Raises:
        ValueError: ``sample`` < 1 or an unknown dataset. DataError: missing folder.
    """
    if sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    ds = open_split(dataset, folder, size)
    idx = sorted({int(i) for i in torch.linspace(0, len(ds) - 1, min(sample, len(ds))).round()})
    triv = TrivialColours.fit(((it["target"], it["label"]) for it in map(ds.__getitem__, idx)), ds.num_classes)
    spaced = "evenly spaced, " if triv.images < len(ds) else ""
    return triv, f"trivial images from {triv.images} of the {len(ds)} training photos ({spaced}{folder})"


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


def parse_checkpoint_specs(specs: Sequence[str | Path]) -> Dict[str, Path]:
    """``["asap=runs/a/generator.safetensors", "runs/b/generator.safetensors"]`` -> {name: path}.

    A spec without ``NAME=`` (or whose whole text is an existing file) is named by
    :func:`checkpoint_name` from its metadata; repeated names get the folder name appended.

    Raises:
        FileNotFoundError / ValueError: a checkpoint that cannot be read.
    """
    from ...checkpoint import load_tensors

    out: Dict[str, Path] = {}
    for spec in specs:
        text = str(spec)
        name, path = (text.split("=", 1) if "=" in text and not Path(text).exists() else (None, text))
        path = Path(path)
        if not name:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such checkpoint")
            name = checkpoint_name(path, load_tensors(path)[1])
        if name in out:
            name = f"{name} ({path.parent.name})"
        out[name] = path
    return out


def _generators(checkpoints: Mapping[str, Any], device: Optional[torch.device | str] = None
                ) -> List[Tuple[str, nn.Module, Dict[str, Any], Optional[Path]]]:
    out = []
    for name, v in checkpoints.items():
        if isinstance(v, (str, Path)):
            model, meta = load_generator(v)
            path: Optional[Path] = Path(v)
        elif isinstance(v, nn.Module):
            model, meta, path = v, {}, None
        else:
            model, meta, path = (tuple(v) + (None,))[:3]
            meta = dict(meta or {})
        if device is not None:
            model.to(device)
        out.append((name, prepare_for_inference(model), meta, Path(path) if path else None))
    return out


def _check_fits(name: str, model: nn.Module, meta: Dict[str, Any], path: Optional[Path], dataset: str,
                in_channels: int) -> None:
    where = f"{path}" if path else name
    if meta.get("use_instance"):
        raise ValueError(f"{where}: the checkpoint expects instance edge maps; {dataset} has none")
    n = meta.get("num_classes", getattr(getattr(model, "cfg", None), "in_channels", in_channels))
    if n is not None and int(n) != in_channels:
        raise ValueError(f"{where}: the checkpoint takes {n} classes, {dataset} label maps have {in_channels}")


def _resolve_segmenter(dataset: str, segmenter: Optional[str | Path]) -> Tuple[Any, Optional[str]]:
    """(Segmenter, None) or (None, reason it is unavailable)."""
    from ..segment.task import load_segmenter

    path = Path(segmenter) if segmenter else default_segmenter(dataset)
    if path is None:
        return None, (f"no segmenter for {dataset}: train one with 'asapnet train --task segment --dataset {dataset} "
                      f"--out runs/segmenter-{dataset}' and pass --segmenter "
                      f"runs/segmenter-{dataset}/segmenter.safetensors")
    seg = load_segmenter(path)
    family = "facades" if dataset == "facades" else "cityscapes"
    if ("facades" if seg.dataset == "facades" else "cityscapes") != family:
        return None, f"{path} segments {seg.dataset} photos, not {dataset}"
    seg.meta["path"] = str(path)
    return seg, None


@torch.no_grad()
def compare_translations(checkpoints: Mapping[str, Any], dataset: Optional[str] = None,
                         data_dir: Optional[str | Path] = None, *, train_dir: Optional[str | Path] = None,
                         data_root: Optional[str | Path] = None, limit: Optional[int] = None,
                         size: Optional[Tuple[int, int]] = None, metrics: Sequence[str] = TABLE_METRICS,
                         references: Sequence[str] = REFERENCE_ROWS, segmenter: Optional[str | Path] = None,
                         tile: Optional[int] = None, trivial_sample: int = 300, batch_size: int = 4,
                         fid_weights: Optional[str | Path] = None, fid_feature: Optional[nn.Module] = None,
                         log: Callable[[str], None] = lambda s: None,
                         device: Optional[torch.device | str] = None) -> Dict[str, Any]:
    """Score several label->photo generators and the reference rows on the same label maps.

    Args:
        checkpoints: {row name: generator ``.safetensors`` path, or ``(model, meta[, path])``, or a
            model}; models take the one-hot (N, C, H, W) input and return (N, 3, H, W) in [-1, 1].
            Models given as objects are prepared in place (eval mode, spectral norm folded).
        dataset: ``"cityscapes-pix2pix"`` or ``"facades"``; ``None`` = the checkpoints' ``dataset``.
        data_dir: the scored split (default ``<data_root>/cityscapes_pix2pix/val`` or
            ``facades_cmp/test``); train_dir: the split of the trivial images (default: the
            ``train`` folder next to ``data_dir``).
        data_root: see :func:`asapnet.data.datasets.data_root`.
        limit: score only the first ``limit`` images of ``data_dir``.
        size: (H, W) the images are generated and scored at (default :data:`DEFAULT_SIZES`).
        metrics: any of :data:`ALL_METRICS` (default :data:`TABLE_METRICS`).
        references: which of :data:`REFERENCE_ROWS` to add.
        segmenter: segmenter for ``segscore`` (default: the one shipped for the dataset, if any).
        tile: tile size of ``tile_contrast`` / ``seam_ratio``, the same for every row (default:
            the first ASAP model's S, else 16).
        trivial_sample: training photos (evenly spaced) behind the trivial rows.
        batch_size: images generated per forward pass.
        device: where the generators run (default: where each model's weights are; models are
            moved there); their outputs come back to the CPU, where every metric is computed.

    Returns:
        JSON-ready dict: ``dataset``, ``data``, ``images``, ``names``, ``size`` [H, W], ``tile``,
        ``block``, ``block_classes`` {name: label id}, ``trivial`` (how the trivial rows were made),
        ``segmenter`` (path or ``None``), ``unavailable`` {metric: reason}, ``metrics`` and ``rows``:
        one dict per checkpoint then per reference row with ``name``, ``kind`` (``model`` /
        ``trivial`` / ``real``) and the metrics: ``psnr`` (dB), ``ssim``, ``tile_contrast`` (gray
        levels), ``seam_ratio``, ``block_std`` {class name: gray levels}, ``miou``,
        ``pixel_accuracy``, ``per_class_iou``, ``fid``, ``lpips`` (``None`` where undefined: PSNR /
        SSIM / LPIPS / FID of the real photos, a class absent from every image). Model rows also
        have ``checkpoint``, ``model``, ``step`` and ``seconds_per_image`` (generation time here).

    Raises:
        ValueError: unknown metric / dataset / reference name, ``dataset="cityscapes"`` (use
            :func:`evaluate_translation`), or a checkpoint that does not fit the dataset's labels.
        DataError / FileNotFoundError: missing data or checkpoint.
    """
    from ...data.datasets import data_root as resolve_root

    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(ALL_METRICS)}")
    bad = [r for r in references if r not in REFERENCE_ROWS]
    if bad:
        raise ValueError(f"unknown reference row(s) {bad}; choose from {list(REFERENCE_ROWS)}")
    gens = _generators(checkpoints, device)
    dataset = resolve_dataset(dataset, [g[2] for g in gens])
    if dataset not in SPLITS:
        raise ValueError(f"the comparison table scores {' or '.join(SPLITS)}; for the {dataset} sample layout use "
                         "evaluate_translation (asapnet evaluate --dataset cityscapes, one checkpoint)")
    folder, split, train_split = SPLITS[dataset]
    data_dir = Path(data_dir) if data_dir else resolve_root(data_root) / folder / split
    ds = open_split(dataset, data_dir, size, limit)
    size = tuple(ds.size)
    for name, model, meta, path in gens:
        _check_fits(name, model, meta, path, dataset, ds.num_classes)
    tile = int(tile or model_tile([g[1] for g in gens]))
    classes = BLOCK_CLASSES[dataset]
    unavailable: Dict[str, str] = {}

    trivial, trivial_note = None, None
    if {"mean colour", "class mean colour"} & set(references):
        train_dir = Path(train_dir) if train_dir else data_dir.parent / train_split
        trivial, trivial_note = trivial_colours(dataset, train_dir, size, trivial_sample)
        log(trivial_note)

    seg = None
    if "segscore" in metrics:
        seg, reason = _resolve_segmenter(dataset, segmenter)
        if reason:
            unavailable["segscore"] = reason
    lpips = None
    if "lpips" in metrics:
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
            lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=False)
        except Exception as e:
            unavailable["lpips"] = f"LPIPS weights cannot be loaded ({type(e).__name__}: {e})"

    rows: List[Tuple[str, str, Optional[nn.Module], SetScores]] = []
    for name, model, meta, path in gens:
        rows.append((name, "model", model, SetScores(metrics, tile, classes, BLOCK)))
    for ref in references:
        rows.append((ref, "real" if ref == "real photos" else "trivial", None,
                     SetScores(metrics, tile, classes, BLOCK, reference=ref == "real photos")))
    if "fid" in metrics:
        from ...metrics.fid import FIDUnavailable, fid_metric
        if len(ds) < 2:
            unavailable["fid"] = f"FID needs at least 2 images per set, got {len(ds)}"
        else:
            try:
                for name, kind, _, acc in rows:
                    if kind != "real":
                        acc.fid = fid_metric(fid_feature, fid_weights)
            except FIDUnavailable as e:
                unavailable["fid"] = str(e)
                for *_, acc in rows:
                    acc.fid = None

    names: List[str] = []
    seconds = {name: 0.0 for name, *_ in gens}
    bar = _progress(total=len(ds), desc="score", unit="img")
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        x = torch.stack([it["input"] for it in items])
        real = torch.stack([it["target"] for it in items])
        labels = torch.stack([it["label"] for it in items])
        names += [it["name"] for it in items]
        target = seg.targets(labels) if seg is not None else None
        for name, kind, model, acc in rows:
            if kind == "model":
                dev = model_device(model) if device is None else device
                t0 = time.perf_counter()
                fake = model(x.to(dev)).clamp(-1, 1)
                synchronize(fake.device)
                seconds[name] += time.perf_counter() - t0
                fake = fake.float().cpu()
            elif name == "mean colour":
                fake = trivial.constant(labels)
            elif name == "class mean colour":
                fake = trivial.per_class(labels)
            else:
                fake = real
            acc.update(fake, real, labels, seg, target, lpips)
        bar.update(len(items))
        if (start // batch_size) % 10 == 9 or len(names) == len(ds):
            log(f"scored {len(names)}/{len(ds)} images")
    bar.close()

    out_rows = []
    for (name, kind, model, acc), gen in zip(rows, gens + [None] * len(references)):
        row: Dict[str, Any] = {"name": name, "kind": kind}
        if gen is not None:
            _, _, meta, path = gen
            row.update(checkpoint=str(path) if path else None, model=meta.get("model"), step=meta.get("step"),
                       seconds_per_image=seconds[name] / max(1, acc.n))
        row.update(acc.result(seg.class_names if seg is not None else None))
        out_rows.append(_json_safe(row))
    return {"dataset": dataset, "data": str(data_dir), "images": len(names), "names": names,
            "selection": f"first {len(names)} of {data_dir}" if limit else f"all {len(names)} of {data_dir}",
            "size": list(size), "tile": tile, "block": BLOCK, "block_classes": dict(classes),
            "trivial": trivial_note,
            "segmenter": seg.meta["path"] if seg is not None else None,
            "segmenter_trained_on": (seg.meta.get("train_data") or seg.meta.get("train_pairs")) if seg else None,
            "metrics": list(metrics), "unavailable": unavailable, "rows": out_rows}


def _json_safe(v: Any) -> Any:
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _row_to_entries(res: Dict[str, Any], metrics: Sequence[str]) -> List[Dict[str, Any]]:
    """The first (model) row of a :func:`compare_translations` result as per-metric entries."""
    row = res["rows"][0]
    real = next((r for r in res["rows"] if r["kind"] == "real"), None)
    common = {"images": res["images"], "pairs": res["names"], "selection": res["selection"], "size": res["size"],
              "checkpoint": row.get("checkpoint"), "dataset": res["dataset"]}
    out = []
    for m in metrics:
        if m in res["unavailable"]:
            r = _unavailable(m, res["unavailable"][m])
        elif m == "segscore":
            r = {"metric": m, "miou": row["miou"], "pixel_accuracy": row["pixel_accuracy"],
                 "per_class_iou": row["per_class_iou"], "higher_is_better": True, "segmenter": res["segmenter"]}
            if real is not None:
                r.update(real_miou=real["miou"], real_pixel_accuracy=real["pixel_accuracy"],
                         real_per_class_iou=real["per_class_iou"])
        else:
            unit = {"psnr": "dB", "tile_contrast": "gray levels", "block_std": "gray levels"}.get(m, "")
            r = {"metric": m, "value": row[m], "unit": unit}
            if m in ("psnr", "ssim", "fid", "lpips"):
                r["higher_is_better"] = m in ("psnr", "ssim")
            if m in ("tile_contrast", "seam_ratio"):
                r["tile"] = res["tile"]
        out.append({**r, **common})
    return out


def _fmt(v: Any, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _columns(res: Dict[str, Any]) -> List[Tuple[str, Callable[[Dict[str, Any]], str]]]:
    m = set(res["metrics"])
    cols: List[Tuple[str, Callable[[Dict[str, Any]], str]]] = []
    if "psnr" in m:
        cols.append(("PSNR dB", lambda r: _fmt(r.get("psnr"))))
    if "ssim" in m:
        cols.append(("SSIM", lambda r: _fmt(r.get("ssim"), 3)))
    if "tile_contrast" in m:
        cols.append((f"tile contrast (S={res['tile']})", lambda r: _fmt(r.get("tile_contrast"), 1)))
    if "seam_ratio" in m:
        cols.append(("seam ratio", lambda r: _fmt(r.get("seam_ratio"))))
    if "block_std" in m:
        for c in res["block_classes"]:
            cols.append((f"std {c}", lambda r, c=c: _fmt((r.get("block_std") or {}).get(c), 1)))
    if "segscore" in m and "segscore" not in res["unavailable"]:
        cols.append(("mIoU", lambda r: _fmt(r.get("miou"), 3)))
        cols.append(("pixel acc.", lambda r: _fmt(r.get("pixel_accuracy"), 3)))
    for k, label, nd in (("fid", "FID", 1), ("lpips", "LPIPS", 3)):
        if k in m and k not in res["unavailable"]:
            cols.append((label, lambda r, k=k, nd=nd: _fmt(r.get(k), nd)))
    return cols


def comparison_notes(res: Dict[str, Any]) -> List[str]:
    """The lines that say what a :func:`compare_translations` table measured."""
    h, w = res["size"]
    lines = [f"{res['dataset']}: {res['selection']}, at {h}x{w}; mean over images. "
             f"Tile metrics with S = {res['tile']} for every row; block std = std inside {res['block']}x{res['block']} "
             "blocks covered by one class (gray levels, 0-255)."]
    if res.get("trivial"):
        lines.append(res["trivial"].capitalize() + ".")
    if res.get("segmenter"):
        lines.append(f"segscore: segmenter {res['segmenter']}; the real photos' row is its ceiling.")
    for k, why in res["unavailable"].items():
        lines.append(f"{k} unavailable: {why}")
    return lines


def format_comparison(res: Dict[str, Any]) -> str:
    """Plain-text table of a :func:`compare_translations` result (one line per row)."""
    cols = _columns(res)
    width = max([len(r["name"]) for r in res["rows"]] + [6])
    head = f"{'method':<{width}}  " + "  ".join(f"{c:>{max(7, len(c))}}" for c, _ in cols)
    lines = [head]
    for r in res["rows"]:
        lines.append(f"{r['name']:<{width}}  " + "  ".join(f"{f(r):>{max(7, len(c))}}" for c, f in cols))
    return "\n".join(lines + comparison_notes(res))


def comparison_markdown(res: Dict[str, Any]) -> str:
    """Markdown table of a :func:`compare_translations` result, with its notes below."""
    cols = _columns(res)
    lines = ["| method | " + " | ".join(c for c, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for r in res["rows"]:
        name = r["name"] if r["kind"] == "model" else f"*{r['name']}*"
        lines.append(f"| {name} | " + " | ".join(f(r) for _, f in cols) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(comparison_notes(res)) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------


def format_table(results: List[Dict[str, Any]]) -> str:
    """Human-readable table of :func:`evaluate_translation` results (one line per number)."""
    lines = [f"{'metric':<24} {'value':>10}  notes"]
    for r in results:
        if not r.get("available", True):
            lines.append(f"{r['metric']:<24} {'n/a':>10}  unavailable: {r['reason']}")
        elif r["metric"] == "segscore":
            lines.append(f"{'segscore mIoU':<24} {r['miou']:>10.4f}  generated photos vs input labels")
            lines.append(f"{'segscore pixel accuracy':<24} {r['pixel_accuracy']:>10.4f}")
            if "real_miou" in r:
                lines.append(f"{'  real-photo mIoU':<24} {r['real_miou']:>10.4f}  ceiling (same segmenter)")
                lines.append(f"{'  real-photo pixel acc.':<24} {r['real_pixel_accuracy']:>10.4f}")
        else:
            unit = f" {r['unit']}" if r.get("unit") else ""
            values = r["value"] if isinstance(r["value"], dict) else {"": r["value"]}
            for cls, v in values.items():
                name = f"{r['metric']} {cls}".strip()
                real = r.get("real_value")
                real = real.get(cls) if isinstance(real, dict) else real
                note = f"  (tile {r['tile']})" if "tile" in r and r["metric"] != "block_std" else ""
                note += f"  real photos: {real:.4f}" if real is not None else ""
                lines.append(f"{name:<24} {'n/a' if v is None else format(v, '.4f'):>10}{unit}{note}")
    if results:
        r = results[0]
        lines.append(f"{r['images']} image(s) at {r['size'][0]}x{r['size'][1]} ({r['selection']}): "
                     + ", ".join(r["pairs"][:4]) + (" ..." if len(r["pairs"]) > 4 else ""))
    return "\n".join(lines)


def parse_metrics(text: str) -> List[str]:
    """'fid,psnr' -> ['fid', 'psnr'] (raises argparse.ArgumentTypeError on unknown names)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {bad}; choose from {','.join(ALL_METRICS)}")
    return names


def _as_list(v: Any) -> List[str]:
    return [] if v is None else [str(v)] if isinstance(v, (str, Path)) else [str(x) for x in v]


def cmd_evaluate_translate(a: argparse.Namespace) -> int:
    """Run :func:`compare_translations` (``--dataset cityscapes-pix2pix`` / ``facades``, any number
    of ``--checkpoint [NAME=]PATH``) or :func:`evaluate_translation` (``--dataset cityscapes``, one
    checkpoint) from parsed arguments; print a table or JSON (one object for the comparison, one per
    metric otherwise).

    Exit code 0, or 1 when a metric named in ``--metrics`` (other than lpips) could not be
    computed; with the default metric list, unavailable metrics are only reported.

    Raises:
        ValueError: several checkpoints with ``--dataset cityscapes``, or see the functions above.
    """
    from ...data.datasets import data_root
    from ...options import parse_size
    from .run import default_checkpoint

    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    device = getattr(a, "device", "cpu") or "cpu"
    specs = _as_list(getattr(a, "checkpoint", None)) or [str(default_checkpoint())]
    named = parse_checkpoint_specs(specs)
    loaded = {name: (*load_generator(path), path) for name, path in named.items()}
    dataset = resolve_dataset(getattr(a, "dataset", None), [v[1] for v in loaded.values()])
    size = parse_size(a.size) if getattr(a, "size", None) else None
    data = _as_list(getattr(a, "data", None))
    if len(data) > 1:
        raise ValueError("evaluate --task translate takes one --data folder")
    data_dir = Path(data[0]) if data else None
    if dataset == "cityscapes":
        if len(loaded) > 1:
            raise ValueError("--dataset cityscapes scores one checkpoint; compare several on --dataset "
                             "cityscapes-pix2pix or facades")
        return _cmd_evaluate_one(a, next(iter(named.values())), data_dir or data_root(getattr(a, "data_root", None))
                                 / "cityscapes_samples", size, device)
    metrics = parse_metrics(a.metrics) if a.metrics else list(TABLE_METRICS)
    res = compare_translations(loaded, dataset, data_dir, train_dir=getattr(a, "train_data", None),
                               trivial_sample=getattr(a, "trivial_sample", 300),
                               data_root=getattr(a, "data_root", None), limit=getattr(a, "limit", None), size=size,
                               metrics=metrics, segmenter=getattr(a, "segmenter", None), tile=getattr(a, "tile", None),
                               fid_weights=getattr(a, "fid_weights", None), log=logger.info, device=device)
    print(json.dumps(res) if a.json else format_comparison(res))
    missing = {k: v for k, v in res["unavailable"].items() if k != "lpips"}
    for k, v in missing.items():
        logger.warning(f"asapnet evaluate: {k} unavailable: {v}")
    return 1 if (missing and a.metrics) else 0


def _cmd_evaluate_one(a: argparse.Namespace, ckpt: Path, data: Path, size: Optional[Tuple[int, int]],
                      device: str = "cpu") -> int:
    metrics = parse_metrics(a.metrics) if a.metrics else list(DEFAULT_METRICS)
    results = evaluate_translation(ckpt, data, metrics, split=getattr(a, "split", "train"),
                                   which=getattr(a, "pairs", "heldout"), holdout=getattr(a, "holdout", None),
                                   size=size, segmenter=getattr(a, "segmenter", None),
                                   fid_weights=getattr(a, "fid_weights", None), dataset="cityscapes",
                                   tile=getattr(a, "tile", None), log=logger.debug, device=device)
    if a.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(f"checkpoint: {ckpt}")  # the table's heading
        print(format_table(results))
    missing = [r for r in results if not r.get("available", True) and r["metric"] != "lpips"]
    for r in missing:
        logger.warning(f"asapnet evaluate: {r['metric']} unavailable: {r['reason']}")
    return 1 if (missing and a.metrics) else 0
