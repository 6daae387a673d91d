"""A training run's folder (checkpoint, state, run record, metrics; :func:`prepare_run_dir`; whether its state
fits a trainer's generator: :func:`config_differences`) and the stop signals
that end a run cleanly (:class:`StopSignals`, :class:`TrainingInterrupted`)."""
from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from ..checkpoint import write_text_atomic

STATE_FILE = "state.safetensors"


GENERATOR_FILE = "generator.safetensors"


RUN_FILE = "run.json"


METRICS_FILE = "metrics.jsonl"


#: Files whose presence marks a folder as holding a training run (see :func:`prepare_run_dir`).
RUN_MARKERS = (STATE_FILE, GENERATOR_FILE, RUN_FILE)


#: What a run writes into its folder; ``--overwrite`` deletes these and nothing else.
RUN_OUTPUTS = (STATE_FILE, GENERATOR_FILE, GENERATOR_FILE + ".json", RUN_FILE, METRICS_FILE, "samples", "tb")


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False, clear: bool = True) -> None:
    """Check the run folder ``out`` before ``asapnet train`` starts (every task).

    A folder that already holds a run (``state.safetensors``, ``generator.safetensors`` or
    ``run.json``) is only used with ``resume`` (continue it) or ``overwrite`` (start again: the
    run's own files, :data:`RUN_OUTPUTS` and interrupted atomic writes, are deleted first; other
    files in the folder are left alone). An empty, missing or unrelated folder is always fine.

    Args:
        clear: with ``overwrite``, delete the old run's files (False on the non-main processes
            of a distributed run, which only check).

    Raises:
        ValueError: ``out`` holds a run and neither flag is given, or both flags are given (the
            CLI turns it into one error line and exit status 2).
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("give either --resume (continue the run) or --overwrite (start it again), not both")
    found = [name for name in RUN_MARKERS if (out / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise ValueError(f"{out} already holds a training run ({', '.join(found)}): pass --resume to continue it "
                         "or --overwrite to delete it and start again")
    if not clear:
        return
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    for name in (STATE_FILE, GENERATOR_FILE, GENERATOR_FILE + ".json"):  # leftovers of killed atomic writes
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def config_differences(saved_model: Any, saved_config: Any, model_name: str, model_config: Dict[str, Any],
                       limit: int = 3) -> str:
    """What differs between a training state's generator (``model``, ``config`` of its metadata)
    and a trainer's, as ``"key is A there, B here; ..."`` (the first ``limit`` keys), or ``""``.
    ASAP-Net configs are compared with their defaults filled in (:meth:`ASAPConfig.from_dict`);
    keys missing from the state (older files) are not compared. Used by :meth:`Trainer.load`
    (``--resume``)."""
    if saved_model is None and saved_config is None:
        return ""  # a state without metadata: nothing to compare (load_state_dict checks the shapes)
    if saved_model != model_name:
        return f"model is {saved_model!r} there, {model_name!r} here"

    def norm(cfg: Any) -> Any:
        if model_name == "asap" and isinstance(cfg, dict):
            from ..config import ASAPConfig
            try:
                cfg = ASAPConfig.from_dict(cfg).to_dict()
            except (TypeError, ValueError, KeyError):
                pass
        return json.loads(json.dumps(cfg, default=str))

    old, new = norm(saved_config), norm(model_config)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "" if old == new else f"config is {old!r} there, {new!r} here"
    keys = [k for k in old if k in new and old[k] != new[k]]
    parts = [f"{k} is {old[k]!r} there, {new[k]!r} here" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"{len(keys) - limit} more")
    return "; ".join(parts)


class TrainingInterrupted(SystemExit):
    """Raised by :func:`train` when SIGINT or SIGTERM arrived: the running step was finished and
    a checkpoint written first. A ``SystemExit`` whose code is 128 + the signal number (130 for
    SIGINT, 143 for SIGTERM), so left uncaught it ends the process with that status and no
    traceback.

    Attributes:
        signum: the signal received. step: the step of the checkpoint written (``None`` when a
        second signal stopped the process before it was written). path: that checkpoint.
    """

    def __init__(self, signum: int, step: Optional[int] = None, path: Optional[Path] = None):
        super().__init__(128 + signum)
        self.signum, self.step, self.path = signum, step, path


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM only record the signal in
    :attr:`signum` (the training loop stops after the running step, see :func:`train`); a second
    signal raises :class:`TrainingInterrupted` at once. The previous handlers are restored on
    exit. A signal the process ignores stays ignored; outside the main thread (where Python
    cannot install handlers) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        print(f"{signal.Signals(signum).name} again: stopping now, without a new checkpoint", file=sys.stderr,
              flush=True)
        raise TrainingInterrupted(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # e.g. SIGINT of a `cmd &` background job
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: a handler not set from Python
        self._previous.clear()


def drop_metrics_after(path: str | Path, step: int) -> None:
    """Make ``metrics.jsonl`` at ``path`` end at ``step``: lines of later steps (logged by a run
    that was then interrupted before its next checkpoint, and about to be redone) and torn lines
    (a write cut by a kill) are removed, with an atomic rewrite. Nothing happens when the file is
    missing or already consistent."""
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text()
    keep = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and row["step"] > step:
            continue
        keep.append(line)
    new = "".join(line + "\n" for line in keep)
    if new != text:
        write_text_atomic(path, new)
