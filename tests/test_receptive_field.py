"""benchmarks/receptive_field.py: the effective receptive field, measured on real tf_keras models with known reach."""
import json

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tf_keras as keras
from kd_edge.benchmarks import receptive_field
from kd_edge.models import build, save_model


def _conv_model(kernel, *, global_branch=False):
    """x -> a box filter of ``kernel`` px (+ the image mean, broadcast, when ``global_branch``)."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, kernel, padding="same", use_bias=False, kernel_initializer="ones")
    y = conv(inputs)
    if global_branch:
        mean = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
        y = keras.layers.Add()([y, keras.layers.Conv2D(3, 1, kernel_initializer="ones", use_bias=False)(mean)])
    return keras.Model(inputs, y)


def _probe(side=64, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (side, side, 3)).astype(np.float32)


@pytest.mark.parametrize("kernel", [3, 9, 15])
def test_a_box_filter_reaches_exactly_its_half_width(kernel):
    result = receptive_field.measure(_conv_model(kernel), [_probe()])
    m = result["median"]
    assert m["global_share"] == 0.0
    assert m["r99"] == kernel // 2  # nothing beyond the kernel, all of it within
    assert m["r50"] <= m["r90"] <= m["r99"]
    assert m["r50"] >= kernel // 4  # a box spreads its weight: half of it is not at the centre


def test_global_pooling_shows_as_a_global_share_not_as_reach():
    plain = receptive_field.measure(_conv_model(3), [_probe()])["median"]
    pooled = receptive_field.measure(_conv_model(3, global_branch=True), [_probe()])["median"]
    # per input pixel (summed over channels and the 3 outputs) the box gives 9 on 9 pixels (81 in all), the mean
    # 9/4096 on each of 4096 pixels (9 in all): a global share of 9 / 90
    assert pooled["global_share"] == pytest.approx(0.1, abs=0.002) and plain["global_share"] == 0.0
    assert pooled["r99"] == 1  # the local part is still the 3x3 box


def test_split_gradient_on_a_map_with_known_parts():
    side = 128
    grad = np.full((side, side), 1e-3)
    grad[64 - 5:64 + 6, 64 - 5:64 + 6] += 0.1  # radius 5 around the centre (side // 2)
    out = receptive_field.split_gradient(grad)
    assert out["r99"] == 5 and out["r50"] <= 4
    assert out["global_share"] == pytest.approx(1e-3 * side * side / grad.sum(), rel=1e-3)
    with pytest.raises(ValueError):
        receptive_field.split_gradient(np.zeros((16, 16)))
    flat = receptive_field.split_gradient(np.full((32, 32), 0.5))  # only global: no local part to measure
    assert flat == {"global_share": 1.0, "r50": None, "r90": None, "r99": None}


def test_cli_writes_json_for_a_saved_model_and_refuses_artifacts(tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    save_model(build("edge-tiny"), path)
    out = tmp_path / "rf.json"
    assert receptive_field.main([str(path), "--names", "tiny", "--size", "32", "--images", "2",
                                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == receptive_field.FORMAT and doc["host"]["isa_flags"]
    row = doc["models"][0]
    assert row["name"] == "tiny" and len(row["probes"]) == 2 and row["params"] > 0
    # edge-tiny: 2 levels (stride 4) of 3x3 depthwise convs, so its reach is bounded well inside a 32-px probe
    assert 0 <= row["median"]["r99"] < 16
    # edge-tiny takes multiples of 4: a probe of 30 px is refused in one line naming the model and the sizes to use
    assert receptive_field.main([str(path), "--size", "30", "--images", "1"]) == 1
    err = capsys.readouterr().err
    assert "tiny.keras: --size 30x30" in err and "stride 4" in err and "32x32" in err
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(b"not read")
    assert receptive_field.main([str(artifact)]) == 1
    err = capsys.readouterr().err
    assert "model.tflite" in err and "gradients" in err


def test_blurred_probes_are_blurred_and_bad_sizes_refused(capsys):
    sharp = [_probe(32, seed=s) for s in (1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(receptive_field.blurred_probes(sharp, 0), sharp))
    blurred = receptive_field.blurred_probes(sharp, 9, seed=3)
    again = receptive_field.blurred_probes(sharp, 9, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(blurred, again))
    # a 9-px shake kernel averages neighbours: uniform noise loses most of its variance
    assert all(b.std() < 0.6 * s.std() and b.shape == s.shape for b, s in zip(blurred, sharp))
    assert receptive_field.main(["--blur", "8"]) == 2
    assert "--blur" in capsys.readouterr().err
