"""Every edge model converts to TFLite built-ins and runs in LiteRT; QAT and pruning accept the zoo."""
import numpy as np
import pytest

import kd_edge  # noqa: F401  (before TensorFlow)
from kd_edge.models import build, load_model, model_stride, save_model

EDGE = ["edge-tiny", "edge-s", "edge-m", "edge-l"]
BUILTIN_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "MEAN", "SPLIT", "DEPTH_TO_SPACE", "QUANTIZE",
               "MINIMUM", "MAXIMUM", "RELU_N1_TO_1", "RELU6", "LOGISTIC", "TANH", "RELU", "SUB",
               "DEQUANTIZE", "DELEGATE", "SPLIT_V", "STRIDED_SLICE", "SLICE"}


def _rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _litert_run(interpreter, x):
    inp = interpreter.get_input_details()[0]
    if tuple(inp["shape"]) != x.shape:
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _ops(interpreter):
    return {op["op_name"] for op in interpreter._get_ops_details()}


@pytest.mark.slow
@pytest.mark.parametrize("name", EDGE)
def test_edge_model_converts_to_tflite_builtins_and_runs_at_two_sizes(name):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    dynamic = build(name)
    stride = model_stride(dynamic)
    size = max(32, stride * 2)
    fixed = build(name, input_size=size)
    fixed.set_weights(dynamic.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # built-ins only, no Flex
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    assert _ops(interpreter) <= BUILTIN_OPS, _ops(interpreter) - BUILTIN_OPS
    # the converted size, then a different non-square size through a dynamic resize
    for shape in ((1, size, size, 3), (1, size + stride, 2 * size, 3)):
        x = _rand(shape)
        y = _litert_run(interpreter, x)
        expected = dynamic(x, training=False).numpy()
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, atol=2e-4)


@pytest.mark.slow
def test_qat_on_edge_tiny_converts_to_full_int8(tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from kd_edge.models.quantize_support import annotate_for_qat, qat_plan, quantize_scope
    import tensorflow_model_optimization as tfmot

    import tf_keras as keras

    keras.utils.set_random_seed(0)  # the same random weights whatever ran before (the bound below is per model)
    model = build("edge-tiny", input_size=32)
    assert all(row[2] for row in qat_plan(model)), [row for row in qat_plan(model) if not row[2]]
    with quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(annotate_for_qat(model))
    wrapped = {type(layer).__name__ for layer in qat.layers}
    assert "QuantizeWrapperV2" in wrapped and "QuantizeLayer" in wrapped
    calib = _rand((8, 32, 32, 3), seed=3)
    for _ in range(3):  # a few training-mode passes calibrate the activation ranges
        qat(calib, training=True)
    x = _rand((1, 32, 32, 3), seed=4)
    float_out = model(x, training=False).numpy()
    qat_out = qat(x, training=False).numpy()
    assert np.abs(qat_out - float_out).max() < 0.15

    # save/load keeps the QAT model (HDF5 layout inside the .keras name)
    manifest = save_model(qat, tmp_path / "qat.keras", arch="edge-tiny", config=model.kd_edge_config)
    assert manifest["layout"] == "h5"
    reloaded, _ = load_model(tmp_path / "qat.keras")
    np.testing.assert_allclose(reloaded(x, training=False).numpy(), qat_out, atol=1e-6)

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    int8_tensors = [d for d in interpreter.get_tensor_details() if d["dtype"] == np.int8]
    assert len(int8_tensors) > 20  # weights and activations are integer, only the I/O is float
    y = _litert_run(interpreter, x)
    assert np.abs(y - float_out).max() < 0.15
    # the int8 model matches its fake-quant twin to two steps of its own last int8 tensor (the one the final
    # DEQUANTIZE reads): a random edge-tiny's calibrated output range is wide, so that step is coarse
    out_index = interpreter.get_output_details()[0]["index"]
    last = next(op for op in interpreter._get_ops_details() if out_index in op["outputs"])
    assert last["op_name"] == "DEQUANTIZE", last
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    scale = details[last["inputs"][0]]["quantization"][0]
    assert 0 < scale < 0.05, scale
    assert np.abs(y - qat_out).max() <= 2 * scale + 1e-6, (np.abs(y - qat_out).max(), scale)


@pytest.mark.parametrize("name", EDGE)
def test_every_edge_model_is_qat_ready_and_prunable(name):
    import tensorflow_model_optimization as tfmot

    from kd_edge.models.quantize_support import prunable_layer_names, qat_plan

    model = build(name)
    plan = qat_plan(model)
    assert len(plan) == len(model.layers) and all(row[2] for row in plan)
    assert {row[1] for row in plan if "kd_edge" in row[3]} == {"SimpleGate", "DepthToSpace", "Multiply",
                                                                   "BoundedResidual"}
    prunable = prunable_layer_names(model)
    assert prunable and all(model.get_layer(n).weights for n in prunable)
    if name in ("edge-tiny", "edge-s"):  # wrapping the whole model (custom layers are PrunableLayers)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
        x = _rand((1, 32, 32, 3))
        assert pruned(x, training=False).shape == x.shape


@pytest.mark.slow
def test_pruned_model_sparsifies_saves_and_strips(tmp_path):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from kd_edge.models.quantize_support import prune_model

    model = build("edge-tiny")
    pruned = prune_model(model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))
    assert {type(layer).__name__ for layer in pruned.layers} >= {"PruneLowMagnitude", "SimpleGate"}
    pruned.compile(keras.optimizers.Adam(1e-3), "mae")
    x = _rand((4, 32, 32, 3))
    pruned.fit(x, x, epochs=1, batch_size=2, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    save_model(pruned, tmp_path / "pruned.keras", arch="edge-tiny")
    reloaded, manifest = load_model(tmp_path / "pruned.keras")
    assert manifest["layout"] == "h5"
    np.testing.assert_allclose(reloaded(x).numpy(), pruned(x).numpy(), atol=1e-6)
    stripped = tfmot.sparsity.keras.strip_pruning(reloaded)
    kernel = stripped.get_layer("enc1_b0_pw1").kernel.numpy()
    assert 0.45 <= (kernel == 0).mean() <= 0.55
