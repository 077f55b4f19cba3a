"""Model zoo: architectures, saving, complexity, custom layers and the `kd-edge models` command."""
import json
import subprocess

import numpy as np
import pytest

import kd_edge  # noqa: F401  (before TensorFlow)
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.models import (
    architectures,
    build,
    count_macs,
    count_params,
    feature_layer_names,
    load_model,
    model_stride,
    save_model,
)

EDGE = ["edge-tiny", "edge-s", "edge-m", "edge-l"]


def _rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("name,expected", [("seed-teacher", 21.4e6), ("seed-student", 15.7e6)])
def test_seed_parameter_counts_match_the_report(name, expected):
    model = build(name)
    params = count_params(model)
    assert abs(params - expected) / expected < 0.02, (name, params)
    assert model_stride(model) == architectures()[name]["stride"] == 16
    assert feature_layer_names(model)[-1] == "bottleneck_out"


def test_architecture_table_is_complete():
    specs = architectures()
    assert set(EDGE + ["seed-teacher", "seed-student"]) <= set(specs)
    for name, spec in specs.items():
        assert spec["description"] and spec["stride"] in (4, 8, 16, 32)
        assert spec["family"] in ("edge", "seed")


def test_edge_sizes_are_in_their_bands():
    params = {name: count_params(build(name)) for name in EDGE}
    assert 1_000 <= params["edge-tiny"] <= 10_000
    assert 0.2e6 <= params["edge-s"] <= 0.4e6
    assert 1e6 <= params["edge-m"] <= 2e6
    assert 3e6 <= params["edge-l"] <= 5e6


@pytest.mark.parametrize("name", EDGE)
def test_edge_model_builds_runs_any_multiple_and_round_trips(tmp_path, name):
    model = build(name)
    stride = model_stride(model)
    assert stride == architectures()[name]["stride"]
    banned = {"Lambda", "Conv2DTranspose", "UpSampling2D", "LayerNormalization"}
    assert not banned & {type(layer).__name__ for layer in model.layers}
    # fully convolutional: two different sizes, both multiples of the stride, non-square
    for h, w in ((stride * 2, stride * 3), (32, 48)):
        x = _rand((1, h, w, 3))
        y = model(x, training=False).numpy()
        assert y.shape == x.shape and np.isfinite(y).all()
    # global residual: a zoo model starts near the identity but is not the identity
    x = _rand((2, 32, 48, 3), seed=1)
    y = model(x, training=False).numpy()
    assert 0 < np.abs(y - x).mean() < 0.5

    path = tmp_path / f"{name}.keras"
    manifest = save_model(model, path, lineage={"method": "test"}, extra={"note": "round trip"})
    on_disk = json.loads((tmp_path / f"{name}.keras.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["format"] == "keras" and on_disk["arch"] == name and on_disk["stride"] == stride
    assert on_disk["params"] == count_params(model) and on_disk["macs_256"] == count_macs(model, 256, 256)
    assert on_disk["lineage"] == [{"method": "test"}] and on_disk["note"] == "round trip"
    assert on_disk["config"]["enc_blocks"] == architectures()[name]["defaults"]["enc_blocks"]
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"

    loaded, manifest2 = load_model(path)
    assert manifest2["sha256"] == manifest["sha256"]
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), y)
    # the recorded config rebuilds the same architecture
    rebuilt = build(on_disk["arch"], **{k: v for k, v in on_disk["config"].items() if k != "input_size"})
    rebuilt.set_weights(loaded.get_weights())
    np.testing.assert_allclose(rebuilt(x, training=False).numpy(), y, atol=1e-6)


def test_load_model_refuses_bad_files(tmp_path):
    model = build("edge-tiny")
    path = tmp_path / "m.keras"
    save_model(model, path)
    with pytest.raises(InputFileError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="sha256"):
        load_model(path)
    with pytest.raises(InputFileError, match="cannot load Keras model"):
        load_model(path, verify=False)
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model")
    with pytest.raises(InputFileError, match="garbage.keras"):
        load_model(garbage)
    with pytest.raises(KdEdgeError, match=r"\.keras"):
        save_model(model, tmp_path / "m.h5")


def test_bad_input_size_and_options_give_clear_errors():
    with pytest.raises(KdEdgeError, match=r"100x100 is not a multiple of the model's stride 8.*104x104"):
        build("edge-s", input_size=100)
    with pytest.raises(KdEdgeError, match="not a multiple of the model's stride 4"):
        build("edge-tiny", input_size=(32, 30))
    with pytest.raises(KdEdgeError, match="unknown architecture"):
        build("edge-xxl")
    with pytest.raises(KdEdgeError, match="unknown option.*widht"):
        build("edge-s", widht=8)
    model = build("edge-tiny", input_size=(32, 64))
    assert model.input_shape == (None, 32, 64, 3)
    assert build("edge-tiny", width=6).count_params() > build("edge-tiny").count_params()


