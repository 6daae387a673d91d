"""Segmentation scores, FID (with an injected extractor), the segmenter and ``evaluate_translation``."""
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from asapnet.metrics.fid import FIDUnavailable, compute_fid, fid_metric, to_uint8
from asapnet.metrics.segmentation import (CITYSCAPES_TRAIN_CLASSES, confusion_matrix, segmentation_scores,
                                          to_train_ids)


# --------------------------------------------------------------------------- segmentation scores
def test_miou_and_pixel_accuracy_on_hand_made_maps():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 0, 1, 1]])
    cm = confusion_matrix(pred, target, 2)
    assert cm.tolist() == [[3, 1], [0, 4]]  # rows = target, cols = prediction
    s = segmentation_scores(pred, target, 2)
    # class 0: TP 3, FP 0, FN 1 -> 3/4; class 1: TP 4, FP 1, FN 0 -> 4/5
    assert s.per_class_iou == pytest.approx([0.75, 0.8])
    assert s.miou == pytest.approx(0.775)
    assert s.pixel_accuracy == pytest.approx(7 / 8)
    assert s.pixels == 8


def test_ignored_pixels_absent_and_false_positive_classes():
    target = torch.tensor([[0, 0, 255, 255]])
    pred = torch.tensor([[0, 2, 1, 1]])  # the ignored pixels' predictions must not count
    s = segmentation_scores(pred, target, 3)
    assert s.pixels == 2
    assert s.pixel_accuracy == pytest.approx(0.5)
    assert s.per_class_iou[0] == pytest.approx(0.5)
    assert math.isnan(s.per_class_iou[1])  # never in target nor (counted) prediction
    assert s.per_class_iou[2] == 0.0  # predicted but absent: counts as 0 in the mean
    assert s.miou == pytest.approx(0.25)
    assert s.to_dict()["per_class_iou"]["1"] is None


def test_perfect_prediction_and_errors():
    t = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    s = segmentation_scores(t, t, 5)
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(t, t[:1], 5)
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(t + 1, t, 5)
    with pytest.raises(ValueError, match="empty"):
        segmentation_scores(t, torch.full_like(t, 255), 5)


def test_cityscapes_label_to_train_ids():
    ids = torch.arange(34)
    tr = to_train_ids(ids)
    assert tr[7] == 0 and tr[8] == 1 and tr[11] == 2 and tr[23] == 10 and tr[26] == 13 and tr[33] == 18
    assert set(tr.tolist()) == set(range(19)) | {255}
    assert all(tr[i] == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30))
    assert len(CITYSCAPES_TRAIN_CLASSES) == 19 and CITYSCAPES_TRAIN_CLASSES[13] == "car"
    with pytest.raises(ValueError):
        to_train_ids(torch.tensor([-1]))


# --------------------------------------------------------------------------- FID
class TinyFeatures(nn.Module):
    """Deterministic random conv features: uint8 (N, 3, H, W) -> (N, 16)."""

    num_features = 16

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w1", torch.randn(8, 3, 3, 3, generator=g) / 3)
        self.register_buffer("w2", torch.randn(16, 8, 3, 3, generator=g) / 8)

    def forward(self, x):
        x = F.interpolate(x.float() / 127.5 - 1, size=(32, 32), mode="bilinear", align_corners=False)
        x = F.relu(F.conv2d(x, self.w1, stride=2))
        return F.relu(F.conv2d(x, self.w2, stride=2)).mean(dim=(2, 3))


def _images(seed, n=24):
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(48, 48), mode="bilinear")
    return base * 2 - 1


def test_fid_identical_sets_zero_and_different_sets_positive():
    real = _images(0)
    same = compute_fid([real[:12], real[12:]], [real], feature=TinyFeatures())
    assert abs(same) < 1e-4
    other = compute_fid([real], [_images(1) * 0.5 + 0.3], feature=TinyFeatures())
    assert other > 100 * max(abs(same), 1e-6) and other > 1e-3


def test_fid_needs_two_images_and_reports_missing_weights(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="at least 2"):
        compute_fid([_images(0, 1)], [_images(1, 5)], feature=TinyFeatures())
    with pytest.raises(FIDUnavailable, match="not found"):
        fid_metric(weights_path=tmp_path / "missing.pth")

    import urllib.error
    import torchmetrics.image.fid as tfid

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tfid, "FrechetInceptionDistance", offline)
    with pytest.raises(FIDUnavailable, match="InceptionV3 weights"):
        fid_metric()


