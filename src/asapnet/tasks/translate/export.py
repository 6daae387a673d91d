"""``asapnet export``: a translator checkpoint (default: the shipped Cityscapes model) -> ONNX, verified
with onnxruntime (:mod:`asapnet.inference.onnx`)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ...data.io import DataError, check_parent_folders
from ...inference.onnx import check_opset, export_onnx, verify_onnx
from .run import default_checkpoint
from .config import TranslateExportOptions

logger = logging.getLogger(__name__)


def cmd_export(opts: TranslateExportOptions) -> int:
    """Run ``asapnet export``; prints the max abs difference per verified size. Returns 0.

    Refused before anything is loaded: an ``--opset`` the installed torch.onnx cannot write
    (:func:`asapnet.inference.onnx.check_opset`), a ``-o`` that is a folder (or lies below a file)."""
    out = Path(opts.out)
    # refused before anything is loaded or exported
    if opts.opset is not None:
        check_opset(opts.opset, opts.dynamo, option="--opset")
    if out.is_dir():
        raise DataError(f"{out}: is a directory; -o takes the .onnx file to write (e.g. {out / 'generator.onnx'})")
    if out.exists() and not out.is_file():
        raise DataError(f"{out}: is not a regular file; -o takes the .onnx file to write")
    check_parent_folders(out, "write the .onnx file")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    ckpt = Path(opts.checkpoint) if opts.checkpoint else default_checkpoint()
    export_onnx(ckpt, opts.out, opset=opts.opset, dynamo=opts.dynamo)
    import onnx
    opset = next(o.version for o in onnx.load(opts.out, load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
    size_mb = Path(opts.out).stat().st_size / 2 ** 20
    logger.info(f"wrote {opts.out} ({size_mb:.1f} MiB, opset {opset}) from {ckpt}")
    if not opts.no_verify:
        for (h, w), d in verify_onnx(ckpt, opts.out, opts.verify_sizes).items():
            print(f"onnxruntime vs PyTorch at {h}x{w}: max abs diff {d:.2e}")  # the verification's result
    return 0

