"""The Python API: load_model by name or path, Translator on paths, PIL images, arrays and tensors."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import asapnet
from asapnet.checkpoint import save_generator
from asapnet.data.cityscapes import ids_to_colors
from asapnet.data.io import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    cfg = asapnet.asap_preset("tiny", in_channels=35)
    path = tmp_path_factory.mktemp("m") / "g.safetensors"
    save_generator(path, asapnet.create_model("asap", cfg=cfg), "asap", cfg.to_dict(),
                   {"num_classes": 35, "use_instance": False, "label_ids": "cityscapes-color", "train_size": [32, 64]})
    return path


def _ids():
    ids = np.full((64, 128), 7, np.int64)
    ids[:20] = 23
    ids[30:50, 10:40] = 26
    return ids


def test_every_input_kind_gives_the_same_picture(tiny, tmp_path):
    t = asapnet.Translator.from_pretrained(tiny)
    ids = _ids()
    Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "a.png")
    ref = np.asarray(t(tmp_path / "a.png"))
    assert ref.shape == (64, 128, 3) and ref.std() > 0
    for inp in (str(tmp_path / "a.png"), Image.fromarray(ids.astype(np.uint8)), ids, torch.from_numpy(ids),
                ids_to_colors(ids), Image.fromarray(ids_to_colors(ids))):
        assert np.array_equal(np.asarray(t(inp)), ref)
    y = t(ids, output="tensor")
    assert y.shape == (3, 64, 128) and y.dtype == torch.float32 and -1 <= y.min() and y.max() <= 1


def test_ids_sharing_a_colour_give_the_same_output(tiny):
    t = asapnet.Translator.from_pretrained(tiny)
    a, b = _ids(), _ids()
    a[50:] = 1  # ego vehicle
    b[50:] = 0  # unlabeled: same colour, merged
    assert np.array_equal(np.asarray(t(a)), np.asarray(t(b)))


def test_bad_inputs_are_one_clear_error(tiny):
    t = asapnet.Translator.from_pretrained(tiny)
    with pytest.raises(DataError, match=r"label id 40 out of range \[0, 35\)"):
        t(np.full((8, 8), 40))
    with pytest.raises(DataError, match="nor a Cityscapes colour label map"):
        t(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="integer type"):
        t(np.zeros((8, 8), np.float32))
    with pytest.raises(FileNotFoundError, match="not a shipped model name"):
        asapnet.load_model("no-such-model")


def test_shipped_names_resolve():
    for name in asapnet.shipped_models():
        model, meta = asapnet.load_model(name)
        assert not model.training and "config" in meta


def test_shipped_facades_model_reads_cmp_label_files(data_root, tmp_path):
    from asapnet.cli import main
    label = data_root / "facades_cmp" / "test" / "cmp_b0001.png"
    assert main(["translate", str(label), "-o", str(tmp_path), "--checkpoint",
                 str(asapnet.pipeline.resolve("facades"))]) == 0
    out = Image.open(tmp_path / "cmp_b0001.png")
    assert out.size == Image.open(label).size and np.asarray(out).std() > 10


def test_facades_translator_reads_arrays_with_the_files_ids(data_root):
    # CMP Facades label files hold ids 1..12: an array, a PIL image and the path give one input
    label = data_root / "facades_cmp" / "test" / "cmp_b0001.png"
    t = asapnet.Translator.from_pretrained("facades")
    arr = np.asarray(Image.open(label))
    assert arr.min() >= 1
    x_path, x_arr, x_pil = t.encode(label), t.encode(arr), t.encode(Image.open(label))
    assert torch.equal(x_path, x_arr) and torch.equal(x_path, x_pil)
    assert torch.equal(x_path.argmax(1)[0], torch.from_numpy(arr.astype(np.int64) - 1))
    with pytest.raises(DataError, match=r"label id 0 out of range \[1, 12\] \(CMP Facades ids\)"):
        t.encode(arr - 1)


def test_translator_takes_a_shipped_name_directly(tmp_path):
    # the README's one-liner: asapnet.Translator('cityscapes'); t('label.png').save('out.png')
    src = Image.open(Path(__file__).resolve().parents[1] / "examples/cityscapes/frankfurt_000000_000576_gtFine_labelIds.png")
    label = tmp_path / "label.png"
    src.resize((512, 256), Image.NEAREST).save(label)
    t = asapnet.Translator("cityscapes")
    assert t.meta == asapnet.Translator.from_pretrained("cityscapes").meta
    t(label).save(tmp_path / "out.png")
    out = Image.open(tmp_path / "out.png")
    assert out.size == (512, 256) and out.mode == "RGB" and np.asarray(out).std() > 10


def test_translator_module_needs_its_metadata(tiny):
    model, meta = asapnet.load_model(tiny)
    assert asapnet.Translator(model, meta).num_classes == 35
    with pytest.raises(TypeError, match="metadata"):
        asapnet.Translator(model)
    with pytest.raises(TypeError, match="meta only with a model module"):
        asapnet.Translator(tiny, meta)
