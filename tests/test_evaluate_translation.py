"""The translation comparison table (checkpoints + trivial images + real photos) on the pix2pix
Cityscapes val split and the Facades test split, and the segmenter trained on those sets."""
import argparse
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from asapnet.tasks.translate.compare import parse_checkpoint_specs
from asapnet.tasks.translate.scoring import resolve_dataset


# --------------------------------------------------------------------------- no data needed
def test_dataset_comes_from_the_checkpoints_unless_given():
    assert resolve_dataset(None, [{"dataset": "facades"}, {"dataset": "facades"}]) == "facades"
    assert resolve_dataset(None, [{}, {"dataset": "ab"}]) == "cityscapes"
    assert resolve_dataset("cityscapes-pix2pix", [{"dataset": "facades"}]) == "cityscapes-pix2pix"
    with pytest.raises(ValueError, match="different datasets"):
        resolve_dataset(None, [{"dataset": "facades"}, {"dataset": "cityscapes-pix2pix"}])
    with pytest.raises(ValueError, match="unknown dataset"):
        resolve_dataset("kitti", [])


def test_checkpoint_specs_are_named_by_name_or_model(tmp_path):
    from asapnet import create_model
    from asapnet.checkpoint import save_generator
    from asapnet.config import asap_preset

    cfg = asap_preset("tiny", in_channels=35)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        save_generator(tmp_path / d / "g.safetensors", create_model("asap", cfg=cfg), "asap", cfg.to_dict())
    named = parse_checkpoint_specs([f"mine={tmp_path / 'a' / 'g.safetensors'}", str(tmp_path / "a" / "g.safetensors"),
                                    str(tmp_path / "b" / "g.safetensors")])
    assert list(named) == ["mine", "asap", "asap (b)"]
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        parse_checkpoint_specs([str(tmp_path / "missing.safetensors")])


def test_facades_targets_are_the_label_ids():
    from asapnet.tasks.segment.build import segmentation_classes, segmentation_targets

    ids = torch.tensor([[0, 11], [2, 5]])
    assert torch.equal(segmentation_targets(ids, "facades"), ids)
    assert segmentation_targets(torch.tensor([7, 0]), "cityscapes-pix2pix").tolist() == [0, 255]
    assert len(segmentation_classes("facades")) == 12
    with pytest.raises(ValueError, match="Facades label ids"):
        segmentation_targets(torch.tensor([12]), "facades")


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def pix2pix(data_root):
    d = data_root / "cityscapes_pix2pix"
    if not (d / "val").is_dir():
        pytest.skip("cityscapes_pix2pix not in the data folder")
    return d


@pytest.fixture(scope="module")
def facades(data_root):
    d = data_root / "facades_cmp"
    if not (d / "test").is_dir():
        pytest.skip("facades_cmp not in the data folder")
    return d


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory, pix2pix):
    """A 1-step segmenter at 64x128 on 2 pix2pix training photos (the code path, not a good segmenter)."""
    from asapnet.tasks.segment.build import SegmenterConfig
    from asapnet.tasks.segment.train import fit_segmenter, load_split

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("seg")
    images, targets, _ = load_split("cityscapes-pix2pix", pix2pix / "train", (64, 128), limit=2)
    fit_segmenter(images, targets, SegmenterConfig(size=(64, 128), crop=None, steps=1, batch_size=1), d,
                  meta={"dataset": "cityscapes-pix2pix"}, log=lambda s: None)
    return d / "segmenter.safetensors"


class Collapsed(nn.Module):
    """What a collapsed ASAP HR stream paints: one flat colour per S x S tile (here the tile mean of
    a colour per class), with a faint trace (2 %) of the per-pixel labels."""

    def __init__(self, S: int = 16):
        super().__init__()
        self.S = S
        self.colours = torch.linspace(-0.8, 0.8, 35 * 3).reshape(35, 3)

    def forward(self, x):
        img = torch.einsum("nkhw,kc->nchw", x, self.colours)
        return F.interpolate(F.avg_pool2d(img, self.S), scale_factor=self.S, mode="nearest") + 0.02 * img


def test_trivial_images_are_what_they_claim(pix2pix):
    from asapnet.data.cityscapes import Pix2PixCityscapes
    from asapnet.tasks.translate.compare import trivial_colours
    from asapnet.metrics.image import psnr_ssim

    triv, note = trivial_colours("cityscapes-pix2pix", pix2pix / "train", (128, 256), sample=6)
    train = Pix2PixCityscapes(pix2pix / "train", size=(128, 256), cache=False)
    idx = torch.linspace(0, len(train) - 1, 6).round().long().tolist()
    photos = torch.stack([train[i]["target"] for i in idx])
    labels = torch.stack([train[i]["label"] for i in idx])
    assert triv.images == 6 and f"6 of the {len(train)} training photos" in note
    torch.testing.assert_close(triv.mean, photos.mean((0, 2, 3)), atol=1e-4, rtol=0)
    road = labels == 7
    torch.testing.assert_close(triv.class_means[7], photos.permute(1, 0, 2, 3)[:, road].mean(1), atol=1e-4, rtol=0)
    assert torch.equal(triv.class_means[34], triv.mean)  # a class the sample lacks: the mean colour

    val = Pix2PixCityscapes(pix2pix / "val", size=(128, 256), limit=4, cache=False)
    real = torch.stack([val[i]["target"] for i in range(4)])
    lab = torch.stack([val[i]["label"] for i in range(4)])
    const, per_class = triv.constant(lab), triv.per_class(lab)
    assert const.shape == per_class.shape == real.shape
    assert torch.equal(const, triv.mean.view(1, 3, 1, 1).expand_as(const))
    for c in lab.unique().tolist():  # constant inside each class region, at that class's mean colour
        region = per_class.permute(1, 0, 2, 3)[:, lab == c]
        assert torch.equal(region, triv.class_means[c][:, None].expand_as(region))
    assert psnr_ssim(per_class, real)[0] > psnr_ssim(const, real)[0]


