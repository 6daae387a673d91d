"""Real-layout loaders (pix2pix Cityscapes, CMP Facades, official Cityscapes) and the tile-health figures."""
import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.data.cityscapes import (COLOR_IDS, Pix2PixCityscapes, colors_to_ids, ids_to_colors,
                                     official_pairs)
from asapnet.data.facades import FacadesCMP
from asapnet.data.io import DataError
from asapnet.metrics.tiles import class_block_std, tile_seam_ratio, within_tile_contrast
from asapnet.tasks.translate.run import label_to_input, read_label_ids


def test_colors_to_ids_inverts_the_palette_and_reports_blended_pixels():
    ids = np.array([[7, 8, 11], [21, 23, 26]])
    rgb = ids_to_colors(ids)
    out, far = colors_to_ids(rgb)
    assert np.array_equal(out, ids) and far == 0.0
    # a colour far from every palette colour (white) is counted, and still mapped to an id
    rgb2 = rgb.copy()
    rgb2[0, 0] = 255
    out2, far2 = colors_to_ids(rgb2)
    assert far2 == pytest.approx(1 / 6) and out2[0, 0] in range(35)


def test_ids_sharing_a_colour_are_merged():
    assert COLOR_IDS[1] == COLOR_IDS[4] == 0 and COLOR_IDS[18] == 17 and COLOR_IDS[26] == 26


def test_pix2pix_cityscapes_restores_the_aspect_and_maps_colours(data_root):
    ds = Pix2PixCityscapes(data_root / "cityscapes_pix2pix" / "val", limit=3)
    assert [f.name for f in ds.files] == ["1.jpg", "2.jpg", "3.jpg"]
    it = ds[0]
    assert it["input"].shape == (35, 256, 512) and it["target"].shape == (3, 256, 512)
    assert torch.equal(it["input"].argmax(0), it["label"]) and it["input"].sum(0).eq(1).all()
    assert -1 <= it["target"].min() and it["target"].max() <= 1
    assert 0 < ds.far_share[0] < 0.15  # JPEG blends colours at class boundaries
    present = set(it["label"].unique().tolist())
    assert {7, 11, 26} <= present  # road, building, car in a street scene
    assert present <= set(COLOR_IDS.tolist())


def test_pix2pix_cityscapes_names_a_file_that_is_not_a_pair(tmp_path):
    Image.fromarray(np.zeros((256, 300, 3), np.uint8)).save(tmp_path / "1.jpg")
    with pytest.raises(DataError, match=r"1.jpg: size 300x256 is not a pix2pix A\|B pair"):
        Pix2PixCityscapes(tmp_path)[0]


def test_facades_loader_on_real_pairs(data_root):
    ds = FacadesCMP(data_root / "facades_cmp" / "test", size=(256, 256), limit=2)
    it = ds[0]
    assert it["input"].shape == (12, 256, 256) and it["name"] == "cmp_b0001"
    assert it["label"].min() >= 0 and it["label"].max() <= 11
    assert {1, 2} <= set(it["label"].unique().tolist())  # facade and window


def test_facades_loader_errors_name_the_file(tmp_path):
    Image.fromarray(np.full((8, 8), 13, np.uint8)).save(tmp_path / "cmp_b0001.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cmp_b0001.jpg")
    with pytest.raises(DataError, match=r"cmp_b0001.png: label id 13 out of range \[1, 12\]"):
        FacadesCMP(tmp_path)[0]
    (tmp_path / "cmp_b0001.jpg").unlink()
    with pytest.raises(DataError, match="cmp_b0001.png: no photo cmp_b0001.jpg"):
        FacadesCMP(tmp_path)


def test_official_cityscapes_layout_is_read_recursively(tmp_path):
    for city in ("aachen", "bochum"):
        gt = tmp_path / "gtFine" / "train" / city
        gt.mkdir(parents=True)
        img = tmp_path / "leftImg8bit" / "train" / city
        img.mkdir(parents=True)
        stem = f"{city}_000000_000019"
        Image.fromarray(np.zeros((4, 8), np.uint8)).save(gt / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(np.zeros((4, 8), np.uint8)).save(gt / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(img / f"{stem}_leftImg8bit.png")
    pairs = official_pairs(tmp_path, "train")
    assert [p.name for p in pairs] == ["aachen_000000_000019", "bochum_000000_000019"]
    assert all(p.instance is not None and p.image is not None for p in pairs)
    (tmp_path / "leftImg8bit" / "train" / "bochum" / "bochum_000000_000019_leftImg8bit.png").unlink()
    with pytest.raises(DataError, match="bochum_000000_000019_gtFine_labelIds.png: no photo"):
        official_pairs(tmp_path, "train")
    with pytest.raises(DataError, match="gtFine/val: folder not found"):
        official_pairs(tmp_path, "val")


def test_colour_label_maps_are_accepted_and_photos_refused(tmp_path):
    ids = np.zeros((16, 32), np.int64)
    ids[:8] = 23
    ids[8:] = 7
    ids[8:, 20:] = 26
    Image.fromarray(ids_to_colors(ids)).save(tmp_path / "a_gtFine_color.png")
    assert np.array_equal(read_label_ids(tmp_path / "a_gtFine_color.png", 35), ids)
    x = label_to_input(tmp_path / "a_gtFine_color.png", 35, use_instance=False)
    assert torch.equal(x[0].argmax(0), torch.from_numpy(ids))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    with pytest.raises(DataError, match="photo.png: is an RGB colour image, not a label map"):
        read_label_ids(tmp_path / "photo.png", 35)
    # ids 1-4 merge into 0 for a model trained on colour label maps
    Image.fromarray(np.array([[1, 4, 18, 26]], np.uint8)).save(tmp_path / "m.png")
    assert read_label_ids(tmp_path / "m.png", 35, merge="cityscapes-color").tolist() == [[0, 0, 17, 26]]


def test_tile_figures_separate_a_collapsed_output_from_a_picture():
    labels = torch.zeros(1, 64, 64, dtype=torch.int64)
    labels[:, :, 24:] = 1  # a class boundary inside the second 16-px tile column
    picture = torch.where(labels[:, None] == 1, 0.5, -0.5).expand(1, 3, 64, 64).clone()
    picture += 0.05 * torch.randn_like(picture)
    flat = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(picture, 16), scale_factor=16)
    assert within_tile_contrast(picture, labels, 16) > 100  # gray levels: 0.5 - (-0.5) = 127.5
    assert within_tile_contrast(flat, labels, 16) < 1
    assert tile_seam_ratio(picture, 16) < 1.5
    assert tile_seam_ratio(flat + 0.001 * torch.randn_like(flat), 16) > 10
    std = class_block_std(picture, labels, [0, 1], block=8)
    assert set(std) == {0, 1} and all(2 < v < 10 for v in std.values())
