"""``asapnet`` command line: argument parsing (:mod:`.parsers`, :mod:`.task_args`, :mod:`.argtypes`) into
the tasks' options dataclasses and dispatch of each command to the library (:mod:`.commands`). Nothing in
the library imports this package.

    asapnet train [--task translate|denoise|deblur|segment] ...
    asapnet translate LABEL.png... -o OUTDIR [--checkpoint PATH]
    asapnet evaluate --task translate|denoise|deblur ...
    asapnet bench | denoise | deblur | export | convert | demo | study ...
"""
from .commands import COMMANDS, build_parser, cmd_evaluate, cmd_train, main, task_alias_main
from ..options import parse_size

__all__ = ["COMMANDS", "build_parser", "cmd_evaluate", "cmd_train", "main", "task_alias_main", "parse_size"]
