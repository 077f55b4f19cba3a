"""Bounded channel attention: fresh builds use x * tanh(w); kd-edge bound-attention rewrites trained models of
NAFNet's quadratic x * w form (issue 13: a distilled student gave NaN on a checkerboard)."""
import json
import subprocess

import numpy as np
import pytest

from kd_edge.models.registry import build


@pytest.fixture(scope="module")
def images():
    from kd_edge.compress.calibration import calibration_images

    return calibration_images(None, count=4, size=64)


@pytest.fixture(scope="module")
def linear_tiny():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    return build("edge-tiny", attention="linear")


def _attention_convs(model):
    return [layer for layer in model.layers if layer.name.endswith("_sca_conv")]


def test_fresh_builds_bound_their_attention_and_the_linear_form_still_builds():
    for arch in ("edge-tiny", "edge-s"):
        model = build(arch)
        convs = _attention_convs(model)
        assert convs and all(layer.activation.__name__ == "tanh" for layer in convs), arch
        assert model.kd_edge_config["attention"] == "tanh"
    linear = build("edge-tiny", attention="linear")
    assert all(layer.activation.__name__ == "linear" for layer in _attention_convs(linear))
    from kd_edge.errors import KdEdgeError

    with pytest.raises(KdEdgeError, match="attention must be one of tanh, linear"):
        build("edge-tiny", attention="sigmoid")


def test_bounding_folds_the_scale_exactly_and_keeps_the_outputs(linear_tiny, images):
    from kd_edge.models.attention_bound import bound_attention

    original = linear_tiny.predict(images, verbose=0)
    # with a huge margin tanh(w / c) * c == w to float precision: the folding into the convolutions is exact
    exact, record = bound_attention(linear_tiny, images, margin=1e6)
    np.testing.assert_allclose(exact.predict(images, verbose=0), original, atol=1e-6)
    bounded, record = bound_attention(linear_tiny, images)
    assert record["method"] == "bound-attention" and record["margin"] == 1.5
    assert set(record["layers"]) == {layer.name for layer in _attention_convs(linear_tiny)}
    for name, row in record["layers"].items():
        assert row["scale"] == pytest.approx(max(1.5 * row["max_abs_weight"], 0.5), rel=1e-5)
        assert bounded.get_layer(name).activation.__name__ == "tanh"
    assert bounded.count_params() == linear_tiny.count_params()
    diff = np.abs(bounded.predict(images, verbose=0) - original).max()
    assert 0 < diff < 1e-2, diff  # it changed (tanh is not linear), but little


def test_a_bounded_model_grows_at_most_linearly_where_the_linear_attention_runs_away(linear_tiny, images):
    """Scale the input by 1e4: NAFNet's x * w compounds over the blocks (1e36 or inf inside), the bounded twin and a
    fresh build grow about 1e4-fold, as a chain of at-most-linear layers must."""
    from kd_edge.models.attention_bound import bound_attention, largest_activation

    bounded, _ = bound_attention(linear_tiny, images)

    def growth(model):
        return largest_activation(model, images * 1e4)[0] / largest_activation(model, images)[0]

    assert growth(linear_tiny) > 1e8
    for model in (bounded, build("edge-tiny")):
        assert growth(model) < 3e4


def test_nothing_to_bound_and_wrapped_models_are_refused(linear_tiny, images):
    from kd_edge.errors import KdEdgeError
    from kd_edge.models.attention_bound import bound_attention

    with pytest.raises(KdEdgeError, match="already bounded"):
        bound_attention(build("edge-tiny"), images)
    with pytest.raises(KdEdgeError, match="margin"):
        bound_attention(linear_tiny, images, margin=0.5)
    from kd_edge.models.quantize_support import quantize_model

    wrapped = quantize_model(build("edge-tiny", attention="linear"))
    with pytest.raises(KdEdgeError, match="QAT-wrapped"):
        bound_attention(wrapped, images)


def test_cli_writes_the_bounded_model_with_its_lineage_and_leaves_the_source(tmp_path, kd_edge_exe, linear_tiny):
    from kd_edge.models import load_model, save_model

    src = tmp_path / "linear.keras"
    save_model(linear_tiny, src, arch="edge-tiny", config={"width": 4, "attention": "linear"})
    before = src.read_bytes()
    out = tmp_path / "bounded.keras"
    cmd = [kd_edge_exe, "bound-attention", str(src), "--out", str(out), "--calib-count", "4", "--calib-size", "64"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "bounded 5 channel attention layers" in res.stdout
    assert src.read_bytes() == before
    model, manifest = load_model(out)  # checks the sha256
    step = manifest["lineage"][-1]
    assert step["method"] == "bound-attention" and step["from_sha256"] == json.loads(
        (tmp_path / "linear.keras.json").read_text())["sha256"]
    assert manifest["config"]["attention"] == "tanh"
    assert step["output_change_on_calibration_psnr_db"]["min"] > 40
    assert all(layer.activation.__name__ == "tanh" for layer in _attention_convs(model))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "already exists" in again.stderr
    twice = subprocess.run([kd_edge_exe, "bound-attention", str(out), "--out", str(tmp_path / "b2.keras")],
                           capture_output=True, text=True, timeout=600)
    assert twice.returncode == 1 and "already bounded" in twice.stderr and "bounded.keras" in twice.stderr
    bad = subprocess.run([kd_edge_exe, "bound-attention", str(src), "--out", str(tmp_path / "x.h5")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and ".keras" in bad.stderr
