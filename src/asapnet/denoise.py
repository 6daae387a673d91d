"""``python -m asapnet.denoise {train,evaluate,denoise} ...``: an alias of ``asapnet train/evaluate
--task denoise`` and ``asapnet denoise`` (same options, same exit codes). The task itself lives in
:mod:`asapnet.tasks.denoise`."""
from __future__ import annotations

from typing import Optional, Sequence

from .cli import task_alias_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``asapnet`` with ``--task denoise`` inserted after ``train`` / ``evaluate``."""
    return task_alias_main("denoise", argv)


if __name__ == "__main__":
    raise SystemExit(main())
