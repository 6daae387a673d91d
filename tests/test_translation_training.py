"""A short label->photo training on real Cityscapes pairs must not collapse the HR stream into
one flat colour per tile (the failure of the first shipped model)."""
import json

import pytest
import torch

from asapnet import create_model
from asapnet.config import DiscriminatorConfig, TrainConfig
from asapnet.data.cityscapes import Pix2PixCityscapes
from asapnet.metrics.tiles import tile_seam_ratio, within_tile_contrast
from asapnet.models.asap import init_asap_hypernetwork
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train


def _short_run(data_root, tmp_path, init: str):
    train_set = Pix2PixCityscapes(data_root / "cityscapes_pix2pix" / "train", size=(128, 256), limit=16)
    val_set = Pix2PixCityscapes(data_root / "cityscapes_pix2pix" / "val", size=(128, 256), limit=1)
    torch.manual_seed(0)
    G = create_model("asap", preset="tiny", in_channels=35, s2=16, lr_width=16, lr_max_width=64, lr_depth=2,
                     hr_width=32, hr_depth=4)
    if init == "hyper":
        init_asap_hypernetwork(G, last_layer=1.0)
    cfg = TrainConfig(steps=30, batch_size=2, crop=None, lambda_vgg=0.0, lambda_l1=1.0, gan=False, lr_g=1e-3,
                      beta1=0.9, beta2=0.999, checkpoint_every=30, sample_every=30, log_every=10, num_threads=1)
    trainer = Trainer(G, "asap", G.cfg.to_dict(), DiscriminatorConfig(in_channels=38), cfg, tmp_path / init,
                      num_classes=35)
    train(trainer, train_set, val_set, progress=False)
    G.eval()
    item = val_set[0]
    with torch.no_grad():
        y = G(item["input"][None])
    logged = json.loads((tmp_path / init / "metrics.jsonl").read_text().splitlines()[-1])
    return y, item, logged, G


def test_short_real_training_keeps_the_hr_stream_pixelwise(data_root, tmp_path):
    y, item, logged, G = _short_run(data_root, tmp_path, "hyper")
    real_contrast = within_tile_contrast(item["target"][None], item["label"][None], 16)
    contrast = within_tile_contrast(y, item["label"][None], 16)
    assert contrast > 0.1 * real_contrast, (contrast, real_contrast)
    assert tile_seam_ratio(y, 16) < 3.0
    # the health figures are logged where a user watching the run sees them
    assert logged["val/tile_contrast"] == pytest.approx(contrast, rel=1e-4)
    assert {"health/tile_contrast", "health/seam_ratio", "health/tile_contrast_real"} <= set(logged)


def test_the_same_run_with_default_head_init_collapses_and_the_figures_show_it(data_root, tmp_path):
    y, item, logged, G = _short_run(data_root, tmp_path, "default")
    assert within_tile_contrast(y, item["label"][None], 16) < 2.0
    assert logged["val/label_sensitivity_hr"] < 0.5  # the flat tiles ignore their labels
    assert tile_seam_ratio(y, 16) > 10
    assert logged["val/seam_ratio"] > 10


def test_cli_train_on_pix2pix_cityscapes_and_continue_from_a_checkpoint(data_root, tmp_path):
    from asapnet.checkpoint import load_generator
    from asapnet.cli import main

    common = ["train", "--dataset", "cityscapes-pix2pix", "--data", str(data_root / "cityscapes_pix2pix"),
              "--preset", "tiny", "--load-size", "64x128", "--crop", "none", "--no-vgg", "--lambda-l1", "20",
              "--ndf", "8", "--num-d", "1", "--n-layers-d", "2", "--steps", "2", "--holdout", "1", "--threads", "1",
              "--quiet"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    first, meta = load_generator(tmp_path / "a" / "generator.safetensors")
    assert meta["dataset"] == "cityscapes-pix2pix" and meta["train_size"] == [64, 128]
    assert meta["label_ids"] == "cityscapes-color" and meta["num_classes"] == 35
    assert main(common + ["--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "generator.safetensors")]) == 0
    _, meta2 = load_generator(tmp_path / "b" / "generator.safetensors")
    assert meta2["init_from"] == {"path": str(tmp_path / "a" / "generator.safetensors"), "step": 2}
