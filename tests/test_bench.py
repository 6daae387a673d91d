"""``asapnet bench``: the benchmark function, its helpers and the CLI shell (no timing assertions)."""
import argparse
import json

import pytest
import torch

from asapnet import create_model
from asapnet.cli.parsers import add_bench_parser as add_parser
from asapnet.bench.inputs import asap_preset_for, random_label_input
from asapnet.bench.benchmark import benchmark, parse_sizes
from asapnet.bench.report import cmd_bench, format_table

TINY = {"asap": {"preset": "tiny"}, "pix2pixhd": dict(ngf=4, n_blocks=1),
        "spade": dict(ngf=2, spade_hidden=8), "pix2pix": dict(ngf=4, num_downs=5)}
KEYS = {"model", "size", "ms", "ms_min", "ms_max", "params", "gflops", "peak_mb", "ratio_to_asap"}


@pytest.fixture(scope="module")
def results():
    torch.set_num_threads(1)
    return benchmark(["asap", "pix2pixhd", "spade", "pix2pix"], [(32, 64), (64, 128)], repeats=2,
                     model_kwargs=TINY)


def test_one_result_per_model_and_size_with_documented_keys(results):
    assert [(r["model"], r["size"]) for r in results] == [
        (m, s) for s in ("32x64", "64x128") for m in ("asap", "pix2pixhd", "spade", "pix2pix")]
    for r in results:
        assert KEYS <= set(r)
        assert r["repeats"] == 2 and r["device"] == "cpu"
        assert 0 < r["ms_min"] <= r["ms"] <= r["ms_max"]
        assert r["peak_mb"] >= 0 and r["params"] > 0


def conv_flops(cin, cout, k, h_out, w_out):
    """2 FLOPs per multiply-add of a k x k convolution (bias and norms not counted)."""
    return 2 * cin * cout * k * k * h_out * w_out


