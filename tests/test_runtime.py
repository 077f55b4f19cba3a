"""kd_edge.runtime.load: every format through its real runtime, sha256 verification, int8 I/O, batching."""
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import runtime
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.metrics import psnr

SIZE = 32


def build_tiny_model(path):
    """The zoo's edge-tiny when it exists, else a stand-in with Conv2D/DepthwiseConv2D/Add (stride 2)."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)  # fixed weights: parity margins do not depend on the run
    try:
        from kd_edge.models import build, save_model

        model = build("edge-tiny")
        save_model(model, path, arch="edge-tiny", config={})
        return path
    except ImportError:
        pass
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    y = keras.layers.UpSampling2D(2)(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    out = keras.layers.Add()([inp, x])
    keras.Model(inp, out).save(path)
    return path


def images(n, h=SIZE, w=SIZE, seed=0):
    """Blurred blocky images in [0, 1] (what a deblurring model is calibrated for, unlike white noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    sharp = np.kron(rng.uniform(0.1, 0.9, (n, h // 4, w // 4, 3)), np.ones((1, 4, 4, 1))).astype(np.float32)
    return np.clip(np.stack([cv2.GaussianBlur(img, (0, 0), 1.5) for img in sharp]), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from kd_edge.converters import convert

    root = tmp_path_factory.mktemp("runtime")
    model_path = build_tiny_model(root / "tiny.keras")
    out = root / "out"
    results = convert(model_path, ["tflite-fp32", "onnx-fp32", "coreml-fp32"], out, input_size=SIZE)
    # int8 at 64 px: at 32 px the 4-px-deep features of edge-tiny are too small to calibrate reliably
    int8 = convert(model_path, ["tflite-int8"], out / "io8", input_size=2 * SIZE, int8_io=True)
    paths = {r.target: r.artifact for r in results + int8}
    paths["keras"] = model_path
    return paths


@pytest.fixture(scope="module")
def keras_model(artifacts):
    import tf_keras as keras

    return keras.models.load_model(artifacts["keras"], compile=False)


def test_keras_runtime_matches_the_model(artifacts, keras_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt = runtime.load(artifacts["keras"])
    x = images(3)
    assert rt.kind == "keras" and rt.max_batch is None and rt.input_size is None
    np.testing.assert_allclose(rt.predict(x), keras_model(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("target", ["tflite-fp32", "onnx-fp32"])
def test_verified_artifact_loads_and_matches_keras(artifacts, keras_model, target):
    rt = runtime.load(artifacts[target], threads=1)
    assert rt.verified is True
    assert rt.kind == target.split("-")[0]
    assert rt.input_size == (SIZE, SIZE) and rt.max_batch == 1
    assert rt.manifest["target"] == target
    x = images(3, seed=1)  # batch 3 on a batch-1 artifact: looped image by image
    y = rt.predict(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.min(psnr(y, keras_model(x).numpy())) > 60
    single = rt.predict(x[1])  # one HxWx3 image in, one out
    np.testing.assert_allclose(single, y[1], atol=1e-6)


def test_int8_io_is_quantised_for_the_caller(artifacts, keras_model):
    rt = runtime.load(artifacts["tflite-int8"])
    detail = rt.interpreter.get_input_details()[0]
    assert np.dtype(detail["dtype"]) == np.int8
    q = rt.manifest["io_quantization"]
    assert any(v["dtype"] == "int8" and v["scale"] > 0 for v in q.values())
    x = images(2, 2 * SIZE, 2 * SIZE, seed=2)
    y = rt.predict(x)
    assert y.dtype == np.float32
    assert np.min(psnr(y, keras_model(x).numpy())) > 30


def test_wrong_size_on_fixed_artifact_is_a_clear_error(artifacts):
    rt = runtime.load(artifacts["tflite-fp32"])
    with pytest.raises(KdEdgeError, match="fixed input size 32x32"):
        rt.predict(images(1, 48, 48))


@pytest.mark.parametrize("target", ["tflite-fp32", "onnx-fp32"])
def test_tampered_artifact_fails_to_load(artifacts, tmp_path, target):
    src = artifacts[target]
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    shutil.copy(src.with_name(src.name + ".json"), copy.with_name(copy.name + ".json"))
    runtime.load(copy)  # the untouched copy verifies
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="sha256 mismatch") as info:
        runtime.load(copy)
    assert str(copy) in str(info.value)


def test_tampered_mlpackage_fails_to_load(artifacts, tmp_path):
    src = artifacts["coreml-fp32"]
    copy = tmp_path / src.name
    shutil.copytree(src, copy)
    shutil.copy(src.with_name(src.name + ".json"), copy.with_name(copy.name + ".json"))
    weights = max((p for p in copy.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(InputFileError, match="sha256 mismatch"):
        runtime.load(copy)


def test_artifact_without_manifest_loads_unverified(artifacts, tmp_path):
    copy = tmp_path / "bare.tflite"
    shutil.copy(artifacts["tflite-fp32"], copy)
    with pytest.warns(runtime.UnverifiedArtifactWarning, match="no manifest"):
        rt = runtime.load(copy)
    assert rt.verified is False
    assert rt.predict(images(1)).shape == (1, SIZE, SIZE, 3)


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_loads_but_says_it_needs_macos(artifacts):
    rt = runtime.load(artifacts["coreml-fp32"])
    assert rt.kind == "coreml" and rt.verified and rt.input_size == (SIZE, SIZE)
    with pytest.raises(KdEdgeError, match="Core ML execution needs macOS"):
        rt.predict(images(1))


def test_unknown_format_and_missing_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"x")
    with pytest.raises(InputFileError, match="unknown model format"):
        runtime.load(bad)
    with pytest.raises(InputFileError, match="no such file"):
        runtime.load(tmp_path / "missing.tflite")


def test_corrupt_tflite_is_a_clear_error(tmp_path):
    bad = tmp_path / "junk.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.warns(runtime.UnverifiedArtifactWarning), pytest.raises(InputFileError, match="junk.tflite"):
        runtime.load(bad)
