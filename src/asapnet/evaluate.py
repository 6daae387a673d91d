"""``asapnet evaluate --task translate``: the paper's quality numbers for a label->photo checkpoint.

    asapnet evaluate --task translate --checkpoint runs/cs/generator.safetensors \
        --data ../shared/data/cityscapes_samples --metrics fid,segscore,psnr,ssim,lpips [--json]

Metrics (paper §4.1, Fig. 6, Fig. 11):

* ``psnr`` (dB) / ``ssim``: generated vs real photo on the 0-255 scale (:mod:`asapnet.metrics.image`);
* ``fid``: Fréchet Inception Distance, real vs generated photos (:mod:`asapnet.metrics.fid`);
  standard InceptionV3 weights, or reported as unavailable with the reason;
* ``segscore``: mIoU / pixel accuracy / per-class IoU of a segmentation network run on the generated
  photos against the input label maps, and the same on the real photos (the ceiling)
  (:mod:`asapnet.segment`);
* ``lpips``: LPIPS-AlexNet (torchmetrics) when its ImageNet backbone weights can be loaded,
  otherwise reported as unavailable (never an error).

By default only *held-out* pairs are scored: the pairs of the data folder whose names are not in
the checkpoint's ``train_pairs`` metadata (written by ``asapnet train``). Images are generated at
the checkpoint's training size (``load_size`` in its metadata or in ``run.json`` next to it),
else at the label maps' own size.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .checkpoint import load_generator
from .data.datasets import LabelPhotoDataset, Pair, _stem, cityscapes_pairs
from .data.io import DataError
from .models.inference import prepare_for_inference

ALL_METRICS = ("fid", "segscore", "psnr", "ssim", "lpips")
DEFAULT_METRICS = ("fid", "segscore", "psnr", "ssim")
SEGMENTER_WEIGHTS = "segmenter-cityscapes.safetensors"


def default_segmenter() -> Optional[Path]:
    """The segmenter shipped in ``asapnet/weights`` if present, else ``None``."""
    from importlib import resources
    p = Path(str(resources.files("asapnet") / "weights" / SEGMENTER_WEIGHTS))
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
             batch_log: Callable[[str], None] = lambda s: None) -> Dict[str, Any]:
    """Run the generator over ``pairs``.

    Returns:
        dict with ``fake`` (N, 3, H, W) in [-1, 1], ``real`` (N, 3, H, W) in [-1, 1] or ``None``
        when a pair has no photo, ``labels`` (N, H, W) int64 label ids, ``names``.
    """
    num_classes = int(meta.get("num_classes", getattr(getattr(model, "cfg", None), "in_channels", 35)))
    use_instance = bool(meta.get("use_instance", False))
    ds = LabelPhotoDataset(pairs, num_classes, use_instance, load_size=size, cache=False)
    fakes, reals, labels = [], [], []
    for i in range(len(ds)):
        it = ds[i]
        fakes.append(model(it["input"][None]).clamp(-1, 1))
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


def evaluate_translation(checkpoint: str | Path, data_dir: str | Path, metrics: Sequence[str] = DEFAULT_METRICS,
                         split: str = "train", which: str = "heldout", holdout: Optional[int] = None,
                         size: Optional[Tuple[int, int]] = None, segmenter: Optional[str | Path] = None,
                         fid_weights: Optional[str | Path] = None, fid_feature: Optional[nn.Module] = None,
                         log: Callable[[str], None] = lambda s: None) -> List[Dict[str, Any]]:
    """Score a label->photo checkpoint on the pairs of ``data_dir``.

    Args:
        checkpoint: generator ``.safetensors`` (see :func:`asapnet.checkpoint.load_generator`).
        data_dir: folder with ``{split}_label`` (+ ``{split}_inst``, ``{split}_img``), e.g.
            ``cityscapes_samples``. Pairs without a photo only get ``segscore``.
        metrics: any of :data:`ALL_METRICS`.
        which, holdout: which pairs to score (see :func:`select_pairs`).
        size: (H, W) to generate at; ``None`` = the checkpoint's training size (or the data's size).
        segmenter: segmenter checkpoint (default: the shipped one, if any).
        fid_weights: local InceptionV3 weights file; fid_feature: injected FID feature extractor.

    Returns:
        One dict per metric, in the order asked: ``{"metric", "value", ...}`` or, for ``segscore``,
        ``{"metric", "miou", "pixel_accuracy", "per_class_iou", "real_miou", ...}``; a metric that
        cannot be computed here is ``{"metric", "available": False, "reason"}``. Every dict also has
        ``images`` (how many were scored), ``pairs`` and ``selection``.

    Raises:
        ValueError: an unknown metric name. FileNotFoundError / DataError: bad checkpoint or data.
    """
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(ALL_METRICS)}")
    checkpoint = Path(checkpoint)
    model, meta = load_generator(checkpoint)
    prepare_for_inference(model)  # eval mode, spectral norm folded: same outputs, faster
    pairs, selection = select_pairs(cityscapes_pairs(data_dir, split), meta, which, holdout)
    size = size or checkpoint_load_size(checkpoint, meta)
    out = generate(model, meta, pairs, size, log)
    fake, real, labels = out["fake"], out["real"], out["labels"]
    common = {"images": len(pairs), "pairs": out["names"], "selection": selection,
              "size": list(fake.shape[-2:]), "checkpoint": str(checkpoint)}
    no_photo = f"the pairs of {Path(data_dir) / (split + '_img')} have no photos to compare with"
    results: List[Dict[str, Any]] = []
    for m in metrics:
        if m in ("psnr", "ssim"):
            if real is None:
                r = _unavailable(m, no_photo)
            else:
                from .metrics.image import psnr_ssim
                p, s = psnr_ssim(fake, real)
                r = {"metric": m, "value": p if m == "psnr" else s, "unit": "dB" if m == "psnr" else "",
                     "higher_is_better": True}
        elif m == "fid":
            r = _fid_entry(real, fake, fid_feature, fid_weights, no_photo)
        elif m == "segscore":
            r = _segscore_entry(fake, real, labels, segmenter)
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
    from .metrics.fid import FIDUnavailable, compute_fid
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
    from .segment import load_segmenter, segscore
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
            lines.append(f"{r['metric']:<24} {r['value']:>10.4f}{unit}")
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


def add_evaluate_translate_args(p: argparse.ArgumentParser, shared: bool = True) -> None:
    """Options of ``asapnet evaluate --task translate``.

    With ``shared=False`` the options a sibling task may already define (--checkpoint, --data,
    --data-root, --metrics, --json, --threads) are not added.
    """
    if shared:
        p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
        p.add_argument("--data", default=None, help="data folder (default <data-root>/cityscapes_samples)")
        p.add_argument("--data-root", default=None, help="default $ASAPNET_DATA or ../shared/data")
        p.add_argument("--metrics", default=None,
                       help=f"comma-separated, from {','.join(ALL_METRICS)} (default {','.join(DEFAULT_METRICS)})")
        p.add_argument("--json", action="store_true", help="print one JSON object per metric")
        p.add_argument("--threads", type=int, default=None)
    p.add_argument("--split", default="train", help="{split}_label/_img/_inst folders to read (default train)")
    p.add_argument("--pairs", choices=["heldout", "all"], default="heldout",
                   help="score only pairs the checkpoint was not trained on (default) or all")
    p.add_argument("--holdout", type=int, default=None, help="score the last K pairs instead")
    p.add_argument("--size", default=None, help="HxW to generate at (default: the checkpoint's training size)")
    p.add_argument("--segmenter", default=None, help="segmenter .safetensors for segscore")
    p.add_argument("--fid-weights", default=None, help="local InceptionV3 FID weights file")


def cmd_evaluate_translate(a: argparse.Namespace) -> int:
    """Run :func:`evaluate_translation` from parsed arguments; print a table or JSON lines.

    Exit code 0, or 1 when a metric named in ``--metrics`` (other than lpips) could not be
    computed; with the default metric list, unavailable metrics are only reported.
    """
    from .cli import parse_size
    from .data.datasets import data_root
    from .translate import default_checkpoint

    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    metrics = parse_metrics(a.metrics) if a.metrics else list(DEFAULT_METRICS)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    data = Path(a.data) if a.data else data_root(getattr(a, "data_root", None)) / "cityscapes_samples"
    size = parse_size(a.size) if getattr(a, "size", None) else None
    results = evaluate_translation(ckpt, data, metrics, split=getattr(a, "split", "train"),
                                   which=getattr(a, "pairs", "heldout"), holdout=getattr(a, "holdout", None),
                                   size=size, segmenter=getattr(a, "segmenter", None),
                                   fid_weights=getattr(a, "fid_weights", None))
    if a.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(f"checkpoint: {ckpt}")
        print(format_table(results))
    missing = [r for r in results if not r.get("available", True) and r["metric"] != "lpips"]
    for r in missing:
        print(f"asapnet evaluate: {r['metric']} unavailable: {r['reason']}", file=sys.stderr)
    return 1 if (missing and a.metrics) else 0
