"""Numerically safe edge models (issue 13): bounded gates and a bounded output for any input in [0, 1]."""
import subprocess

import numpy as np
import pytest

from kd_edge.models.registry import build
from kd_edge.stress_inputs import stress_inputs

LOW, HIGH = -0.25, 1.25


def _raw_range(predict, images):
    outs = [np.asarray(predict(img[None])) for _, img in images]
    return min(float(o.min()) for o in outs), max(float(o.max()) for o in outs)


def test_bounded_gates_and_bounded_residual_compute_what_they_claim(tmp_path):
    import tf_keras as keras

    from kd_edge.models.layers import BoundedResidual, SimpleGate

    rng = np.random.default_rng(0)
    x = rng.uniform(-30, 30, (1, 4, 4, 8)).astype(np.float32)
    a, b = np.clip(x[..., :4], -16, 16), np.clip(x[..., 4:], -16, 16)
    np.testing.assert_allclose(SimpleGate(mode="sigmoid")(x).numpy(), a / (1 + np.exp(-b)), rtol=1e-5, atol=1e-6)
    assert np.abs(SimpleGate(mode="sigmoid")(np.full((1, 1, 1, 2), 1e20, np.float32)).numpy()).max() <= 16
    np.testing.assert_allclose(SimpleGate(mode="tanh", clip=None)(x).numpy(), x[..., :4] * np.tanh(x[..., 4:]),
                               rtol=1e-5, atol=1e-5)
    tanh_gate = SimpleGate(mode="tanh", clip=None)
    big = np.full((1, 1, 1, 2), 1e20, np.float32)
    assert np.abs(tanh_gate(big).numpy()).max() <= 1e20  # linear in a, never quadratic like a * b
    small = np.full((1, 1, 1, 2), 1e-3, np.float32)
    np.testing.assert_allclose(tanh_gate(small).numpy(), 1e-6, rtol=1e-5)  # ~ a * b near zero
    assert SimpleGate.from_config({"name": "g", "clip": 16.0}).mode == "product"  # files from before `mode`
    with pytest.raises(ValueError, match="mode"):
        SimpleGate(mode="relu")
    img = rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    layer = BoundedResidual()
    np.testing.assert_allclose(layer([img, np.zeros_like(img)]).numpy(), img, atol=1e-7)  # z = 0: identity
    for z in (1e6, -1e6, 3.0, -3.0):
        out = layer([img, np.full_like(img, z)]).numpy()
        assert LOW - 1e-6 <= out.min() and out.max() <= HIGH + 1e-6
    np.testing.assert_allclose(layer([img, np.full_like(img, 1e6)]).numpy(), HIGH, atol=1e-6)
    np.testing.assert_allclose(layer([img, np.full_like(img, -1e6)]).numpy(), LOW, atol=1e-6)
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, BoundedResidual()([inp, keras.layers.Conv2D(3, 1)(inp)]))
    model.save(tmp_path / "b.keras")
    again = keras.models.load_model(tmp_path / "b.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(again(img).numpy(), model(img).numpy())


def _blow_up(model, factor=200.0):
    """Scale every kernel so the residual is huge: what an out-of-distribution input does to a trained net."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([w * factor if w.ndim == 4 else w for w in weights])
    return model


def test_bounded_output_holds_on_every_stress_input_where_the_plain_residual_does_not():
    images = stress_inputs(64, stride=4)
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    bounded = _blow_up(build("edge-tiny"))
    plain = build("edge-tiny", output="residual", gate="product")
    plain.set_weights(bounded.get_weights())
    lo, hi = _raw_range(lambda x: bounded(x).numpy(), images)
    assert LOW - 1e-6 <= lo and hi <= HIGH + 1e-6, (lo, hi)  # float32 rounding at the ends
    lo_p, hi_p = _raw_range(lambda x: plain(x).numpy(), images)
    assert lo_p < LOW or hi_p > HIGH, (lo_p, hi_p)  # the check can fail: the old design leaves the range


def test_fresh_edge_tiny_stays_bounded_in_tflite_fp16_and_int8(tmp_path, kd_edge_exe):
    from kd_edge import runtime

    model = build("edge-tiny")
    model.save(tmp_path / "tiny.keras")
    proc = subprocess.run([kd_edge_exe, "convert", str(tmp_path / "tiny.keras"), "-t", "tflite-fp16", "-t",
                           "tflite-int8", "--input-size", "64", "--out", str(tmp_path / "art")],
                          capture_output=True, text=True, timeout=600)
    images = stress_inputs(64, stride=4)
    arts = sorted((tmp_path / "art").glob("*.tflite"))
    assert {a.name.split(".")[-2] for a in arts} >= {"tflite-fp16"}, proc.stdout + proc.stderr
    for art in arts:
        lo, hi = _raw_range(runtime.load(art).predict, images)
        # int8: the output scale adds at most a step or two of quantisation error at the ends of the range
        slack = 0.02 if "int8" in art.name else 1e-3
        assert LOW - slack <= lo and hi <= HIGH + slack, (art.name, lo, hi)
