"""The paper presets build the reference ASAP-Net architecture (tamarott/ASAPNet ASAPNetsGenerator)."""
import torch
import torch.nn as nn

from asapnet import ASAPConfig, asap_preset, create_model
from asapnet.checkpoint import load_generator
from asapnet.config import LEGACY_DEFAULTS
from asapnet.models.lr_stream import _InstanceNorm2d


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_cityscapes_256x512_parameter_count_equals_the_reference():
    m = create_model("asap", preset="cityscapes-256x512")
    assert n_params(m) == 83_201_411
    # 35 label channels + 16 encoding channels reach the MLPs; the edge channel does not
    assert m.hr.dims[0][0] == 35 + 16
    assert m.hr.num_params == 16_003


def test_lr_stream_is_instance_affine_everywhere_without_spectral_norm():
    m = create_model("asap", preset="cityscapes-256x512")
    convs = [mod for mod in m.lr.body.modules() if isinstance(mod, nn.Conv2d)]
    norms = [mod for mod in m.lr.body.modules() if isinstance(mod, _InstanceNorm2d)]
    assert len(convs) == len(norms) == 1 + 4 + 7  # first conv, log2(16) strided convs, 7 blocks
    assert all(c.bias is None for c in convs)  # a normalised conv has no bias, as the reference
    assert all(n.affine for n in norms)
    assert not any("parametrizations" in name for name, _ in m.named_parameters())
    assert m.hr.slope == 0.01


def test_edge_channel_reaches_the_lr_stream_only():
    torch.manual_seed(0)
    m = create_model("asap", preset="tiny", in_channels=4, lr_only_channels=1).eval()
    x = torch.zeros(1, 4, 16, 16)
    x[:, 0] = 1
    x[:, 3, :, 8] = 1  # an edge
    params = m.predict_params(x)
    # the HR stream's input has no edge channel: same per-pixel input with or without edges
    assert m.hr_input(x).shape[1] == 3
    assert torch.equal(m.hr_input(x), m.hr_input(x * torch.tensor([1, 1, 1, 0.]).view(1, 4, 1, 1)))
    # ... but the edges change the predicted MLP parameters
    x2 = x.clone()
    x2[:, 3] = 0
    assert not torch.allclose(params, m.predict_params(x2))


def test_hr_slope_is_used_by_both_hr_paths():
    torch.manual_seed(0)
    for slope in (0.01, 0.2):
        m = create_model("asap", preset="tiny", in_channels=3, hr_slope=slope).eval()
        x = torch.randn(1, 3, 16, 16)
        with torch.no_grad():
            fast = m(x)
            m.hr.fast = False
            ref = m(x)
        assert torch.allclose(fast, ref, atol=1e-5)
    a = create_model("asap", preset="tiny", in_channels=3, hr_slope=0.01)
    b = create_model("asap", preset="tiny", in_channels=3, hr_slope=0.2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def test_instance_affine_on_a_one_cell_grid_returns_the_shift():
    n = _InstanceNorm2d(3, affine=True)
    with torch.no_grad():
        n.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    assert torch.equal(n(torch.randn(2, 3, 1, 1)), n.bias.view(1, 3, 1, 1).expand(2, 3, 1, 1))


def test_config_without_the_new_keys_loads_with_the_old_architecture():
    old = {k: v for k, v in asap_preset("tiny").to_dict().items() if k not in LEGACY_DEFAULTS}
    old.update(norm="instance", spectral_norm=True)
    cfg = ASAPConfig.from_dict(old)
    assert (cfg.first_norm, cfg.hr_slope, cfg.lr_only_channels) == (False, 0.2, 0)
    assert ASAPConfig().hr_slope == 0.01 and ASAPConfig().first_norm


def test_shipped_asap_checkpoints_keep_their_architecture():
    from importlib import resources
    from pathlib import Path
    weights = Path(str(resources.files("asapnet") / "weights"))
    for f in sorted(weights.glob("*.safetensors")):
        if f.name.startswith("segmenter"):
            continue
        model, meta = load_generator(f)
        if meta["model"] == "asap":
            assert model.cfg.hr_slope in (0.01, 0.2)
            assert model.hr.slope == model.cfg.hr_slope
