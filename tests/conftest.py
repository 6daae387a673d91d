import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "cityscapes"


def _find_data():
    for cand in (os.environ.get("ASAPNET_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if cand and (Path(cand) / "cityscapes_samples").is_dir():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _find_data()
    if root is None:
        pytest.skip("real data not found: set ASAPNET_DATA to the shared data folder")
    return root


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(1)
    yield
