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


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Tiny checkpoints written with the library, once per test session: ``tiny`` (ASAP-Net
    translator, 35 classes, label map only), ``tiny_inst`` (with an instance-edge channel),
    ``denoise`` (gray) and ``deblur`` (RGB) ASAP-Net restorers. Read-only for the tests."""
    import torch

    from asapnet.checkpoint import save_generator
    from asapnet.config import asap_preset
    from asapnet.models import create_model

    d = tmp_path_factory.mktemp("tiny_checkpoints")
    torch.manual_seed(0)
    out = {}
    for name, cfg, meta in (
            ("tiny", asap_preset("tiny", in_channels=35), {"num_classes": 35, "use_instance": False}),
            ("tiny_inst", asap_preset("tiny", in_channels=36, lr_only_channels=1), {"num_classes": 35, "use_instance": True}),
            ("denoise", asap_preset("tiny", in_channels=1, out_channels=1), {"task": "denoise"}),
            ("deblur", asap_preset("tiny", in_channels=3, out_channels=3), {"task": "deblur"})):
        save_generator(d / f"{name}.safetensors", create_model("asap", cfg=cfg), "asap", cfg.to_dict(), meta)
        out[name] = d / f"{name}.safetensors"
    return out
