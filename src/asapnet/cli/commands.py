"""``asapnet`` command line: a thin shell over the library.

    asapnet train [--task translate|denoise|deblur|segment] ...
    asapnet translate LABEL.png... -o OUTDIR [--checkpoint PATH]
    asapnet evaluate --task translate|denoise|deblur ...
    asapnet bench | denoise | deblur | export | convert | demo | study ...
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Callable, Optional, Sequence

# Nothing heavy at module level: the parsers (asapnet.cli.parsers) import no torch, and each command
# imports its task module when it runs, so that `asapnet --help` and argument errors come back at
# once.

logger = logging.getLogger(__name__)


def cmd_train(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet train`` on ``--task``: the parsed options become the task's options dataclass
    (:func:`asapnet.options.from_args`; options not given take the dataclass's defaults)."""
    from ..options import from_args

    if a.task == "denoise":
        from ..tasks.denoise.config import DenoiseTrainOptions
        from ..tasks.denoise.train import cmd_train_denoise
        return cmd_train_denoise(from_args(DenoiseTrainOptions, a))
    if a.task == "deblur":
        from ..tasks.deblur.config import DeblurTrainOptions
        from ..tasks.deblur.train import cmd_train_deblur
        return cmd_train_deblur(from_args(DeblurTrainOptions, a))
    if a.task == "segment":
        from ..tasks.segment.config import SegmentTrainOptions
        from ..tasks.segment.train import cmd_train_segment
        return cmd_train_segment(from_args(SegmentTrainOptions, a))
    from ..tasks.translate.config import TranslateTrainOptions
    from ..tasks.translate.train import cmd_train_translate
    return cmd_train_translate(from_args(TranslateTrainOptions, a))


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet evaluate`` on ``--task``: the parsed options become the task's evaluation
    options dataclass (:func:`asapnet.options.from_args`)."""
    from ..options import from_args

    if a.task == "deblur":
        if not a.checkpoint:
            raise ValueError("evaluate --task deblur needs --checkpoint")
        from ..tasks.deblur.config import DeblurEvaluateOptions
        from ..tasks.deblur.evaluate import cmd_evaluate_deblur
        return cmd_evaluate_deblur(from_args(DeblurEvaluateOptions, a))
    from ..tasks.translate.config import TranslateEvaluateOptions
    from ..tasks.translate.results import cmd_evaluate_translate
    if a.task == "translate":
        # takes [NAME=]PATH lists and checks --data itself
        return cmd_evaluate_translate(from_args(TranslateEvaluateOptions, a))
    if a.checkpoint and len(a.checkpoint) > 1:
        raise ValueError(f"evaluate --task {a.task} takes one --checkpoint")
    ckpt = a.checkpoint[0] if a.checkpoint else None
    if a.task == "denoise":
        if not ckpt or not a.data:
            raise ValueError("evaluate --task denoise needs --checkpoint and --data")
        from ..tasks.denoise.config import DenoiseEvaluateOptions
        from ..tasks.denoise.evaluate import cmd_evaluate_denoise
        one = argparse.Namespace(**{**vars(a), "checkpoint": ckpt})
        return cmd_evaluate_denoise(from_args(DenoiseEvaluateOptions, one))
    return cmd_evaluate_translate(from_args(TranslateEvaluateOptions, argparse.Namespace(
        **{**vars(a), "checkpoint": ckpt, "data": a.data[0] if a.data else None})))


#: command -> (module inside asapnet whose ``cmd_<command>`` runs it, its options dataclass in
#: ``<module's package>.config`` or None: the command takes the parsed arguments as they are)
COMMAND_MODULES = {"translate": ("tasks.translate.run", "TranslateRunOptions"),
                   "denoise": ("tasks.denoise.run", "DenoiseRunOptions"),
                   "deblur": ("tasks.deblur.run", "DeblurRunOptions"),
                   "export": ("tasks.translate.export", "TranslateExportOptions"), "bench": ("bench.report", None),
                   "demo": ("apps.demo", None), "study": ("apps.study", None), "convert": ("convert.reference", None)}


def command_function(command: str) -> "Callable[..., int]":
    """The function that runs ``asapnet <command>`` (imports its module)."""
    module = COMMAND_MODULES[command][0]
    return getattr(importlib.import_module(f"..{module}", __package__), f"cmd_{command}")


def _lazy_command(command: str) -> "Callable[[argparse.Namespace], int]":
    """``asapnet <command>`` handled by ``cmd_<command>`` of its module, imported when it runs; the parsed
    arguments become the command's options dataclass where it has one (:func:`asapnet.options.from_args`)."""
    def run(a: argparse.Namespace) -> int:
        from ..options import from_args

        module, options = COMMAND_MODULES[command]
        if options is not None:
            config = importlib.import_module(f"..{module.rpartition('.')[0]}.config", __package__)
            a = from_args(getattr(config, options), a)
        return command_function(command)(a)
    run.__name__ = f"cmd_{command}"
    return run


