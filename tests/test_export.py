"""ONNX export: dynamic sizes, agreement with PyTorch under onnxruntime, CLI, errors."""
import argparse
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from asapnet.checkpoint import save_generator
from asapnet.config import asap_preset
from asapnet.cli.parsers import add_export_parser
from asapnet.options import from_args
from asapnet.tasks.translate.config import TranslateExportOptions
from asapnet.tasks.translate.export import cmd_export
from asapnet.inference.onnx import (antialiased_downsample, default_verify_sizes, export_onnx,
                            onnx_metadata, onnxruntime_runner, verify_onnx)
from asapnet.models import create_model
from asapnet.inference.optimize import prepare_for_inference

TOL = 1e-4  # outputs lie in [-1, 1]; float32 reordering of the same arithmetic gives ~1e-6


def _model(s1=1, seed=0):
    """Random ASAP generator for 35 classes + instance edges; s1=2 exercises the downsampling."""
    torch.manual_seed(seed)
    cfg = asap_preset("tiny", s1=s1, in_channels=36)
    return create_model("asap", cfg=cfg).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A generator checkpoint like the ones `asapnet train` writes (S1=2, S=8)."""
    d = tmp_path_factory.mktemp("ckpt")
    m = _model(s1=2)
    path = d / "generator.safetensors"
    save_generator(path, m, "asap", m.cfg.to_dict(), {"step": 3, "num_classes": 35, "use_instance": True})
    return path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    return export_onnx(ckpt, tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_export_matches_pytorch_at_sizes_other_than_the_tracing_size(ckpt, exported):
    onnx.checker.check_model(onnx.load(str(exported)))
    sizes = [(37, 53), (64, 40), (9, 200), (200, 9), (1, 30)]  # tracing used 70x130; S = 8
    diffs = verify_onnx(ckpt, exported, sizes)
    assert set(diffs) == set(sizes)
    assert max(diffs.values()) < TOL, diffs


def test_graph_has_symbolic_height_and_width(exported):
    dims = onnx.load(str(exported)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 36, "height", "width"]


def test_metadata_carries_checkpoint_config(exported):
    meta = onnx_metadata(exported)
    assert meta["num_classes"] == 35 and meta["use_instance"] is True and meta["S"] == 8
    assert meta["config"]["s1"] == 2 and meta["in_channels"] == 36 and meta["step"] == 3


def test_runner_accepts_torch_and_numpy_and_batches(exported):
    run = onnxruntime_runner(exported, threads=1)
    x = torch.zeros(2, 36, 20, 30)
    x[:, 5] = 1
    y = run(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3, 20, 30)
    assert -1 <= y.min() and y.max() <= 1
    y_np = run(x.numpy())
    assert isinstance(y_np, np.ndarray) and np.array_equal(y_np, y.numpy())


def test_runner_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        onnxruntime_runner(tmp_path / "nope.onnx")


def test_export_from_module_without_s1_and_model_untouched(tmp_path):
    m = _model(s1=1, seed=1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    path = export_onnx(m, tmp_path / "sub" / "m.onnx")
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert m.hr.fast is True  # the export used a copy
    assert max(verify_onnx(m, path, [(13, 27), (6, 41)]).values()) < TOL


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_antialiased_downsample_equals_torch_interpolate(factor):
    x = torch.rand(2, 5, 4 * factor, 6 * factor, generator=torch.Generator().manual_seed(factor))
    ref = F.interpolate(x, scale_factor=1 / factor, mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(antialiased_downsample(x, factor), ref, atol=1e-6)


def test_default_verify_sizes_avoid_multiples_of_s():
    for S in (4, 16, 64):
        sizes = default_verify_sizes(S)
        assert len(set(sizes)) == 2
        assert all(h % S and w % S and h * w > S * S for h, w in sizes)


def test_errors(tmp_path, exported, ckpt):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_model(), tmp_path / "m.onnx", opset=13)
    with pytest.raises(ValueError, match="ASAP-Net generators only"):
        export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError):
        export_onnx(tmp_path / "missing.safetensors", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="single 8x8 tile"):
        verify_onnx(ckpt, exported, [(8, 8)])


def test_cli_export_prints_diffs(ckpt, tmp_path, capsys, caplog):
    ap = argparse.ArgumentParser()
    add_export_parser(ap.add_subparsers(dest="command"))
    out = tmp_path / "cli.onnx"
    args = ap.parse_args(["export", "--checkpoint", str(ckpt), "-o", str(out), "--verify-sizes", "21x35,50x17"])
    caplog.set_level("INFO", logger="asapnet")
    assert cmd_export(from_args(TranslateExportOptions, args)) == 0
    assert f"wrote {out}" in caplog.text  # a log message; the verification's numbers are printed
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if "max abs diff" in ln]
    assert [ln.split(" at ")[1].split(":")[0] for ln in lines] == ["21x35", "50x17"]
    assert all(float(ln.rsplit(" ", 1)[1]) < TOL for ln in lines)
    assert json.loads(onnx.load(str(out)).metadata_props[0].value)["num_classes"] == 35


def test_export_of_a_model_prepared_for_inference(tmp_path):
    m = prepare_for_inference(_model(s1=2, seed=2))
    path = export_onnx(m, tmp_path / "prepared.onnx")
    assert max(verify_onnx(m, path, [(19, 45)]).values()) < TOL


@pytest.mark.parametrize("s1_filter", ["antialias", "tent"])
def test_exportable_graph_uses_the_models_s1_filter(s1_filter):
    from asapnet import create_model
    from asapnet.inference.onnx import ExportableASAP

    torch.manual_seed(0)
    g = create_model("asap", preset="tiny", in_channels=3, s1=2, s1_filter=s1_filter).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert (g(x) - ExportableASAP(g)(x)).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["bilinear", "blend"])
def test_export_of_blended_tiles_matches_pytorch(tmp_path, mode):
    torch.manual_seed(4)
    m = create_model("asap", cfg=asap_preset("tiny", in_channels=36, param_upsampling=mode)).eval()
    path = export_onnx(m, tmp_path / "m.onnx")
    assert max(verify_onnx(m, path, [(13, 27), (40, 24)]).values()) < TOL
