"""``asapnet study``: a two-alternative forced-choice (2AFC) realism study in the browser.

    asapnet study out/asap out/spade --names ASAP,SPADE --out study.csv [--port 8000] [--seed 0]

The paper's human study (§4.1, Fig. 7, protocol of Zhang et al. 2016): a participant sees the
outputs of two methods for the same input side by side, in random left/right order, and picks the
one that looks more real. Images of the two folders are matched by file name (stem); every
matched name is one trial, in a random order.

Outputs (rewritten after every answer, so an interrupted study keeps its answers):

* ``OUT`` (the tally): method_a, method_b, trials, a_preferred, b_preferred, a_rate and the 95%
  Clopper-Pearson (exact binomial) interval of a_rate, and the two-sided binomial-test p-value
  against 0.5 (both exact, computed from binomial coefficients);
* ``OUT`` with ``_trials`` before the suffix: one row per answer (trial, name, left, right,
  chosen, milliseconds from display to click).

The server (stdlib ``http.server``) serves one participant at a time on localhost; run one
study per participant and add the tallies. Image URLs are opaque (``/img/<trial>/<left|right>``)
so the page does not reveal which method is which.

Answers are validated before anything changes (trial a known index, side ``left``/``right``, ms
absent or a finite number of milliseconds in [0, :data:`MAX_MS`]); a bad one is a 400 and later
answers are saved as before. CSV cells that a spreadsheet would read as a formula (starting with
``= + - @``, tab or carriage return: method names, file names) get a leading apostrophe. ``--out``
is checked writable before the server starts. The API takes JSON only as ``Content-Type:
application/json`` from the page's own origin (403 otherwise); timeouts, the connection cap and
JSON errors: :mod:`asapnet.apps.httpguard`.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import numbers
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.io import IMAGE_EXTENSIONS, DataError, list_images
from .httpguard import (DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, GuardedHandler, GuardedHTTPServer, Reject,
                        exposure_warning)
from .study_stats import binomial_ci, binomial_p_value

logger = logging.getLogger(__name__)

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp",
                 ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff"}

#: Longest accepted time from display to click, in milliseconds (one day).
MAX_MS = 24 * 3600 * 1000.0
#: Largest accepted answer request body, in bytes.
MAX_ANSWER_BYTES = 4096
#: First characters that make a spreadsheet read a CSV cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class SaveError(OSError):
    """The answer could not be written to the CSVs (it was not recorded)."""


def validate_answer(index, side, ms=None, n_trials: Optional[int] = None) -> Tuple[int, str, Optional[float]]:
    """Check one answer's types and ranges; returns (index, side, ms as float or None).

    Raises:
        ValueError: index not an integer (in [0, n_trials) when given), side not 'left'/'right',
            ms neither None nor a finite number in [0, MAX_MS].
    """
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"trial must be an integer, got {index!r}")
    if n_trials is not None and not 0 <= index < n_trials:
        raise ValueError(f"no trial {index}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if ms is not None:
        if isinstance(ms, bool) or not isinstance(ms, numbers.Real) or not math.isfinite(ms) or not 0 <= ms <= MAX_MS:
            raise ValueError(f"ms must be a finite number of milliseconds in [0, {MAX_MS:.0f}], got {ms!r}"[:200])
        ms = float(ms)
    return int(index), side, ms


def csv_cell(value):
    """A CSV cell safe to open in a spreadsheet: text starting with ``= + - @``, tab or carriage
    return gets a leading apostrophe (so it is not run as a formula); other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def check_writable(out_csv: str | Path) -> None:
    """Check that the tally CSV and its ``_trials`` CSV can be written (creating the folder).

    Raises:
        DataError: naming the path and the reason.
    """
    out = Path(out_csv)
    for path in (out, trials_csv_path(out)):
        if path.is_dir():
            raise DataError(f"{path}: is a directory, cannot write the study CSV there")
    folder = next((p for p in out.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise DataError(f"{out}: cannot write the study CSV: {folder} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(f".{out.name}.tmp")
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DataError(f"{out}: cannot write the study CSV: {e.strerror or e}") from None


def match_folders(folder_a: str | Path, folder_b: str | Path) -> List[Tuple[str, Path, Path]]:
    """[(stem, image of A, image of B)] for every stem present in both folders, sorted by stem.

    Raises:
        DataError: a folder is missing / has no images, or no file name is shared.
    """
    a = {f.stem: f for f in list_images(folder_a)}
    b = {f.stem: f for f in list_images(folder_b)}
    common = sorted(set(a) & set(b))
    if not common:
        raise DataError(f"{folder_a} and {folder_b} share no image file name (matched by stem, extensions "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    return [(n, a[n], b[n]) for n in common]


@dataclass
class Trial:
    """One 2AFC trial: ``a_left`` says whether method A is shown on the left."""

    index: int
    name: str
    a_path: Path
    b_path: Path
    a_left: bool
    chosen: Optional[str] = None  # "a" or "b"
    ms: Optional[float] = None


@dataclass
class StudyConfig:
    """Options of a study: the two folders, display names, output CSV, RNG seed, trial cap."""

    folder_a: Path
    folder_b: Path
    out_csv: Path
    name_a: str = "A"
    name_b: str = "B"
    seed: Optional[int] = None
    max_trials: Optional[int] = None


@dataclass
class Study:
    """The state of a running study (thread-safe through ``lock``)."""

    cfg: StudyConfig
    trials: List[Trial] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done_event: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, cfg: StudyConfig) -> "Study":
        """Match the folders, shuffle the trials and draw each trial's left/right order."""
        rng = random.Random(cfg.seed)
        matched = match_folders(cfg.folder_a, cfg.folder_b)
        rng.shuffle(matched)
        if cfg.max_trials:
            matched = matched[: cfg.max_trials]
        trials = [Trial(i, n, a, b, rng.random() < 0.5) for i, (n, a, b) in enumerate(matched)]
        return cls(cfg, trials)

    @property
    def answered(self) -> int:
        return sum(t.chosen is not None for t in self.trials)

    def next_trial(self) -> Optional[Trial]:
        return next((t for t in self.trials if t.chosen is None), None)

    def answer(self, index: int, side: str, ms: Optional[float] = None) -> None:
        """Record that the image on ``side`` ("left"/"right") of trial ``index`` looked more real.

        Everything is checked (:func:`validate_answer`) before the state changes; if the CSVs
        cannot be written the answer is taken back, so the trial can be answered again.

        Raises:
            ValueError: bad types or ranges, unknown or already answered trial.
            SaveError: the CSVs could not be written (the answer is not recorded).
        """
        index, side, ms = validate_answer(index, side, ms, len(self.trials))
        with self.lock:
            t = self.trials[index]
            if t.chosen is not None:
                raise ValueError(f"trial {index} is already answered")
            t.chosen = "a" if (side == "left") == t.a_left else "b"
            t.ms = ms
            try:
                self.write_csv()
            except Exception as e:
                t.chosen, t.ms = None, None
                raise SaveError(f"could not save the answer to {self.cfg.out_csv}: {e}") from None
            if self.next_trial() is None:
                self.done_event.set()

    def tally(self) -> Dict[str, object]:
        """Counts, preference rate of A with its 95% Clopper-Pearson interval, and the p-value."""
        n = self.answered
        k = sum(t.chosen == "a" for t in self.trials)
        lo, hi = binomial_ci(k, n)
        return {"method_a": self.cfg.name_a, "method_b": self.cfg.name_b, "trials": n, "a_preferred": k,
                "b_preferred": n - k, "a_rate": k / n if n else math.nan, "ci95_low": lo, "ci95_high": hi,
                "ci_method": "clopper-pearson", "p_value": binomial_p_value(k, n), "planned_trials": len(self.trials)}

    def write_csv(self) -> None:
        """Atomically (re)write the tally CSV and the per-trial CSV."""
        out = Path(self.cfg.out_csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        tally = self.tally()
        _write_atomic(out, _csv_text(list(tally), [tally]))
        names = {"a": self.cfg.name_a, "b": self.cfg.name_b}
        rows = [{"trial": t.index, "name": t.name,
                 "left": names["a" if t.a_left else "b"], "right": names["b" if t.a_left else "a"],
                 "chosen": names[t.chosen], "ms": "" if t.ms is None else round(t.ms)}
                for t in self.trials if t.chosen is not None]
        _write_atomic(trials_csv_path(out), _csv_text(["trial", "name", "left", "right", "chosen", "ms"], rows))


def trials_csv_path(out_csv: str | Path) -> Path:
    """``study.csv`` -> ``study_trials.csv``."""
    out = Path(out_csv)
    return out.with_name(out.stem + "_trials" + (out.suffix or ".csv"))


def _csv_text(fields: Sequence[str], rows: List[Dict[str, object]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _page() -> bytes:
    return (resources.files("asapnet") / "static" / "study.html").read_bytes()


def make_handler(study: Study, timeout: Optional[float] = DEFAULT_TIMEOUT):
    """HTTP handler class serving the page, the images and the JSON API of ``study``
    (``timeout``: seconds a socket read may wait before a stalled client is dropped)."""

    class Handler(GuardedHandler):
        server_version = "asapnet-study"
        max_body = MAX_ANSWER_BYTES

        def _state(self) -> Dict[str, object]:
            t = study.next_trial()
            tally = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in study.tally().items()}
            if t is None:
                return {"done": True, "total": len(study.trials), "tally": tally, "csv": str(study.cfg.out_csv)}
            return {"done": False, "trial": t.index, "position": study.answered + 1, "total": len(study.trials),
                    "left": f"/img/{t.index}/left", "right": f"/img/{t.index}/right"}

        def get(self):
            path = self.path.split("?")[0]
            if path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, _page(), "text/html; charset=utf-8", {"X-Frame-Options": "DENY"})
            if path == "/api/state":
                return self._json(HTTPStatus.OK, self._state())
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "img" and parts[1].isdigit() and parts[2] in ("left", "right"):
                i = int(parts[1])
                if i < len(study.trials):
                    t = study.trials[i]
                    f = t.a_path if (parts[2] == "left") == t.a_left else t.b_path
                    try:
                        data = f.read_bytes()
                    except OSError as e:
                        raise Reject(HTTPStatus.NOT_FOUND, f"image of trial {i} is not readable: {e.strerror}") \
                            from None
                    ctype = CONTENT_TYPES.get(f.suffix.lower(), "application/octet-stream")
                    return self._send(HTTPStatus.OK, data, ctype)
            raise Reject(HTTPStatus.NOT_FOUND, "not found")

        def post(self):
            if self.path != "/api/answer":
                raise Reject(HTTPStatus.NOT_FOUND, "not found")
            body = self.read_json()
            if not isinstance(body, dict) or "trial" not in body or "side" not in body:
                raise Reject(HTTPStatus.BAD_REQUEST, "expected {'trial': index, 'side': 'left'|'right', 'ms': number}")
            try:
                study.answer(body["trial"], body["side"], body.get("ms"))
            except SaveError as e:
                raise Reject(HTTPStatus.INTERNAL_SERVER_ERROR, str(e)) from None
            except ValueError as e:
                raise Reject(HTTPStatus.BAD_REQUEST, str(e)) from None
            self._json(HTTPStatus.OK, self._state())

    Handler.timeout = timeout
    return Handler


def serve(study: Study, host: str = "127.0.0.1", port: int = 0, timeout: Optional[float] = DEFAULT_TIMEOUT,
          max_connections: int = DEFAULT_MAX_CONNECTIONS) -> GuardedHTTPServer:
    """Start the study server in a daemon thread; ``server.server_address`` has the bound port
    (``port=0`` picks a free one). Stop it with ``server.shutdown()``. ``timeout``: seconds a
    client may stall; ``max_connections``: connection threads at most (more get 503)."""
    server = GuardedHTTPServer((host, port), make_handler(study, timeout), max_connections=max_connections)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------


def cmd_study(a: argparse.Namespace) -> int:
    """Serve the study until every trial is answered (or Ctrl-C); print the tally."""
    names = a.names.split(",") if a.names else [Path(a.folder_a).name, Path(a.folder_b).name]
    if len(names) != 2:
        raise ValueError(f"--names needs two comma-separated names, got {a.names!r}")
    cfg = StudyConfig(Path(a.folder_a), Path(a.folder_b), Path(a.out), names[0], names[1], a.seed, a.max_trials)
    try:
        check_writable(cfg.out_csv)
    except DataError as e:
        print(f"asapnet study: error: --out {e}", file=sys.stderr)
        return 2
    study = Study.create(cfg)
    server = serve(study, a.host, a.port, timeout=getattr(a, "timeout", DEFAULT_TIMEOUT))
    host, port = server.server_address[:2]
    warning = exposure_warning("asapnet study", host, port)
    if warning:
        logger.warning(warning)
    # the command's result, on stdout (the address to open)
    print(f"2AFC study of {len(study.trials)} pairs ({names[0]} vs {names[1]}): open http://{host}:{port}/ "
          f"(Ctrl-C to stop; answers are saved to {cfg.out_csv} as they come)")
    try:
        while not study.done_event.wait(0.5) or a.keep_serving:
            pass
    except KeyboardInterrupt:
        logger.warning("interrupted")
    finally:
        server.shutdown()
    t = study.tally()
    print(f"{t['method_a']} preferred in {t['a_preferred']}/{t['trials']} trials"
          + (f" ({t['a_rate']:.1%}, 95% CI {t['ci95_low']:.1%}-{t['ci95_high']:.1%}, p = {t['p_value']:.3g})"
             if t["trials"] else "") + f"; wrote {cfg.out_csv}")
    return 0
