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
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .data.io import IMAGE_EXTENSIONS, DataError, list_images

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp",
                 ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff"}


def binomial_ci(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Clopper-Pearson (exact) confidence interval of a proportion k/n, as fractions in [0, 1].

    The ends solve P(X >= k | p) = (1 - confidence) / 2 and P(X <= k | p) = (1 - confidence) / 2
    for X ~ Binomial(n, p), by bisection on the binomial tail summed in log space (the same values
    as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` to ~1e-12). Returns
    (nan, nan) when n == 0.

    Raises:
        ValueError: k outside [0, n], or confidence outside (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1 - confidence
    log_comb = [math.log(math.comb(n, i)) for i in range(n + 1)]
    # lower end: P(X >= k | p) = alpha / 2, upper end: P(X <= k | p) = alpha / 2
    low = 0.0 if k == 0 else _solve_increasing(lambda p: _binomial_log_sum(log_comb, range(k, n + 1), p),
                                               math.log(alpha / 2))
    high = 1.0 if k == n else 1.0 - _solve_increasing(
        lambda q: _binomial_log_sum(log_comb, range(n - k, n + 1), q), math.log(alpha / 2))
    return low, high


def _binomial_log_sum(log_comb: List[float], ks: range, p: float) -> float:
    """log of sum_{i in ks} C(n, i) p^i (1 - p)^(n - i), with n = len(log_comb) - 1 and 0 < p < 1."""
    n = len(log_comb) - 1
    lp, lq = math.log(p), math.log1p(-p)
    terms = [log_comb[i] + i * lp + (n - i) * lq for i in ks]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def _solve_increasing(f, target: float) -> float:
    """The p in (0, 1) where the increasing function f reaches target, by bisection to float precision."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid <= lo or mid >= hi:
            break
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def binomial_p_value(k: int, n: int) -> float:
    """Two-sided exact binomial-test p-value of k successes in n trials against p = 0.5.

    With p = 0.5 the distribution is symmetric, so the outcomes at most as likely as k are the two
    tails beyond min(k, n - k) and max(k, n - k): p = 2 P(X <= min(k, n - k)), capped at 1
    (computed exactly in integers; the same value as ``scipy.stats.binomtest(k, n, 0.5).pvalue``).
    """
    if n == 0:
        return math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    m = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(m + 1))
    return min(1.0, 2 * tail / 2 ** n)


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

        Raises:
            ValueError: bad side, unknown or already answered trial.
        """
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        with self.lock:
            if not 0 <= index < len(self.trials):
                raise ValueError(f"no trial {index}")
            t = self.trials[index]
            if t.chosen is not None:
                raise ValueError(f"trial {index} is already answered")
            t.chosen = "a" if (side == "left") == t.a_left else "b"
            t.ms = ms
            self.write_csv()
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
    w.writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _page() -> bytes:
    return (resources.files("asapnet") / "static" / "study.html").read_bytes()


def make_handler(study: Study):
    """HTTP handler class serving the page, the images and the JSON API of ``study``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet
            pass

        def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the page was closed mid-transfer
                pass

        def _json(self, obj, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(json.dumps(obj, allow_nan=False, default=str).encode(), "application/json", status)

        def _state(self) -> Dict[str, object]:
            t = study.next_trial()
            tally = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in study.tally().items()}
            if t is None:
                return {"done": True, "total": len(study.trials), "tally": tally, "csv": str(study.cfg.out_csv)}
            return {"done": False, "trial": t.index, "position": study.answered + 1, "total": len(study.trials),
                    "left": f"/img/{t.index}/left", "right": f"/img/{t.index}/right"}

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path in ("/", "/index.html"):
                return self._send(_page(), "text/html; charset=utf-8")
            if path == "/api/state":
                return self._json(self._state())
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "img" and parts[1].isdigit() and parts[2] in ("left", "right"):
                i = int(parts[1])
                if i < len(study.trials):
                    t = study.trials[i]
                    f = t.a_path if (parts[2] == "left") == t.a_left else t.b_path
                    return self._send(f.read_bytes(), CONTENT_TYPES.get(f.suffix.lower(), "application/octet-stream"))
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

        def do_POST(self):  # noqa: N802
            if self.path != "/api/answer":
                return self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)
            try:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                study.answer(int(body["trial"]), str(body["side"]), body.get("ms"))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
                return self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
            self._json(self._state())

    return Handler


def serve(study: Study, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start the study server in a daemon thread; ``server.server_address`` has the bound port
    (``port=0`` picks a free one). Stop it with ``server.shutdown()``."""
    server = ThreadingHTTPServer((host, port), make_handler(study))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------


def add_study_parser(sub) -> argparse.ArgumentParser:
    """Add the ``study`` subcommand to an ``add_subparsers()`` object."""
    p = sub.add_parser("study", help="2AFC realism study in the browser (paper §4.1, Fig. 7)")
    p.add_argument("folder_a", help="images of method A")
    p.add_argument("folder_b", help="images of method B (matched to A by file name)")
    p.add_argument("--names", default=None, help="display names 'A,B' for the CSV (default: folder names)")
    p.add_argument("--out", default="study.csv", help="tally CSV (per-answer rows go to *_trials.csv)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=None, help="seed of the trial order and left/right draws")
    p.add_argument("--max-trials", type=int, default=None)
    p.add_argument("--keep-serving", action="store_true", help="do not exit when every trial is answered")
    return p


def cmd_study(a: argparse.Namespace) -> int:
    """Serve the study until every trial is answered (or Ctrl-C); print the tally."""
    names = a.names.split(",") if a.names else [Path(a.folder_a).name, Path(a.folder_b).name]
    if len(names) != 2:
        raise ValueError(f"--names needs two comma-separated names, got {a.names!r}")
    cfg = StudyConfig(Path(a.folder_a), Path(a.folder_b), Path(a.out), names[0], names[1], a.seed, a.max_trials)
    study = Study.create(cfg)
    server = serve(study, a.host, a.port)
    host, port = server.server_address[:2]
    print(f"2AFC study of {len(study.trials)} pairs ({names[0]} vs {names[1]}): open http://{host}:{port}/ "
          f"(Ctrl-C to stop; answers are saved to {cfg.out_csv} as they come)")
    try:
        while not study.done_event.wait(0.5) or a.keep_serving:
            pass
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        server.shutdown()
    t = study.tally()
    print(f"{t['method_a']} preferred in {t['a_preferred']}/{t['trials']} trials"
          + (f" ({t['a_rate']:.1%}, 95% CI {t['ci95_low']:.1%}-{t['ci95_high']:.1%}, p = {t['p_value']:.3g})"
             if t["trials"] else "") + f"; wrote {cfg.out_csv}")
    return 0