def test_to_uint8_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255]


# --------------------------------------------------------------------------- segmenter + segscore
class OracleNet(nn.Module):
    """Reads the train id written in the red channel (id / 18 * 2 - 1) and returns one-hot logits."""

    def forward(self, x):
        ids = ((x[:, 0] + 1) / 2 * 18).round().long().clamp(0, 18)
        return {"out": F.one_hot(ids, 19).permute(0, 3, 1, 2).float()}


def test_segscore_with_an_oracle_segmenter():
    from asapnet.tasks.segment.build import Segmenter, SegmenterConfig
    from asapnet.tasks.segment.evaluate import segscore

    label_ids = torch.tensor([7, 26, 23, 0])[torch.randint(0, 4, (2, 32, 64), generator=torch.Generator().manual_seed(1))]
    train = to_train_ids(label_ids).clamp(max=18)  # ignored pixels drawn as class 18: never scored
    img = torch.stack([train.float() / 18 * 2 - 1] * 3, 1)
    seg = Segmenter(OracleNet(), SegmenterConfig(size=(32, 64)))
    s = segscore(img, label_ids, seg)
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0
    assert s.pixels == int((label_ids != 0).sum())
    img2 = img.clone()
    img2[:, :, :, :32] = -1  # left half painted 'road'
    s2 = segscore(img2, label_ids, seg)
    assert s2.pixel_accuracy < 0.9 and s2.miou < 1.0


def test_train_save_load_segmenter_on_real_pairs(tmp_path, data_root):
    from asapnet.data import cityscapes_pairs
    from asapnet.tasks.segment.build import SegmenterConfig, load_segmenter
    from asapnet.tasks.segment.train import train_segmenter

    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")
    cfg = SegmenterConfig(size=(64, 128), crop=(48, 96), steps=2, batch_size=2)
    seg = train_segmenter(pairs[:2], cfg, tmp_path, val_pairs=pairs[-1:], log=lambda s: None, log_every=1)
    path = tmp_path / "segmenter.safetensors"
    assert path.is_file() and json.loads((tmp_path / "segmenter.safetensors.json").read_text())["kind"] == "segmenter"
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    back = load_segmenter(path)
    x = torch.rand(1, 3, 100, 200) * 2 - 1
    pred = back.predict(x)
    assert pred.shape == (1, 64, 128) and pred.dtype == torch.int64
    assert torch.equal(pred, seg.predict(x))
    assert back.meta["train_pairs"] == [p.name for p in pairs[:2]]


def test_load_segmenter_rejects_a_generator(tmp_path):
    from asapnet import asap_preset, create_model
    from asapnet.checkpoint import save_generator
    from asapnet.tasks.segment.build import load_segmenter

    save_generator(tmp_path / "g.safetensors", create_model("asap", cfg=asap_preset("tiny")), "asap", {})
    with pytest.raises(ValueError, match="not a segmenter"):
        load_segmenter(tmp_path / "g.safetensors")


# --------------------------------------------------------------------------- evaluate_translation
@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory, data_root):
    """A tiny generator 'trained' on the first 7 pairs, and a 1-step segmenter at 64x128."""
    from asapnet import asap_preset, create_model
    from asapnet.checkpoint import save_generator
    from asapnet.data import cityscapes_pairs
    from asapnet.tasks.segment.build import SegmenterConfig
    from asapnet.tasks.segment.train import train_segmenter

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("eval")
    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=36)
    save_generator(d / "g.safetensors", create_model("asap", cfg=cfg), "asap", cfg.to_dict(),
                   {"num_classes": 35, "use_instance": True, "load_size": [64, 128],
                    "train_pairs": [str(p.label) for p in pairs[:7]]})
    train_segmenter(pairs[:2], SegmenterConfig(size=(64, 128), crop=None, steps=1, batch_size=1), d,
                    log=lambda s: None)
    return d, data_root / "cityscapes_samples", pairs