#: command -> function(parsed arguments) -> exit status; each imports its task module when called
COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, **{name: _lazy_command(name) for name in COMMAND_MODULES}}


def build_parser() -> argparse.ArgumentParser:
    """The ``asapnet`` argument parser (:func:`asapnet.cli.parsers.build_parser`); imports no task module."""
    from .parsers import build_parser as build

    return build(description=__doc__.splitlines()[0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``asapnet`` command; returns its exit status.

    One error path: a bad command line (argparse, including the ``type=`` checks of
    :mod:`asapnet.cli.argtypes`) and every user error raised by a command (:class:`DataError`,
    ``ValueError`` from config validation, ``FileNotFoundError``, ``PermissionError``,
    ``IsADirectoryError`` and other ``OSError`` such as a read-only or full output folder, missing
    pretrained weights) print exactly one line ``asapnet <command>: error: <message>`` on stderr
    and give exit status 2, without a traceback. Any other exception is a bug and keeps its
    traceback.

    Progress and info messages are log records of the ``asapnet`` loggers, shown on stderr while
    the command runs (:func:`asapnet.console.cli_logging`): INFO by default, DEBUG with ``-v``,
    WARNING with ``-q`` (which also turns the progress bars off); results stay on stdout.
    """
    import contextlib
    import io

    def one_line(text: str) -> str:
        return " ".join(line.strip() for line in str(text).splitlines() if line.strip())

    def message(e: BaseException) -> str:  # OSError naming a file: "FILE: reason", not "[Errno 13] ...: 'FILE'"
        if isinstance(e, OSError) and e.strerror and e.filename is not None:
            two = f" -> {os.fsdecode(e.filename2)}" if e.filename2 is not None else ""
            return one_line(f"{os.fsdecode(e.filename)}{two}: {e.strerror}")
        return one_line(str(e)) or type(e).__name__

    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \udcxx escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(argv)
    except SystemExit as e:
        text = captured.getvalue()
        if e.code == 2 and text.strip():  # argparse: usage + "prog: error: msg" -> the error line only
            print(one_line(text.strip().splitlines()[-1]), file=sys.stderr)
        else:
            sys.stderr.write(text)
        raise
    sys.stderr.write(captured.getvalue())
    from ..console import cli_logging
    from ..data.io import DataError
    from ..losses.perceptual import PretrainedWeightsUnavailable

    try:
        with cli_logging(getattr(args, "log_level", logging.INFO)):
            rc = COMMANDS[args.command](args)
            if args.command == "demo":
                # After a threaded server ran torch in handler threads, interpreter teardown can abort
                # in a C++ thread-pool destructor ("terminate called without an active exception");
                # everything is already closed, so leave without the teardown.
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(rc)
        return rc
    except (DataError, ValueError, PretrainedWeightsUnavailable, OSError) as e:
        print(f"asapnet {args.command}: error: {message(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:
        if not isinstance(e.code, str):  # exit statuses (e.g. 130 / 143 after a signal) pass through
            raise
        text = one_line(e.code)  # a command's refusal: the same one line and status 2
        prefix = f"asapnet {args.command}: "
        text = text[len(prefix):] if text.startswith(prefix) else text
        print(f"asapnet {args.command}: error: {text}", file=sys.stderr)
        return 2


def task_alias_main(task: str, argv: Optional[Sequence[str]] = None) -> int:
    """``python -m asapnet.<task> {train,evaluate,<command>} ...`` -> :func:`main` with
    ``--task <task>`` inserted after ``train`` / ``evaluate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "evaluate"):
        argv = [argv[0], "--task", task, *argv[1:]]
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
