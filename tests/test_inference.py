"""Every optional inference variant against the plain fp32 reference path (issue #5).

Bounds are on the maximum absolute difference of the [-1, 1] output of a randomly initialised
ASAP generator (spectral norm folded, so weights are well scaled), 36-channel label input."""
import pytest
import torch

from asapnet import create_model
from asapnet.bench.inputs import random_label_input
from asapnet.inference.optimize import CastInference, optimize_for_inference, prepare_for_inference


def _model():
    """The same randomly initialised generator on every call (spectral-normed modules cannot
    be deep-copied)."""
    torch.manual_seed(0)
    return create_model("asap", preset="tiny", in_channels=36, s1=2)


def _max_diff(variant, ref, x):
    with torch.inference_mode():
        y = variant(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    return (y - ref).abs().max().item()


@pytest.fixture(scope="module")
def ref_case():
    x = random_label_input(35, 70, 98, block=8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = prepare_for_inference(_model())(x)
    return x, ref


def test_fp32_variant_is_the_reference(ref_case):
    x, ref = ref_case
    assert _max_diff(optimize_for_inference(_model()), ref, x) == 0.0


def test_channels_last_matches_reference(ref_case):
    x, ref = ref_case
    v = optimize_for_inference(_model(), channels_last=True)
    assert v.lr.body[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert _max_diff(v, ref, x) < 1e-5  # fp32 reassociation only


def test_bf16_variant_error_is_bounded(ref_case):
    x, ref = ref_case
    v = optimize_for_inference(_model(), precision="bf16")
    assert isinstance(v, CastInference) and next(v.parameters()).dtype == torch.bfloat16
    d = _max_diff(v, ref, x)
    assert 0 < d < 0.1  # bf16 has an 8-bit mantissa: ~1e-2 on a [-1, 1] output


def test_int8_head_error_is_bounded_and_only_the_head_changes(ref_case):
    x, ref = ref_case
    v = optimize_for_inference(_model(), precision="int8")
    assert v.lr.head_int8 is not None
    d = _max_diff(v, ref, x)
    assert 0 < d < 0.05  # int8 weights + per-call int8 activations in the head only
    with pytest.raises(TypeError, match="ASAP generator only"):
        optimize_for_inference(create_model("pix2pix", in_channels=3), precision="int8")


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        optimize_for_inference(create_model("asap", preset="tiny"), precision="fp8")


def test_torch_compile_lr_stream_matches_reference(ref_case):
    x, ref = ref_case
    v = optimize_for_inference(_model(), compile=True)
    assert _max_diff(v, ref, x) < 1e-4  # inductor may reorder fp32 sums
