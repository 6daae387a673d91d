"""Label map -> photo translation with a trained generator (``asapnet translate``)."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from PIL import Image

from .data.datasets import _stem
from .data.io import DataError, read_label
from .data.labels import instance_edges

DEFAULT_CHECKPOINT = "cityscapes-cpu.safetensors"


def default_checkpoint() -> Path:
    """Path of the Cityscapes model shipped inside the package (``asapnet/weights``)."""
    return Path(str(resources.files("asapnet") / "weights" / DEFAULT_CHECKPOINT))


def find_instance_map(label_path: Path, instance_dir: Optional[Path] = None) -> Optional[Path]:
    """Instance map belonging to a label map: same stem in ``instance_dir``, or the Cityscapes
    ``*_gtFine_instanceIds.png`` next to it or in the sibling ``*_inst`` folder."""
    stem = _stem(label_path)
    cands: List[Path] = []
    if instance_dir is not None:
        cands += sorted(Path(instance_dir).glob(f"{stem}*"))
    name = f"{stem}_gtFine_instanceIds.png"
    parent = label_path.parent
    cands.append(parent / name)
    if parent.name.endswith("_label"):
        cands.append(parent.parent / (parent.name[: -len("_label")] + "_inst") / name)
    return next((c for c in cands if c.is_file() and _stem(c) == stem), None)


def label_to_input(label_path: Path, num_classes: int, use_instance: bool,
                   instance_path: Optional[Path] = None) -> torch.Tensor:
    """Read a label map (+ instance map) into a generator input (1, num_classes [+1], H, W).

    Raises:
        DataError: unreadable file, id out of range, missing instance map or size mismatch.
    """
    label = read_label(label_path)
    if label.max() >= num_classes or label.min() < 0:
        bad = int(label.max() if label.max() >= num_classes else label.min())
        raise DataError(f"{label_path}: label id {bad} out of range [0, {num_classes})")
    lab = torch.from_numpy(label)
    x = torch.zeros(1, num_classes, *lab.shape)
    x.scatter_(1, lab[None, None], 1.0)
    if use_instance:
        if instance_path is None:
            raise DataError(f"{label_path}: this model needs an instance map and none was found "
                            "(give --instance-dir, or place *_gtFine_instanceIds.png next to it)")
        inst = read_label(instance_path)
        if inst.shape != label.shape:
            raise DataError(f"{instance_path}: size {inst.shape[1]}x{inst.shape[0]} does not match label map "
                            f"{label_path} ({label.shape[1]}x{label.shape[0]})")
        x = torch.cat([x, torch.from_numpy(instance_edges(inst))[None, None]], 1)
    return x


def save_rgb(y: torch.Tensor, path: Path) -> None:
    """Write a (1 or 3, H, W) image in [-1, 1] as 8-bit PNG/JPEG."""
    arr = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(path)


def output_name(label_path: Path) -> str:
    return _stem(label_path) + ".png"


def check_output_names(inputs: List[Path], out_dir: Path) -> None:
    """Refuse a batch in which two inputs map to the same output, or an output would overwrite
    an input (e.g. ``-o`` the input folder).

    Raises:
        DataError: naming both files.
    """
    seen: Dict[str, Path] = {}
    sources = {p.resolve() for p in inputs if p.exists()}
    for p in inputs:
        name = output_name(p)
        if name in seen and seen[name].resolve() != p.resolve():
            raise DataError(f"{p}: its output {out_dir / name} would overwrite the translation of {seen[name]}")
        seen[name] = p
        if (out_dir / name).resolve() in sources:
            raise DataError(f"{p}: its output {out_dir / name} would overwrite an input file")


@torch.no_grad()
def translate_files(model: nn.Module, meta: Dict, inputs: Iterable[Path], out_dir: Path,
                    instance_dir: Optional[Path] = None, on_error: str = "stop",
                    log: Callable[[str], None] = print) -> List[Tuple[Path, float]]:
    """Translate label-map files into photos written to ``out_dir/<stem>.png``.

    Returns:
        [(output path, milliseconds of the forward pass)] for the files translated.

    Raises:
        DataError: a bad input file when ``on_error="stop"`` (outputs already written are kept);
            with ``on_error="skip"`` the file is reported through ``log`` and skipped.
    """
    num_classes = int(meta.get("num_classes", model.cfg.in_channels))
    use_instance = bool(meta.get("use_instance", False))
    inputs = [Path(p) for p in inputs]
    check_output_names(inputs, Path(out_dir))
    done = []
    for path in inputs:
        try:
            x = label_to_input(path, num_classes, use_instance,
                               find_instance_map(path, instance_dir) if use_instance else None)
        except DataError as e:
            if on_error == "skip":
                log(f"skipped {e}")
                continue
            raise
        t = time.perf_counter()
        y = model(x)
        ms = (time.perf_counter() - t) * 1000
        out = Path(out_dir) / output_name(path)
        save_rgb(y[0], out)
        log(f"{path.name} -> {out} ({y.shape[-1]}x{y.shape[-2]}) in {ms:.0f} ms")
        done.append((out, ms))
    return done