def asap_tiny_flops(c_in, H, W):
    """FLOPs of the 'tiny' preset (S1 = 1, S2 = 4: S = 4; LR widths 8 -> 16, one block; HR MLP
    44 -> 8 -> 8 -> 3 with 8 encoding channels), written from the config by hand."""
    S, K = 4, 2  # K = log2 S frequencies -> 4 K = 8 encoding channels
    dims = [(c_in + 4 * K, 8), (8, 8), (8, 3)]
    P = sum(ci * co + co for ci, co in dims)  # MLP parameters per tile
    lr = (conv_flops(c_in, 8, 3, H, W)  # first conv, stride 1
          + conv_flops(8, 8, 3, H // 2, W // 2) + conv_flops(8, 16, 3, H // 4, W // 4)  # two stride-2 convs
          + conv_flops(16, 16, 3, H // 4, W // 4)  # lr_depth = 1 block
          + conv_flops(16, P, 1, H // S, W // S))  # 1x1 head to the MLP parameters
    hr = 2 * sum(ci * co for ci, co in dims) * H * W  # one MLP per pixel
    return lr, hr


def test_asap_flops_equal_an_analytic_count(results):
    """The reported GFLOPs are FlopCounterMode's; they must equal the count written from the
    config by hand (the HR stream: 2 * sum(c_in * c_out) * H * W)."""
    lr, hr = asap_tiny_flops(36, 32, 64)
    assert hr == 2 * (44 * 8 + 8 * 8 + 8 * 3) * 32 * 64 == 1_802_240
    assert lr + hr == 15_773_696
    by = {(r["model"], r["size"]): r for r in results}
    for h, w in ((32, 64), (64, 128)):
        r = by[("asap", f"{h}x{w}")]
        assert r["preset"] == "tiny" and r["ratio_to_asap"] == 1.0
        assert round(r["gflops"] * 1e9) == sum(asap_tiny_flops(36, h, w))
    # the HR stream alone, measured with torch.utils.flop_counter (fast and reference paths)
    from torch.utils.flop_counter import FlopCounterMode
    m = create_model("asap", preset="tiny", in_channels=36).eval()
    x = torch.rand(1, 36, 32, 64)
    params = torch.randn(1, m.hr.num_params, 8, 16)
    for fast in (True, False):
        m.hr.fast = fast
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            m.hr(m.hr_input(x), params)
        assert counter.get_total_flops() == hr


def test_pix2pixhd_flops_equal_an_analytic_count(results):
    # ngf 4, 4 downsamplings, 1 residual block, 36 -> 3 channels at 32 x 64
    H, W, ngf = 32, 64, 4
    f = conv_flops(36, ngf, 7, H, W)  # reflect-pad 3 + 7x7 conv
    for i in range(4):  # stride-2 convs: ngf 2^i -> ngf 2^(i+1) at H / 2^(i+1)
        f += conv_flops(ngf * 2 ** i, ngf * 2 ** (i + 1), 3, H >> (i + 1), W >> (i + 1))
    f += 2 * conv_flops(64, 64, 3, H >> 4, W >> 4)  # one residual block of two 3x3 convs
    for i in range(4):  # transposed convs, counted on their input grid: 64 -> 32 -> ... -> 4
        f += conv_flops(64 >> i, 32 >> i, 3, H >> (4 - i), W >> (4 - i))
    f += conv_flops(ngf, 3, 7, H, W)
    assert f == 34_848_768
    by = {(r["model"], r["size"]): r for r in results}
    assert round(by[("pix2pixhd", "32x64")]["gflops"] * 1e9) == f
    for r in results:  # the ratios are reported, not asserted: timing is not a test
        assert r["ratio_to_asap"] > 0


def test_gflops_positive_and_growing_with_resolution(results):
    by = {(r["model"], r["size"]): r for r in results}
    for m in ("asap", "pix2pixhd", "spade", "pix2pix"):
        small, big = by[(m, "32x64")]["gflops"], by[(m, "64x128")]["gflops"]
        assert 0 < small < big
        # conv nets: FLOPs proportional to the pixel count (pix2pixHD's pad-free layers exactly)
        if m == "pix2pixhd":
            assert big == pytest.approx(4 * small, rel=1e-6)
    tiny_hd = create_model("pix2pixhd", in_channels=36, **TINY["pix2pixhd"])
    assert by[("pix2pixhd", "32x64")]["params"] == sum(p.numel() for p in tiny_hd.parameters())


def test_table_lists_every_row(results):
    table = format_table(results)
    assert len(table.splitlines()) == 2 + len(results)
    assert "x ASAP" in table and "spade" in table


def test_without_asap_ratios_are_none():
    r = benchmark(["pix2pix"], [(32, 32)], repeats=1, model_kwargs=TINY)
    assert r[0]["ratio_to_asap"] is None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="repeats"):
        benchmark(["asap"], [(32, 32)], repeats=0)
    with pytest.raises(KeyError, match="unknown model"):
        benchmark(["no-such-model"], [(32, 32)], repeats=1)
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_sizes("256by512")


def test_parse_sizes_and_asap_preset_by_resolution():
    assert parse_sizes("256x512, 512x1024") == [(256, 512), (512, 1024)]
    assert asap_preset_for(256, 512) == "cityscapes-256x512"
    assert asap_preset_for(512, 1024) == "cityscapes-512x1024"
    assert asap_preset_for(1024, 2048) == "cityscapes-1024x2048"
    with pytest.raises(ValueError, match="no ASAP preset"):
        asap_preset_for(2048, 4096)


def test_random_label_input_is_one_hot_plus_edges():
    x = random_label_input(35, 40, 72, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 36, 40, 72)
    assert torch.equal(x[:, :35].sum(1), torch.ones(1, 40, 72))
    edges = x[:, 35]
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    assert edges.mean() < 0.25  # 16x16 cells: edges are thin


def _run_cli(argv, capsys):
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    assert cmd_bench(ap.parse_args(["bench", *argv])) == 0
    return capsys.readouterr().out


def test_cli_json_one_object_per_model_and_size(capsys):
    out = _run_cli(["--models", "asap", "--sizes", "32x64,64x64", "--repeats", "2", "--preset", "tiny",
                    "--threads", "1", "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["model"], r["size"]) for r in rows] == [("asap", "32x64"), ("asap", "64x64")]
    for r in rows:
        assert {"model", "size", "ms", "params", "gflops", "peak_mb"} <= set(r)
        assert r["preset"] == "tiny" and r["ratio_to_asap"] == 1.0 and r["threads"] == 1


def test_cli_unknown_model_is_a_value_error(capsys):
    with pytest.raises(ValueError, match="unknown model"):
        _run_cli(["--models", "asap,nope", "--sizes", "32x32"], capsys)


def test_cli_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    out = _run_cli(["--models", "asap", "--sizes", "32x32,32x64", "--repeats", "1", "--preset", "tiny",
                    "--plot", str(png)], capsys)
    assert "x ASAP" in out and "32x64" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_asap_stages_reports_consistent_breakdown():
    from asapnet.bench.benchmark import asap_stages
    r = asap_stages((64, 96), preset="tiny", repeats=1)
    assert r["preset"] == "tiny" and r["lr_ms"] > 0 and r["hr_ms"] > 0 and r["matmul_gflops"] > 0
    assert r["hr_gflop"] == pytest.approx(2 * ((36 + 8) * 8 + 8 * 8 + 8 * 3) * 64 * 96 / 1e9)  # 36 inputs + 8 PE channels (S=4)
    assert 0 < r["hr_efficiency"] == pytest.approx(r["hr_gflops"] / r["matmul_gflops"])


def test_variant_rows_report_time_and_error_against_fp32(capsys):
    # channels_last is exact up to fp32 reassociation; int8 and onnx carry a measured error
    out = _run_cli(["--models", "asap", "--sizes", "64x96", "--repeats", "1", "--preset", "tiny",
                    "--threads", "1", "--variants", "channels_last,int8,onnx", "--json"], capsys)
    rows = {r["model"]: r for r in map(json.loads, out.splitlines())}
    assert list(rows) == ["asap", "asap+channels_last", "asap+int8", "asap+onnx"]
    assert "max_abs_err" not in rows["asap"]
    assert rows["asap+channels_last"]["max_abs_err"] < 1e-5
    assert rows["asap+onnx"]["max_abs_err"] < 1e-4
    assert 0 < rows["asap+int8"]["max_abs_err"] < 0.05
    for name, r in rows.items():
        assert r["params"] == rows["asap"]["params"] and r["ms"] > 0
        assert r["ratio_to_asap"] == pytest.approx(r["ms"] / rows["asap"]["ms"])
    # --channels-last applies to every model; the output is the same up to fp32 rounding
    out = _run_cli(["--models", "asap,pix2pix", "--sizes", "64x96", "--repeats", "1", "--preset", "tiny",
                    "--threads", "1", "--channels-last", "--variants", "int8", "--json"], capsys)
    assert [json.loads(line)["model"] for line in out.splitlines()] == ["asap", "pix2pix", "asap+int8"]
    with pytest.raises(ValueError, match="unknown variant"):
        benchmark(["asap"], [(32, 32)], variants=["fp8"], model_kwargs=TINY)
    with pytest.raises(ValueError, match="include 'asap'"):
        benchmark(["pix2pix"], [(32, 32)], variants=["int8"], model_kwargs=TINY)


def test_winograd_variant_row_and_flag_for_every_model():
    torch.set_num_threads(1)
    wide = {"asap": {"preset": "tiny", "lr_max_width": 256, "lr_depth": 1}, "pix2pixhd": dict(ngf=16, n_blocks=1)}
    rows = {r["model"]: r for r in benchmark(["asap"], [(64, 96)], repeats=1, model_kwargs=wide,
                                             variants=["winograd"])}
    assert 0 < rows["asap+winograd"]["max_abs_err"] < 1e-5  # converted (not bit-identical), same image
    plain = benchmark(["asap", "pix2pixhd"], [(64, 64)], repeats=1, model_kwargs=wide)
    fast = benchmark(["asap", "pix2pixhd"], [(64, 64)], repeats=1, model_kwargs=wide, winograd=True)
    for p, f in zip(plain, fast):  # nominal params and FLOPs of the model as defined, not of the conversion
        assert (p["model"], p["params"], p["gflops"]) == (f["model"], f["params"], f["gflops"])
