"""The comparison table of ``asapnet evaluate --task translate --dataset cityscapes-pix2pix|facades``: every
checkpoint and the reference rows (mean colour, class mean colour, real photos) scored on the same label
maps (:func:`compare_translations`); the metrics are described in :mod:`.evaluate`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...checkpoint import load_generator
from ...console import progress as _progress
from ...metrics.translation import SetScores, TrivialColours
from ...inference.optimize import model_device, prepare_for_inference, synchronize
from ...options import ALL_METRICS, TABLE_METRICS
from .scoring import (BLOCK, BLOCK_CLASSES, DEFAULT_SIZES, REFERENCE_ROWS, SPLITS, _unavailable, checkpoint_name,
                      default_segmenter, model_tile, resolve_dataset)


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
    from ..segment.build import load_segmenter

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
