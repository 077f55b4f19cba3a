"""The fp16 headroom that every fp16 artifact's manifest records: real Keras models probed on the stress inputs."""
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.converters.fp16_range import FP16_MAX, _measure, fp16_range_note


@pytest.fixture()
def tiny():
    import tf_keras

    from kd_edge.models import build

    tf_keras.utils.set_random_seed(0)
    return build("edge-tiny")


def _first_conv(model):
    return next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")


def test_a_fresh_model_is_far_inside_fp16_and_gets_no_note(tiny):
    record = _measure(tiny, stride=4)
    assert record["measured"] and record["within"]
    assert 0 < record["largest_activation"] < 100 and record["headroom"] > 600
    assert record["input"] and "stress inputs" in record["probe"]
    assert fp16_range_note(record) is None


def test_activations_beyond_fp16_are_found_and_named(tiny):
    conv = _first_conv(tiny)
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 1e6, bias])  # the first features alone now reach far beyond 65504
    record = _measure(tiny, stride=4)
    assert not record["within"] and record["largest_activation"] > FP16_MAX
    note = fp16_range_note(record)
    assert "beyond fp16's 65504" in note and record["input"] in note


def test_tight_headroom_is_noted_and_wide_headroom_is_not():
    """The note's threshold on records as the probe writes them (the embedded student's 3.6e4 is such a case)."""
    def record(peak):
        return {"measured": True, "largest_activation": peak, "input": "checkerboard_4px", "limit": FP16_MAX,
                "headroom": FP16_MAX / peak, "within": peak <= FP16_MAX}

    note = fp16_range_note(record(3.6e4))
    assert "3.6e+04" in note and "checkerboard_4px" in note and "only 1.8x below it" in note
    assert fp16_range_note(record(FP16_MAX / 4.5)) is None
    assert "beyond" in fp16_range_note(record(float("inf")))


def test_a_model_that_cannot_be_probed_says_why():
    class NotAGraph:
        layers = ()
        input = None

    record = _measure(NotAGraph(), stride=4)
    assert record["measured"] is False and "cannot be probed" in record["reason"]
    assert fp16_range_note(record) is None
