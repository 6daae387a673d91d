"""metrics.translation.label_sensitivity: does a translator's output follow each pixel's label?"""
import pytest
import torch
import torch.nn.functional as F

from asapnet import create_model
from asapnet.metrics.translation import label_sensitivity, majority_labels
from asapnet.models.asap import init_asap_hypernetwork


def _labels(seed=0, n=2, c=5, h=32, w=48):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, c, (n, h // 4, w // 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return F.one_hot(ids, c).permute(0, 3, 1, 2).float()


def test_majority_labels_of_a_cell():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 1
    x[0, 0, 0, :3], x[0, 2, 0, :3] = 0, 1  # 3 of 16 pixels are class 2
    m = majority_labels(x, 4)
    assert torch.equal(m.argmax(1), torch.zeros(1, 4, 4, dtype=torch.long)) and torch.equal(m.sum(1), torch.ones(1, 4, 4))


def test_an_hr_stream_blind_to_its_label_input_scores_zero():
    torch.manual_seed(0)
    G = create_model("asap", preset="tiny", in_channels=5, s2=8).eval()
    init_asap_hypernetwork(G, last_layer=1.0)
    x = _labels()
    s = label_sensitivity(G, x, tile=8)
    assert s["hr"] > 1.0 and s["whole"] > 1.0
    # zero the predicted first-layer weights of the label inputs: the MLPs no longer read the label
    ci, co, ws, _ = G.hr.param_slices()[0]
    rows = torch.arange(ws.start, ws.stop).view(ci, co)[:5].flatten()
    with torch.no_grad():
        G.lr.head.weight[rows] = 0
        G.lr.head.bias[rows] = 0
    blind = label_sensitivity(G, x, tile=8)
    assert blind["hr"] == pytest.approx(0.0, abs=1e-4)
    assert blind["whole"] > 0.1  # the LR stream still sees the changed map


def test_other_generators_get_the_whole_model_figure_only_and_uniform_cells_give_none():
    G = create_model("pix2pixhd", in_channels=5, ngf=4, n_downsampling=2, n_blocks=1).eval()
    s = label_sensitivity(G, _labels(1), tile=8)
    assert s["hr"] is None and s["whole"] > 0
    uniform = F.one_hot(torch.full((1, 16, 16), 2), 5).permute(0, 3, 1, 2).float()
    assert label_sensitivity(G, uniform, tile=8) == {"whole": None, "hr": None}
