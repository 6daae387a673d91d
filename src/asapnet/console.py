"""What the command line shows while it works: log messages and progress bars, both on stderr.

Every module logs through ``logging.getLogger(__name__)`` (children of the ``asapnet`` logger);
results (tables, JSON lines) are printed on stdout by the commands themselves. :func:`cli_logging`
is installed once per :func:`asapnet.cli.commands.main` call: INFO by default, DEBUG with ``-v``, WARNING
with ``-q``, each record as its bare message (``%(message)s``) on the *current* ``sys.stderr``,
flushed at once. Used as a library, asapnet installs no handler: configure ``logging`` as usual
(e.g. ``logging.basicConfig(level=logging.INFO)``) to see its messages.

:func:`progress` is ``tqdm`` on stderr: off with ``-q``, and off when stderr is not a terminal
(``disable=None``), so logs and pipes stay free of bar redraws. Log records written while a bar
is shown go through ``tqdm.write`` and do not tear the bar.

Nothing here imports torch (``asapnet --help`` must stay fast).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterable, Iterator, Optional

#: Root of every asapnet logger; the CLI's handler sits here.
LOGGER_NAME = "asapnet"

_quiet = False  # set by cli_logging(WARNING or higher): no progress bars either


class StderrHandler(logging.Handler):
    """``%(message)s`` to whatever ``sys.stderr`` is at the time of the record (pytest's capsys,
    a reconfigured stream), flushed after every record; through ``tqdm.write`` while a tqdm bar
    is open, so the bar is cleared and redrawn around the message."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            stream = sys.stderr
            tqdm_mod = sys.modules.get("tqdm")
            if tqdm_mod is not None and getattr(tqdm_mod.tqdm, "_instances", None):
                tqdm_mod.tqdm.write(msg, file=stream)
            else:
                stream.write(msg + "\n")
            stream.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler
            raise
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Show the ``asapnet`` loggers' records of ``level`` and above on stderr while the block
    runs (then restore the previous level and handlers). ``level`` > INFO also turns the
    progress bars off."""
    global _quiet
    logger = logging.getLogger(LOGGER_NAME)
    old_level, old_quiet = logger.level, _quiet
    handler = StderrHandler()
    for h in [h for h in logger.handlers if isinstance(h, StderrHandler)]:  # a main() inside a main()
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(level)
    _quiet = level > logging.INFO
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        _quiet = old_quiet


def quiet() -> bool:
    """True when the command line asked for no progress output (``-q``)."""
    return _quiet


def progress(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: Optional[str] = None,
             unit: str = "it", leave: bool = False, **kwargs: Any):
    """A tqdm progress bar on stderr (``tqdm(iterable, total=..., desc=...)``): disabled with
    ``-q`` and whenever stderr is not a terminal. Use as an iterable wrapper or, without
    ``iterable``, as a context manager with ``update(n)``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave,
                disable=True if _quiet else None, **kwargs)


def skipped_status(given: int, done: int, logger: logging.Logger) -> int:
    """Exit status of a command that turned ``done`` of ``given`` input files into outputs
    (translate, denoise, deblur): 0, or 1 when some were skipped (``--on-error skip``; each was
    reported as a WARNING when it was skipped, the count goes to ``logger`` as INFO)."""
    if done < given:
        logger.info(f"skipped {given - done} of {given} input(s)")
        return 1
    return 0
