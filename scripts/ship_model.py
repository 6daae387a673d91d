"""Copy a run's generator into the package as a shipped model (fp16 safetensors + JSON).

    python scripts/ship_model.py --run runs/cityscapes-asap --name cityscapes --command "asapnet train ..."

The metadata records the training step, the wall time (from the run's TensorBoard timing),
the last validation metrics (metrics.jsonl) and the command, so the shipped file documents itself.

A run that continued a shipped model (``asapnet train --init <shipped file>``) is shipped with
``--continues <that file> --continues-ref "git show <commit>:<path>"``: the new metadata then
carries the whole chain — ``total_steps`` (previous total + this run's steps), ``init_from``
(where to get the previous file, and its total steps), the previous command and note followed by
this run's, and ``wall_time_min`` summed over the chain (``--wall-time-min`` is this run's minutes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from asapnet.checkpoint import load_generator, load_tensors, save_tensors, trained_steps


def chain_metadata(prev: dict, meta: dict, *, ref: str, command: str, note: str,
                   wall_time_min: float | None) -> dict:
    """Metadata of a run continued from the shipped model whose metadata is ``prev``.

    Returns the keys ``total_steps``, ``init_from``, ``command``, ``note`` and ``wall_time_min``
    that describe the whole chain (previous ones first); ``meta["step"]`` is this run's steps.
    """
    prev_total = trained_steps(prev) or 0
    prev_wall = prev.get("wall_time_min")
    return {
        "total_steps": prev_total + int(meta.get("step", 0)),
        "init_from": {"path": ref, "step": prev_total},
        "command": "; then ".join(c for c in (prev.get("command", ""), command) if c),
        "note": ", then ".join(n for n in (prev.get("note", ""), note) if n),
        "wall_time_min": (None if wall_time_min is None or prev_wall is None
                          else float(prev_wall) + wall_time_min),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", default="")
    ap.add_argument("--wall-time-min", type=float, default=None,
                    help="wall time of this run in minutes (summed with the previous chain under --continues)")
    ap.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16 storage, fp32 compute)")
    ap.add_argument("--continues", default=None,
                    help="shipped .safetensors this run was initialised from (read before it is overwritten)")
    ap.add_argument("--continues-ref", default=None,
                    help="how a reader gets that file, e.g. 'git show <commit>:src/asapnet/weights/<name>.safetensors'")
    ap.add_argument("--note", default="", help="what this run did, appended to the previous note under --continues")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=JSON",
                    help="add or replace a metadata entry, e.g. --meta 'train_size=[256, 512]' (repeatable)")
    a = ap.parse_args()
    if a.continues and not a.continues_ref:
        ap.error("--continues needs --continues-ref (how to get the previous file once it is overwritten)")
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
    if a.note:
        meta["note"] = a.note
    for kv in a.meta:
        key, _, value = kv.partition("=")
        meta[key] = json.loads(value)
    if a.continues:
        _, prev = load_tensors(a.continues)
        meta.update(chain_metadata(prev, meta, ref=a.continues_ref, command=a.command, note=a.note,
                                   wall_time_min=a.wall_time_min))
    out = Path(__file__).resolve().parents[1] / "src" / "asapnet" / "weights" / f"{a.name}.safetensors"
    save_tensors(out, tensors, meta)
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    model, _ = load_generator(out)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), step {meta.get('step')}, "
          f"total {trained_steps(meta)}, validation {meta['validation']}")


if __name__ == "__main__":
    main()
