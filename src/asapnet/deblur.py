"""``python -m asapnet.deblur {train,evaluate,deblur} ...``: an alias of ``asapnet train/evaluate
--task deblur`` and ``asapnet deblur`` (same options, same exit codes). The task itself lives in
:mod:`asapnet.tasks.deblur`."""
from __future__ import annotations

from typing import Optional, Sequence

from .cli import task_alias_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``asapnet`` with ``--task deblur`` inserted after ``train`` / ``evaluate``."""
    return task_alias_main("deblur", argv)


if __name__ == "__main__":
    raise SystemExit(main())
