"""Real tiny artifacts for the bench tests: a kd-edge edge-tiny model saved with its manifest, converted to
TFLite fp32 / full-int8 (fixed 32x32) and ONNX with TensorFlow's own converters, each with a manifest carrying
the fields the converters write (target, precision, params, macs_256, input_size, sha256)."""
import hashlib
import json
from pathlib import Path


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_artifacts(out_dir, size=32):
    import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
    import numpy as np
    import tensorflow as tf

    from kd_edge.models import build, count_macs, save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build("edge-tiny")
    keras_path = out / "tiny.keras"
    manifest = save_model(model, keras_path)
    params, macs_256 = manifest["params"], manifest.get("macs_256") or count_macs(model, 256, 256)
    fixed = build("edge-tiny", input_size=size)
    fixed.set_weights(model.get_weights())

    def write(path, target, precision, input_size):
        (path.parent / (path.name + ".json")).write_text(json.dumps({
            "target": target, "precision": precision, "params": params, "macs_256": macs_256,
            "input_size": input_size, "sha256": _sha(path),
            "source_model": {"path": str(keras_path), "file": keras_path.name, "arch": "edge-tiny"}}))
        return path

    arts = {"keras": keras_path}
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    p = out / "tiny.tflite-fp32.tflite"
    p.write_bytes(conv.convert())
    arts["fp32"] = write(p, "tflite-fp32", "fp32", [size, size])

    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.random((1, size, size, 3), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    p = out / "tiny.tflite-int8.tflite"
    p.write_bytes(conv.convert())
    arts["int8"] = write(p, "tflite-int8", "int8", [size, size])

    import tf2onnx

    spec = (tf.TensorSpec((None, None, None, 3), tf.float32, name="input"),)
    p = out / "tiny.onnx-fp32.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(p))
    arts["onnx"] = write(p, "onnx-fp32", "fp32", "dynamic")
    return arts
