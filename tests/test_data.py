import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.data import (AlignedABDataset, DataError, LabelPhotoDataset, Pair, cityscapes_pairs, instance_edges,
                          one_hot, pairs_from_folders, read_image, read_label)

from conftest import EXAMPLES


def _png(path, arr):
    Image.fromarray(arr).save(path)
    return path


def test_real_cityscapes_pair_loads_as_one_hot_plus_edges(data_root):
    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")
    assert len(pairs) == 8 and all(p.instance and p.image for p in pairs)
    ds = LabelPhotoDataset(pairs[:1], num_classes=35, use_instance=True, load_size=(128, 256))
    item = ds[0]
    x, y = item["input"], item["target"]
    assert x.shape == (36, 128, 256) and y.shape == (3, 128, 256)
    assert torch.equal(x[:35].sum(0), torch.ones(128, 256))  # exactly one class per pixel
    assert set(x[35].unique().tolist()) == {0.0, 1.0}  # instance edges present
    assert -1 <= y.min() and y.max() <= 1
    assert torch.equal(x[:35].argmax(0), item["label"])


def test_instance_edges_marks_boundaries():
    inst = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    e = instance_edges(inst)
    assert e[0, 0] == 0 and e[0, 1] == 1 and e[0, 2] == 1 and e[2, 0] == 1


def test_one_hot_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        one_hot(torch.tensor([[[0, 5]]]), 5)


def test_corrupt_and_empty_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: empty file"):
        read_image(empty)
    good = _png(tmp_path / "good.png", np.zeros((16, 16, 3), np.uint8))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match="trunc.png: cannot read image"):
        read_image(trunc)
    with pytest.raises(DataError, match="missing.png: file not found"):
        read_label(tmp_path / "missing.png")


def test_rgb_photo_given_as_label_map_is_rejected(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    f = _png(tmp_path / "photo.png", rgb)
    with pytest.raises(DataError, match="photo.png: is an RGB colour image"):
        read_label(f)


def test_rgb_label_map_with_palette(tmp_path):
    pal = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    ids = np.array([[0, 1], [2, 1]])
    rgb = np.array(pal, np.uint8)[ids]
    f = _png(tmp_path / "col.png", rgb)
    assert np.array_equal(read_label(f, pal), ids)
    with pytest.raises(DataError, match="not in the palette"):
        read_label(f, pal[:2])


def test_palette_png_reads_indices_and_16bit_image_is_scaled(tmp_path):
    img = Image.fromarray(np.array([[0, 3], [7, 1]], np.uint8), "L").convert("P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    img.save(tmp_path / "p.png")
    assert read_label(tmp_path / "p.png").tolist() == [[0, 3], [7, 1]]
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "16.png")
    assert read_image(tmp_path / "16.png").max() == 255


def test_label_id_out_of_range_names_the_file(tmp_path):
    lab = _png(tmp_path / "a.png", np.full((8, 8), 40, np.uint8))
    img = _png(tmp_path / "a_img.png", np.zeros((8, 8, 3), np.uint8))
    ds = LabelPhotoDataset([Pair("a", lab, None, img)], num_classes=35, use_instance=False)
    with pytest.raises(DataError, match=r"a.png: label id 40 out of range \[0, 35\)"):
        ds[0]


def test_mismatched_pair_sizes_name_both_files(tmp_path):
    lab = _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    img = _png(tmp_path / "b.png", np.zeros((8, 10, 3), np.uint8))
    ds = LabelPhotoDataset([Pair("a", lab, None, img)], num_classes=35, use_instance=False)
    with pytest.raises(DataError, match=r"b.png: size 10x8 does not match label map .*a.png"):
        ds[0]


def test_missing_partner_and_empty_folder(tmp_path):
    (tmp_path / "lab").mkdir(), (tmp_path / "img").mkdir(), (tmp_path / "none").mkdir()
    _png(tmp_path / "lab" / "x1.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "lab" / "x2.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "img" / "x1.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="no image for 'x2'"):
        pairs_from_folders(tmp_path / "lab", tmp_path / "img")
    with pytest.raises(DataError, match="none: no image files"):
        pairs_from_folders(tmp_path / "none")


def test_aligned_ab_direction(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    _png(tmp_path / "1.png", np.concatenate([a, b], 1))
    ab = AlignedABDataset(tmp_path, "AtoB")[0]
    ba = AlignedABDataset(tmp_path, "BtoA")[0]
    assert ab["input"].max() == -1 and ab["target"].min() == 1
    assert torch.equal(ba["input"], ab["target"])


def test_shipped_example_label_map_reads():
    lab = read_label(EXAMPLES / "frankfurt_000000_000576_gtFine_labelIds.png")
    inst = read_label(EXAMPLES / "frankfurt_000000_000576_gtFine_instanceIds.png")
    assert lab.shape == inst.shape == (1024, 2048)
    assert 0 <= lab.min() and lab.max() < 35 and inst.max() >= 1000  # 'thing' instances are class*1000+k