def test_evaluate_translation_on_the_heldout_pair(eval_setup, monkeypatch):
    import torchmetrics.image.lpip as tlpips

    from asapnet.tasks.translate.evaluate import evaluate_translation

    def offline(*args, **kwargs):  # as on a machine without the AlexNet weights: no download in tests
        raise OSError("no internet")

    monkeypatch.setattr(tlpips, "LearnedPerceptualImagePatchSimilarity", offline)
    d, data, pairs = eval_setup
    res = evaluate_translation(d / "g.safetensors", data, ["psnr", "ssim", "segscore", "fid", "lpips"],
                               segmenter=d / "segmenter.safetensors")
    by = {r["metric"]: r for r in res}
    assert [r["metric"] for r in res] == ["psnr", "ssim", "segscore", "fid", "lpips"]
    assert all(r["pairs"] == [pairs[7].name] and r["size"] == [64, 128] for r in res)
    assert 0 < by["psnr"]["value"] < 60 and -1 <= by["ssim"]["value"] <= 1
    seg = by["segscore"]
    for k in ("miou", "pixel_accuracy", "real_miou", "real_pixel_accuracy"):
        assert 0 <= seg[k] <= 1
    assert set(seg["per_class_iou"]) == set(CITYSCAPES_TRAIN_CLASSES)
    assert by["fid"]["available"] is False and "at least 2" in by["fid"]["reason"]  # one held-out image
    assert by["lpips"]["available"] is False and "LPIPS weights" in by["lpips"]["reason"]


def test_evaluate_translation_fid_with_injected_extractor_and_cli_json(eval_setup, capsys):
    from asapnet.tasks.translate.results import cmd_evaluate_translate
    from asapnet.options import from_args
    from asapnet.tasks.translate.config import TranslateEvaluateOptions
    from asapnet.tasks.translate.evaluate import evaluate_translation

    d, data, pairs = eval_setup
    res = evaluate_translation(d / "g.safetensors", data, ["fid"], which="all", fid_feature=TinyFeatures())
    assert res[0]["images"] == 8 and res[0]["value"] > 0 and res[0]["extractor"] == "custom"

    import argparse

    from asapnet.cli.task_args import add_evaluate_translate_args
    ap = argparse.ArgumentParser()
    add_evaluate_translate_args(ap)
    args = ap.parse_args(["--checkpoint", str(d / "g.safetensors"), "--data", str(data), "--metrics", "psnr,segscore",
                          "--json", "--size", "32x64", "--segmenter", str(d / "segmenter.safetensors")])
    assert cmd_evaluate_translate(from_args(TranslateEvaluateOptions, args)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["metric"] for r in lines] == ["psnr", "segscore"] and lines[0]["size"] == [32, 64]
    args.metrics, args.json, args.segmenter = "segscore", False, None
    # 1 where no segmenter is shipped
    assert cmd_evaluate_translate(from_args(TranslateEvaluateOptions, args)) in (0, 1)
    out = capsys.readouterr()
    assert "segscore" in out.out


def test_cmd_train_segment_on_real_pairs(tmp_path, data_root):
    from asapnet.tasks.segment.config import SegmentTrainOptions
    from asapnet.tasks.segment.train import cmd_train_segment
    from asapnet.tasks.segment.build import load_segmenter

    a = SegmentTrainOptions(data=None, data_root=str(data_root), holdout=1, load_size=(64, 128), crop=(48, 96),
                            steps=1, batch_size=1, seg_arch="lraspp_mobilenet_v3_large", seg_lr=1e-3, seed=0,
                            threads=None, quiet=True, out=str(tmp_path / "seg"))
    assert cmd_train_segment(a) == 0
    seg = load_segmenter(tmp_path / "seg" / "segmenter.safetensors")
    assert seg.cfg.size == (64, 128) and len(seg.meta["train_pairs"]) == 7 and len(seg.meta["val_pairs"]) == 1


def test_evaluate_rejects_unknown_metric_and_all_trained(eval_setup):
    from asapnet.data.io import DataError
    from asapnet.tasks.translate.evaluate import evaluate_translation
    from asapnet.tasks.translate.scoring import select_pairs

    d, data, pairs = eval_setup
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_translation(d / "g.safetensors", data, ["bleu"])
    with pytest.raises(DataError, match="every pair"):
        select_pairs(pairs, {"train_pairs": [p.name for p in pairs]})
    assert select_pairs(pairs, {}, holdout=2)[0] == pairs[-2:]
