"""scripts/mutation_check.py stays applicable: every mutation's string is in its source file as often as the
script expects, and every test file it runs exists (the script itself is run by hand: ~1.5 min)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
mutation_check = importlib.util.module_from_spec(_spec)
sys.modules["mutation_check"] = mutation_check  # dataclasses look their module up
_spec.loader.exec_module(mutation_check)


@pytest.mark.parametrize("m", mutation_check.MUTATIONS, ids=lambda m: m.name)
def test_mutation_string_is_in_its_source_file(m):
    src = (ROOT / "src" / "asapnet" / m.file).read_text(encoding="utf-8")
    assert src.count(m.old) == m.count, f"{m.name}: {m.old!r} found {src.count(m.old)}x in {m.file}, expected {m.count}"
    assert m.old != m.new
    for t in m.tests:
        if t.startswith("tests/"):
            assert (ROOT / t).is_file(), t
