import json

import pytest
import torch

from asapnet import DiscriminatorConfig, TrainConfig, asap_preset, create_model
from asapnet.checkpoint import load_generator, load_tensors
from asapnet.data import LabelPhotoDataset, cityscapes_pairs
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train


def _setup(tmp_path, data_root, steps, **kw):
    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")[:2]
    ds = LabelPhotoDataset(pairs, 35, True, load_size=(64, 128), flip=True)
    cfg = asap_preset("tiny", in_channels=36)
    G = create_model("asap", cfg=cfg)
    dcfg = DiscriminatorConfig(in_channels=39, ndf=8, n_layers=3)
    tcfg = TrainConfig(steps=steps, crop=(32, 64), lambda_vgg=0, checkpoint_every=1, sample_every=1, log_every=1, **kw)
    tr = Trainer(G, "asap", cfg.to_dict(), dcfg, tcfg, tmp_path / "run", num_classes=35,
                 extra_meta={"num_classes": 35, "use_instance": True})
    return tr, ds


def test_one_real_training_step_changes_weights(tmp_path, data_root):
    tr, ds = _setup(tmp_path, data_root, steps=1)
    g0 = {k: v.clone() for k, v in tr.G.state_dict().items()}
    d0 = {k: v.clone() for k, v in tr.D.state_dict().items()}
    train(tr, ds, progress=False)
    assert tr.step == 1
    changed_g = [k for k, v in tr.G.state_dict().items() if not torch.equal(v, g0[k])]
    changed_d = [k for k, v in tr.D.state_dict().items() if not torch.equal(v, d0[k])]
    assert any("lr.head" in k for k in changed_g) and changed_d
    out = tmp_path / "run"
    assert (out / "state.safetensors").is_file() and (out / "samples" / "step_000001.png").is_file()
    assert any((out / "tb").iterdir())


def test_resume_continues_from_saved_step(tmp_path, data_root):
    tr, ds = _setup(tmp_path, data_root, steps=2)
    train(tr, ds, progress=False)
    saved = {k: v.clone() for k, v in tr.G.state_dict().items()}
    _, meta = load_tensors(tmp_path / "run" / "state.safetensors")
    assert meta["step"] == 2

    tr2, ds2 = _setup(tmp_path, data_root, steps=3)
    assert tr2.load()
    assert tr2.step == 2
    assert all(torch.equal(v, saved[k]) for k, v in tr2.G.state_dict().items())
    assert tr2.opt_g.state  # Adam moments restored
    steps_seen = []
    tr3, _ = _setup(tmp_path, data_root, steps=3)
    train(tr3, ds2, resume=True, progress=False, on_step=lambda s, logs: steps_seen.append(s))
    assert steps_seen == [3] and tr3.step == 3
    assert load_tensors(tmp_path / "run" / "state.safetensors")[1]["step"] == 3


def test_generator_checkpoint_roundtrip_and_validation(tmp_path, data_root):
    tr, ds = _setup(tmp_path, data_root, steps=1)
    train(tr, ds, val_dataset=ds, progress=False)
    model, meta = load_generator(tmp_path / "run" / "generator.safetensors")
    x = ds[0]["input"][None]
    tr.G.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), tr.G(x), atol=1e-6)
    assert meta["num_classes"] == 35 and meta["use_instance"] is True
    side = json.loads((tmp_path / "run" / "generator.safetensors.json").read_text())
    assert side["config"] == meta["config"]
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 1 and 0 < row["val/psnr"] < 60 and -1 <= row["val/ssim"] <= 1


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.safetensors: not a valid safetensors checkpoint"):
        load_generator(bad)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nope.safetensors")


def test_validation_accepts_images_of_different_sizes(tmp_path, data_root):
    # held-out sets (deblurring test photos, Set12) mix sizes: metrics are per-image means
    tr, ds = _setup(tmp_path, data_root, steps=1)
    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")[:2]
    mixed = [LabelPhotoDataset(pairs[:1], 35, True, load_size=(64, 128))[0],
             LabelPhotoDataset(pairs[1:], 35, True, load_size=(32, 96))[0]]
    both = tr.validate(mixed)
    singles = [tr.validate([item]) for item in mixed]
    assert both["val/psnr"] == pytest.approx((singles[0]["val/psnr"] + singles[1]["val/psnr"]) / 2)
    assert both["val/l1"] == pytest.approx((singles[0]["val/l1"] + singles[1]["val/l1"]) / 2)


def test_time_budget_ends_training_with_final_checkpoint_and_validation(tmp_path, data_root):
    tr, ds = _setup(tmp_path, data_root, steps=5)
    tr.cfg.checkpoint_every = tr.cfg.sample_every = 100  # only the budget can trigger them
    train(tr, ds, val_dataset=ds, progress=False, time_budget_s=0.0)  # over budget after step 1
    assert tr.step == 1
    _, meta = load_generator(tmp_path / "run" / "generator.safetensors")
    assert meta["step"] == 1
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1]


def test_random_crops_cover_border_tiles_nearly_as_often_as_centre_ones():
    import random as _random
    from asapnet.training.batches import _random_region
    _random.seed(0)
    cover = [0] * 32
    for _ in range(4000):
        top, left, h, w = _random_region(256, 512, (256, 256), 16)
        assert top == 0 and (h, w) == (256, 256) and 0 <= left <= 256 and left % 16 == 0
        for c in range(left // 16, (left + w) // 16):
            cover[c] += 1
    # a start drawn inside the image only would cover the first column in 1 of 17 crops
    assert min(cover[0], cover[-1]) > 0.45 * max(cover), cover
    assert _random_region(100, 40, (256, 256), 8) == (0, 0, 96, 40)  # crop larger than the image: whole image
