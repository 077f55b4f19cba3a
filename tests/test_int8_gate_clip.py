"""The bounded (tanh, sigmoid) gates' input clip: fresh builds have none, ``with_gate_clip`` rewrites a model's gates
without touching a weight (plain and QAT models), and the clip's int8 MINIMUM/MAXIMUM, which XNNPACK does not
delegate, cut the int8 graph into more delegate partitions (benchmarks/int8_gate_clip.py). Real TF, tfmot and LiteRT."""
import json

import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.benchmarks.int8_gate_clip import delegate_partitions
from kd_edge.converters import convert
from kd_edge.models.gate_clip import with_gate_clip

SIZE = 64


def _gate_clips(model):
    return [layer.clip for layer in model.layers if type(layer).__name__ == "SimpleGate"]


def test_fresh_bounded_gate_builds_have_no_gate_clip_and_product_builds_keep_it():
    from kd_edge.models import build

    assert set(_gate_clips(build("edge-tiny"))) == {None}
    assert set(_gate_clips(build("edge-tiny", gate="sigmoid"))) == {None}
    assert set(_gate_clips(build("edge-tiny", gate="product"))) == {16.0}


def test_the_clip_changes_no_output_and_only_the_clipped_int8_graph_is_split(tmp_path):
    import tf_keras

    from kd_edge.models import build, save_model
    from kd_edge.stress_inputs import stress_inputs

    tf_keras.utils.set_random_seed(0)
    model = build("edge-tiny")  # the default tanh gates
    clipped, gates = with_gate_clip(model, 16.0)
    assert gates == len(_gate_clips(model)) > 0 and set(_gate_clips(clipped)) == {16.0}
    images = np.stack([im for _, im in stress_inputs(SIZE, stride=4)])
    np.testing.assert_allclose(clipped.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)

    save_model(clipped, tmp_path / "clipped.keras", arch="edge-tiny", config=model.kd_edge_config)
    save_model(model, tmp_path / "unclipped.keras", arch="edge-tiny", config=model.kd_edge_config)
    (with_art,) = convert(tmp_path / "clipped.keras", ["tflite-int8"], tmp_path / "a", input_size=SIZE)
    (without_art,) = convert(tmp_path / "unclipped.keras", ["tflite-int8"], tmp_path / "b", input_size=SIZE)
    with_clip, without = delegate_partitions(with_art.artifact), delegate_partitions(without_art.artifact)
    assert any("rewrite_gate_clip" in note for note in with_art.manifest["notes"])  # the convert output says so
    assert not any("rewrite_gate_clip" in note for note in without_art.manifest.get("notes") or [])
    assert with_clip.get("MINIMUM", 0) == with_clip.get("MAXIMUM", 0) == gates
    assert "MINIMUM" not in without and "MAXIMUM" not in without
    assert without["DELEGATE"] < with_clip["DELEGATE"], (without, with_clip)
    # XNNPACK takes the int8 tanh gates and the bounded attention's tanh: the graph stays in the 2 partitions the
    # sigmoid gates had (measured)
    attention = sum(layer.name.endswith("_sca_conv") for layer in model.layers)
    assert without["DELEGATE"] <= 2 and without["TANH"] == gates + attention + 1, without  # + BoundedResidual's


def test_with_gate_clip_rewrites_a_qat_model_and_keeps_its_quantizers():
    import tf_keras

    from kd_edge.models import build
    from kd_edge.models.quantize_support import quantize_model

    tf_keras.utils.set_random_seed(1)
    qat = quantize_model(with_gate_clip(build("edge-tiny"), 16.0)[0])
    rng = np.random.default_rng(0)
    images = rng.random((2, SIZE, SIZE, 3), dtype=np.float32)
    qat(images, training=True)  # moves the activation ranges off their initial values
    twin, gates = with_gate_clip(qat, None)
    assert gates > 0 and '"clip": 16.0' in json.dumps(qat.get_config())
    assert '"clip": 16.0' not in json.dumps(twin.get_config())
    assert len(twin.get_weights()) == len(qat.get_weights())
    for a, b in zip(twin.get_weights(), qat.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(twin.predict(images, verbose=0), qat.predict(images, verbose=0), atol=1e-6)


def test_rewrite_gate_clip_leaves_the_source_and_records_lineage(tmp_path):
    import pytest

    from kd_edge.errors import InputFileError
    from kd_edge.models import build, load_model, save_model
    from kd_edge.models.gate_clip import rewrite_gate_clip
    from kd_edge.models.saving import sha256_file

    src = tmp_path / "clipped.keras"
    model = with_gate_clip(build("edge-tiny"), 16.0)[0]
    save_model(model, src, arch="edge-tiny", config=model.kd_edge_config, lineage={"method": "test"})
    before = sha256_file(src)
    manifest = rewrite_gate_clip(src, tmp_path / "free.keras", None)
    assert sha256_file(src) == before
    assert manifest["lineage"][0] == {"method": "test"}
    assert manifest["lineage"][-1] == {"method": "set-gate-clip", "clip": None, "gates": len(_gate_clips(model)),
                                     "from_sha256": before}
    twin, loaded = load_model(tmp_path / "free.keras")  # checks the new sha256
    assert loaded["sha256"] == manifest["sha256"] != before and set(_gate_clips(twin)) == {None}
    for a, b in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(InputFileError, match="is the source model"):
        rewrite_gate_clip(src, src, None)
    plain = tmp_path / "seed.keras"
    save_model(_gateless(), plain)
    with pytest.raises(InputFileError, match="no SimpleGate"):
        rewrite_gate_clip(plain, tmp_path / "x.keras", None)
    assert not (tmp_path / "x.keras").exists()


def _gateless():
    import tf_keras

    inputs = tf_keras.Input((None, None, 3))
    return tf_keras.Model(inputs, tf_keras.layers.Conv2D(3, 3, padding="same")(inputs))
