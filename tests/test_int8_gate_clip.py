"""benchmarks/int8_gate_clip.py: the gates' input clip lowers to int8 MINIMUM/MAXIMUM, which XNNPACK does not
delegate; the clip-free twin keeps the same Keras outputs and runs as fewer delegate partitions. Real TF and LiteRT."""
import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.benchmarks.int8_gate_clip import delegate_partitions, unclipped_twin
from kd_edge.converters import convert

SIZE = 64


def test_the_clip_free_twin_matches_and_its_int8_graph_has_fewer_xnnpack_partitions(tmp_path):
    import tf_keras

    from kd_edge.models import build, save_model
    from kd_edge.stress_inputs import stress_inputs

    tf_keras.utils.set_random_seed(0)
    model = build("edge-tiny", gate="sigmoid")
    twin, gates = unclipped_twin(model)
    assert gates > 0
    assert all(layer.clip is None for layer in twin.layers if type(layer).__name__ == "SimpleGate")
    images = np.stack([im for _, im in stress_inputs(SIZE, stride=4)])
    np.testing.assert_allclose(twin.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)

    save_model(model, tmp_path / "clipped.keras", arch="edge-tiny", config=model.kd_edge_config)
    save_model(twin, tmp_path / "unclipped.keras", arch="edge-tiny", config=model.kd_edge_config)
    (clipped,) = convert(tmp_path / "clipped.keras", ["tflite-int8"], tmp_path / "a", input_size=SIZE)
    (unclipped,) = convert(tmp_path / "unclipped.keras", ["tflite-int8"], tmp_path / "b", input_size=SIZE)
    with_clip, without = delegate_partitions(clipped.artifact), delegate_partitions(unclipped.artifact)
    assert with_clip.get("MINIMUM", 0) == with_clip.get("MAXIMUM", 0) == gates
    assert "MINIMUM" not in without and "MAXIMUM" not in without
    assert without["DELEGATE"] < with_clip["DELEGATE"], (without, with_clip)
