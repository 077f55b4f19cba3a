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


def converted_artifacts(out_dir, size=32, targets=("tflite-fp32", "tflite-int8", "onnx-int8")):
    """Artifacts made by `kd-edge convert` itself (manifest + .parity.npz probe), plus ``mismatch``: a real
    tflite-fp32 whose probe holds the reference of a differently initialised model (its manifest names that
    probe's hash), i.e. an artifact whose numerics do not match its reference where it runs."""
    import json
    import shutil

    import kd_edge  # noqa: F401
    import tf_keras

    from kd_edge.converters import convert
    from kd_edge.converters.parity import probe_file_path
    from kd_edge.models import build, save_model

    out = Path(out_dir)
    arts = {}
    for seed, name in ((0, "tiny"), (1, "other")):
        tf_keras.utils.set_random_seed(seed)
        save_model(build("edge-tiny"), out / "models" / f"{name}.keras", arch="edge-tiny")
    for r in convert(out / "models" / "tiny.keras", list(targets), out / "good", input_size=size, calib_count=16):
        arts[r.target] = r.artifact
    (other,) = convert(out / "models" / "other.keras", ["tflite-fp32"], out / "other", input_size=size)
    bad = out / "mismatch" / "tiny.tflite-fp32.tflite"
    bad.parent.mkdir()
    shutil.copy(arts["tflite-fp32"], bad)
    shutil.copy(probe_file_path(other.artifact), probe_file_path(bad))
    manifest = json.loads((arts["tflite-fp32"].parent / (bad.name + ".json")).read_text())
    manifest["parity"]["target_probe"] = other.manifest["parity"]["target_probe"]
    (bad.parent / (bad.name + ".json")).write_text(json.dumps(manifest))
    arts["mismatch"] = bad
    return arts


def tampered_copy(artifact, folder):
    """A copy of ``artifact`` with its manifest and probe, one byte of the artifact changed."""
    import shutil

    from kd_edge.converters.parity import probe_file_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    artifact = Path(artifact)
    copy = folder / artifact.name
    for src in (artifact, artifact.with_name(artifact.name + ".json"), probe_file_path(artifact)):
        shutil.copy(src, folder / src.name)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    return copy