def test_depthwise_kernel_option_sets_every_block_and_rejects_even_sizes(tmp_path):
    import tf_keras as keras

    def dw_sizes(model):
        return {layer.kernel_size for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)}

    assert dw_sizes(build("edge-tiny")) == {(3, 3)}  # the default: every earlier model rebuilds unchanged
    wide = build("edge-tiny", dw_kernel=7)
    assert dw_sizes(wide) == {(7, 7)}
    assert wide.kd_edge_config["dw_kernel"] == 7
    path = tmp_path / "wide.keras"
    save_model(wide, path)
    assert dw_sizes(load_model(path)[0]) == {(7, 7)}
    with pytest.raises(KdEdgeError, match="edge-tiny: bad configuration: dw_kernel must be an odd number"):
        build("edge-tiny", dw_kernel=4)


def test_count_macs_matches_layer_shapes():
    import tf_keras as keras

    def from_layers(model):
        expected = 0
        for layer in model.layers:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                _, h, w, c = layer.output_shape
                kh, kw = layer.kernel_size
                expected += h * w * c * kh * kw
            elif isinstance(layer, keras.layers.Conv2D):
                _, h, w, c = layer.output_shape
                kh, kw = layer.kernel_size
                expected += h * w * c * kh * kw * layer.input_shape[-1]
        return expected

    for name, small in (("edge-tiny", {}), ("seed-student", {"base_width": 8})):
        dynamic = build(name, **small)
        fixed = build(name, input_size=64, **small)
        expected = from_layers(fixed)
        assert expected > 0
        assert count_macs(dynamic, 64, 64) == expected
        assert count_macs(fixed, 64, 64) == expected
        # another size: the fixed-size model is re-instantiated at that size, exactly
        other = from_layers(build(name, input_size=(128, 64), **small))
        assert count_macs(dynamic, 128, 64) == count_macs(fixed, 128, 64) == other
        assert 1.9 * expected < count_macs(dynamic, 128, 64) <= 2 * expected


def test_feature_layers_are_predictable_and_shrink():
    import tf_keras as keras

    model = build("edge-s")
    names = feature_layer_names(model)
    assert names == ["enc0_out", "enc1_out", "enc2_out", "bottleneck_out"]
    assert feature_layer_names(model, decoder=True)[-3:] == ["dec2_out", "dec1_out", "dec0_out"]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe(_rand((1, 64, 64, 3)))
    assert [o.shape[1] for o in outs] == [64, 32, 16, 8]
    assert [o.shape[-1] for o in outs] == [16, 32, 64, 128]


def test_custom_layers_match_tensorflow_and_reload_in_safe_mode(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    from kd_edge.models.layers import DepthToSpace, SimpleGate

    x = _rand((1, 4, 6, 8))
    np.testing.assert_array_equal(SimpleGate()(x).numpy(), x[..., :4] * x[..., 4:])
    np.testing.assert_array_equal(DepthToSpace(2)(x).numpy(), tf.nn.depth_to_space(x, 2).numpy())
    inp = keras.Input((None, None, 8))
    model = keras.Model(inp, DepthToSpace(2)(SimpleGate()(keras.layers.Conv2D(16, 1)(inp))))
    model.save(tmp_path / "c.keras")
    again = keras.models.load_model(tmp_path / "c.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(again(x).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match="even channel count"):
        SimpleGate()(keras.Input((None, None, 3)))


def test_models_command_through_the_console_script(tmp_path, kd_edge_exe):
    out = tmp_path / "models.json"
    proc = subprocess.run([kd_edge_exe, "models", "edge-tiny", "edge-s", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "edge-tiny" in proc.stdout and "GMACs@256" in proc.stdout
    table = json.loads(out.read_text())
    rows = {row["name"]: row for row in table["models"]}
    assert rows["edge-s"]["params"] == count_params(build("edge-s"))
    assert rows["edge-s"]["macs"] == count_macs(build("edge-s"), 256, 256)
    assert rows["edge-s"]["stride"] == 8 and rows["edge-tiny"]["stride"] == 4
    bad = subprocess.run([kd_edge_exe, "models", "edge-xxl"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown architecture" in bad.stderr


def test_simple_gate_clip_bounds_runaway_inputs_and_leaves_normal_ones_alone():
    from kd_edge.models.layers import DEFAULT_GATE_CLIP, SimpleGate

    rng = np.random.default_rng(0)
    normal = rng.uniform(-4.0, 4.0, (2, 8, 8, 6)).astype(np.float32)
    a, b = normal[..., :3], normal[..., 3:]
    np.testing.assert_array_equal(SimpleGate()(normal).numpy(), a * b)
    runaway = np.full((1, 2, 2, 4), 1e20, np.float32)  # what chained gates reached on a rare input
    assert np.all(SimpleGate()(runaway).numpy() == DEFAULT_GATE_CLIP**2)
    unclipped = SimpleGate.from_config(SimpleGate(clip=None).get_config())
    assert unclipped.clip is None and np.isinf(unclipped(runaway).numpy()).all()