def test_comparison_table_on_val_data(pix2pix, seg_path):
    from asapnet import create_model
    from asapnet.tasks.translate.compare import compare_translations
    from asapnet.tasks.translate.results import comparison_markdown, format_comparison

    torch.manual_seed(0)
    tiny = create_model("asap", preset="tiny", in_channels=35)
    res = compare_translations({"tiny asap": tiny, "collapsed": Collapsed(16)}, "cityscapes-pix2pix",
                               pix2pix / "val", limit=3, trivial_sample=8, segmenter=seg_path)
    json.dumps(res, allow_nan=False)  # JSON-ready: undefined values are None
    assert res["images"] == 3 and res["names"] == ["1", "2", "3"] and res["size"] == [256, 512]
    assert res["tile"] == tiny.S == 4 and res["unavailable"] == {}
    by = {r["name"]: r for r in res["rows"]}
    assert list(by) == ["tiny asap", "collapsed", "mean colour", "class mean colour", "real photos"]
    assert [r["kind"] for r in res["rows"]] == ["model", "model", "trivial", "trivial", "real"]
    real, flat = by["real photos"], by["mean colour"]
    assert real["psnr"] is None and real["ssim"] is None
    assert 0.7 < real["seam_ratio"] < 1.5
    assert flat["tile_contrast"] < 1e-3 and flat["seam_ratio"] is None  # one flat colour: the collapsed case
    assert set(real["block_std"]) == {"road", "sidewalk", "building", "vegetation", "car"}
    assert real["block_std"]["road"] > 2 and flat["block_std"]["road"] < 1e-3
    for r in res["rows"]:
        assert 0 <= r["miou"] <= 1 and 0 <= r["pixel_accuracy"] <= 1
        if r["kind"] != "real":
            assert 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1
    assert by["tiny asap"]["seconds_per_image"] > 0
    text = format_comparison(res)
    assert all(name in text for name in by) and "S = 4" in text and "8 of the 2975" in text
    md = comparison_markdown(res)
    assert md.startswith("| method |") and "| *real photos* |" in md

    # the tile figures tell a collapsed translator from a photo at the same tile size
    res16 = compare_translations({"collapsed": Collapsed(16)}, "cityscapes-pix2pix", pix2pix / "val", limit=2,
                                 metrics=["tile_contrast", "seam_ratio"], references=("real photos",))
    col, real = res16["rows"]
    assert res16["tile"] == 16 and col["seam_ratio"] > 3 and 0.7 < real["seam_ratio"] < 1.5
    assert real["tile_contrast"] > 10 and real["tile_contrast"] > 3 * col["tile_contrast"]


def test_evaluate_translation_on_facades_per_metric(tmp_path, facades):
    from asapnet import create_model
    from asapnet.checkpoint import save_generator
    from asapnet.config import asap_preset
    from asapnet.tasks.translate.evaluate import evaluate_translation
    from asapnet.tasks.translate.results import format_table

    cfg = asap_preset("tiny", in_channels=12)
    torch.manual_seed(0)
    save_generator(tmp_path / "g.safetensors", create_model("asap", cfg=cfg), "asap", cfg.to_dict(),
                   {"dataset": "facades", "num_classes": 12, "use_instance": False})
    res = evaluate_translation(tmp_path / "g.safetensors", metrics=["psnr", "block_std", "segscore"],
                               data_dir=facades / "test", limit=2)
    by = {r["metric"]: r for r in res}
    assert all(r["dataset"] == "facades" and r["images"] == 2 and r["size"] == [256, 256] for r in res)
    assert 0 < by["psnr"]["value"] < 60
    assert set(by["block_std"]["value"]) == {"facade", "window", "door", "balcony", "shop"}
    assert by["segscore"]["available"] is False and "no segmenter for facades" in by["segscore"]["reason"]
    assert "block_std facade" in format_table(res)


