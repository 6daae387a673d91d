"""ASAPConfig.hr_weight_scale: the same function at initialisation and after rescaling, different
training speed of the predicted MLP weights."""
import math

import pytest
import torch
import torch.nn.functional as F

from asapnet import create_model
from asapnet.checkpoint import init_from_checkpoint, load_generator, save_generator
from asapnet.models.asap import init_asap_hypernetwork, rescale_hr_weights


def _pair(**kw):
    models = []
    for scale in ("fan_in", "none"):
        torch.manual_seed(0)
        m = create_model("asap", preset="tiny", in_channels=3, hr_weight_scale=scale, **kw)
        init_asap_hypernetwork(m, last_layer=1.0)
        models.append(m)
    return models


def test_hypernetwork_init_gives_the_same_function_for_both_scales():
    a, b = _pair()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    assert (ya - yb).abs().max() < 1e-5 and ya.std() > 0.05


@pytest.mark.parametrize("up", ["nearest", "bilinear"])
def test_rescaling_and_init_across_scales_keep_the_output(tmp_path, up):
    a, _ = _pair(param_upsampling=up)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a.lr.head.weight.add_(0.05 * torch.randn_like(a.lr.head.weight))  # a "trained" head
        y = a.eval()(x)
        save_generator(tmp_path / "fan_in.safetensors", a, "asap", a.cfg.to_dict())
        rescale_hr_weights(a, "none")
        assert a.cfg.hr_weight_scale == "none" and a.hr.weight_scale == "none"
        assert (a(x) - y).abs().max() < 1e-5
        save_generator(tmp_path / "none.safetensors", a, "asap", a.cfg.to_dict())
        g, meta = load_generator(tmp_path / "none.safetensors")
        assert meta["config"]["hr_weight_scale"] == "none" and (g(x) - y).abs().max() < 1e-5
        # --init from a checkpoint with the other scale: the new model keeps its own scale and the function
        c = create_model("asap", preset="tiny", in_channels=3, param_upsampling=up, hr_weight_scale="none").eval()
        init_from_checkpoint(c, tmp_path / "fan_in.safetensors")
        assert c.cfg.hr_weight_scale == "none" and (c(x) - y).abs().max() < 1e-5
    with pytest.raises(ValueError, match="hr_weight_scale"):
        rescale_hr_weights(a, "sqrt")


def test_without_fan_in_scaling_predicted_weights_move_sqrt_c_in_times_faster():
    a, b = _pair()
    x = torch.rand(1, 3, 32, 32)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    moved = {}
    for name, m in (("fan_in", a), ("none", b)):
        ci, _, ws, bs = m.hr.param_slices()[0]
        with torch.no_grad():
            p0 = m.predict_params(m.pad(x))
        opt = torch.optim.Adam(m.lr.head.parameters(), lr=1e-3)  # (the head alone: an exact comparison)
        F.l1_loss(m(x), target).backward()
        opt.step()
        with torch.no_grad():
            dp = m.predict_params(m.pad(x)) - p0
        moved[name] = ((dp[:, ws] * m.hr.weight_gain(ci)).abs().mean().item(), dp[:, bs].abs().mean().item(), ci)
    (w_fan, b_fan, ci), (w_none, b_none, _) = moved["fan_in"], moved["none"]
    # the first Adam step is the same on the head for both (gradients differ by a positive factor):
    # the biases move alike, the used weights sqrt(c_in) times more without the scaling
    assert b_none == pytest.approx(b_fan, rel=1e-3)
    assert w_none / w_fan == pytest.approx(math.sqrt(ci), rel=1e-3)
