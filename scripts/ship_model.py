"""Copy a run's generator into the package as a shipped model (fp16 safetensors + JSON).

    python scripts/ship_model.py --run runs/cityscapes-cpu --name cityscapes-cpu --command "asapnet train ..."

The metadata records the training step, the wall time (from the run's TensorBoard timing),
the last validation metrics (metrics.jsonl) and the command, so the shipped file documents itself.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from asapnet.checkpoint import load_generator, load_tensors, save_tensors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", default="")
    ap.add_argument("--wall-time-min", type=float, default=None)
    ap.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16 storage, fp32 compute)")
    a = ap.parse_args()
    run = Path(a.run)
    tensors, meta = load_tensors(run / "generator.safetensors")
    load_generator(run / "generator.safetensors")  # validates that it loads
    if not a.fp32:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
    train_meta = json.loads((run / "run.json").read_text())
    meta.update({"storage_dtype": "float32" if a.fp32 else "float16", "command": a.command,
                 "validation": metrics[-1] if metrics else None, "wall_time_min": a.wall_time_min,
                 "train": train_meta.get("train"), "discriminator": train_meta.get("discriminator")})
    out = Path(__file__).resolve().parents[1] / "src" / "asapnet" / "weights" / f"{a.name}.safetensors"
    save_tensors(out, tensors, meta)
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    model, _ = load_generator(out)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), step {meta.get('step')}, validation {meta['validation']}")


if __name__ == "__main__":
    main()