def test_cli_compares_several_checkpoints(tmp_path, pix2pix, seg_path, capsys):
    from asapnet import create_model
    from asapnet.checkpoint import save_generator
    from asapnet.config import asap_preset
    from asapnet.cli.task_args import add_evaluate_translate_args
    from asapnet.tasks.translate.results import cmd_evaluate_translate
    from asapnet.options import from_args
    from asapnet.tasks.translate.config import TranslateEvaluateOptions

    cfg = asap_preset("tiny", in_channels=35)
    meta = {"dataset": "cityscapes-pix2pix", "num_classes": 35, "use_instance": False}
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_generator(tmp_path / f"g{seed}.safetensors", create_model("asap", cfg=cfg), "asap", cfg.to_dict(), meta)
    ap = argparse.ArgumentParser()
    add_evaluate_translate_args(ap)
    args = ap.parse_args(["--checkpoint", f"a={tmp_path / 'g0.safetensors'}", f"b={tmp_path / 'g1.safetensors'}",
                          "--data-root", str(pix2pix.parent), "--limit", "2", "--metrics", "psnr,segscore",
                          "--segmenter", str(seg_path), "--trivial-sample", "10", "--json"])
    assert cmd_evaluate_translate(from_args(TranslateEvaluateOptions, args)) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dataset"] == "cityscapes-pix2pix" and res["images"] == 2
    assert [r["name"] for r in res["rows"]] == ["a", "b", "mean colour", "class mean colour", "real photos"]
    assert res["rows"][0]["psnr"] != res["rows"][1]["psnr"]

    args = ap.parse_args(["--checkpoint", str(tmp_path / "g0.safetensors"), str(tmp_path / "g1.safetensors"),
                          "--dataset", "cityscapes"])
    with pytest.raises(ValueError, match="one checkpoint"):
        cmd_evaluate_translate(from_args(TranslateEvaluateOptions, args))

    from asapnet.cli import main  # the same options through 'asapnet evaluate'
    assert main(["evaluate", "--task", "translate", "--checkpoint", str(tmp_path / "g0.safetensors"), "--data-root",
                 str(pix2pix.parent), "--limit", "1", "--metrics", "psnr,tile_contrast", "--trivial-sample", "4"]) == 0
    out = capsys.readouterr().out
    assert "asap" in out and "class mean colour" in out and "tile contrast (S=4)" in out


@pytest.mark.parametrize("dataset", ["cityscapes-pix2pix", "facades"])
def test_train_segment_on_a_split_dataset(tmp_path, data_root, dataset, pix2pix, facades):
    from asapnet.tasks.segment.config import SegmentTrainOptions
    from asapnet.tasks.segment.train import cmd_train_segment
    from asapnet.tasks.segment.evaluate import segscore
    from asapnet.tasks.segment.build import load_segmenter, segmentation_classes
    from asapnet.tasks.translate.compare import open_split

    a = SegmentTrainOptions(dataset=dataset, data=None, data_root=str(data_root), holdout=2, seg_limit=3,
                            load_size=(64, 128), crop=(48, 96), steps=1, batch_size=1,
                            seg_arch="lraspp_mobilenet_v3_large", seg_lr=1e-3, seed=0, threads=None, quiet=True,
                            out=str(tmp_path / "seg"))
    assert cmd_train_segment(a) == 0
    seg = load_segmenter(tmp_path / "seg" / "segmenter.safetensors")
    assert seg.dataset == dataset and seg.cfg.size == (64, 128)
    assert seg.meta["train_images"] == 3 and seg.meta["val_images"] == 2
    assert seg.cfg.num_classes == len(seg.class_names) == len(segmentation_classes(dataset))
    logged = [json.loads(line) for line in (tmp_path / "seg" / "log.jsonl").read_text().splitlines()]
    assert "val_miou" in logged[-1]
    val = open_split(dataset, (pix2pix if dataset != "facades" else facades) / ("val" if dataset != "facades" else "test"),
                     limit=2)
    s = segscore(torch.stack([val[i]["target"] for i in range(2)]), torch.stack([val[i]["label"] for i in range(2)]),
                 seg)
    assert 0 <= s.miou <= 1 and s.class_names == seg.class_names


def test_set_scores_do_not_depend_on_the_chunking():
    from asapnet.metrics.translation import SetScores

    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 32, 64, generator=g) * 2 - 1
    fake = (real + 0.3 * torch.randn(3, 3, 32, 64, generator=g)).clamp(-1, 1)
    labels = (torch.arange(64) // 12).expand(3, 32, 64).clone()
    metrics = ["psnr", "ssim", "tile_contrast", "seam_ratio", "block_std"]
    whole, parts = SetScores(metrics, 8, {"a": 0, "b": 1}, 8), SetScores(metrics, 8, {"a": 0, "b": 1}, 8)
    whole.update(fake, real, labels)
    parts.update(fake[:1], real[:1], labels[:1])
    parts.update(fake[1:], real[1:], labels[1:])
    w, p = whole.result(), parts.result()
    for k in ("psnr", "ssim", "tile_contrast", "seam_ratio"):
        assert w[k] == pytest.approx(p[k], rel=1e-5)
    assert w["block_std"]["b"] > 0 and w["block_std"] == pytest.approx(p["block_std"], rel=1e-5)
    ref = SetScores(metrics, 8, {"a": 0}, reference=True)
    ref.update(real, real, labels)
    assert ref.result()["psnr"] is None
    with pytest.raises(ValueError, match="no images"):
        SetScores(metrics, 8, {}).result()
