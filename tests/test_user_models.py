"""A user's own tf_keras models through every stage (issue 15, items 1-4 and 9): .keras/.h5/SavedModel loading,
Keras 3 files, Lambda layers, --custom-objects, model stride of U-Nets, convert -t all with a failing target,
fp16 ONNX of LayerNorm models, quantize's int8 gate, and what the manifests say really happened."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tf_keras as keras

from kd_edge.cli import main
from kd_edge.errors import InputFileError
from kd_edge.models import load_model, model_stride


def user_unet(levels=2, up="transpose", seed=0):
    """A user's U-Net: stride-2 convs down, Conv2DTranspose (or UpSampling2D) up, BatchNorm and LayerNorm."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    skips = []
    for i in range(levels):
        skips.append(h)
        h = keras.layers.Conv2D(8 * 2 ** (i + 1), 3, strides=2, padding="same")(h)
        h = keras.layers.BatchNormalization()(h) if i % 2 == 0 else keras.layers.LayerNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.LayerNormalization(name="bottleneck_norm")(h)
    for skip in reversed(skips):
        if up == "transpose":
            h = keras.layers.Conv2DTranspose(skip.shape[-1], 2, strides=2, padding="same")(h)
        else:
            h = keras.layers.Conv2D(skip.shape[-1], 1)(keras.layers.UpSampling2D(2)(h))
        h = keras.layers.Concatenate()([h, skip])
        h = keras.layers.Conv2D(skip.shape[-1], 3, padding="same", activation="relu")(h)
    y = keras.layers.Add()([x, keras.layers.Conv2D(3, 3, padding="same")(h)])
    return keras.Model(x, y, name="my_unet")


def _run(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _fresh_user_objects(monkeypatch):
    """Each test starts with no --custom-objects specs and safe Lambda loading, and leaves none behind: the CLI runs
    in this process, and a spec left registered (a module importable only from a test's tmp dir) would be handed to
    every later fresh process (e.g. test_bench's runner) and fail it there."""
    from kd_edge.models import user_objects

    monkeypatch.setattr(user_objects, "_state", {"specs": [], "unsafe_lambda": False})
    yield


@pytest.fixture(scope="module")
def unet_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    model = user_unet()
    model(np.zeros((1, 32, 32, 3), np.float32), training=True)  # BatchNorm statistics move off their init
    paths = {"keras": root / "unet.keras", "h5": root / "unet.h5", "savedmodel": root / "unet_savedmodel"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.save(paths["savedmodel"])
    return model, paths


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from kd_edge.data.synth import synthesize

    root = tmp_path_factory.mktemp("data") / "synth"
    synthesize(root, count=6, size=64, seed=0)
    return root


# ------------------------------------------------------------------------------------- item 1: the one loader
@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_every_keras_format_loads_with_the_same_outputs(unet_files, kind):
    model, paths = unet_files
    loaded, manifest = load_model(paths[kind])
    x = np.random.default_rng(1).random((1, 36, 36, 3), dtype=np.float32)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)
    assert manifest["arch"] is None and manifest["stride"] == 4 and len(manifest["sha256"]) == 64


def test_runtime_loads_h5_and_savedmodel(unet_files):
    from kd_edge.runtime import kind_of, load

    _, paths = unet_files
    assert kind_of(paths["h5"]) == kind_of(paths["savedmodel"]) == "keras"
    x = np.random.default_rng(2).random((1, 20, 20, 3), dtype=np.float32)
    with pytest.warns(UserWarning, match="no manifest"):
        a = load(paths["h5"]).predict(x)
    with pytest.warns(UserWarning, match="no manifest"):
        b = load(paths["savedmodel"]).predict(x)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_keras3_file_gets_one_line_saying_how_to_resave(tmp_path, capsys):
    script = textwrap.dedent("""
        import keras
        x = keras.Input((None, None, 3))
        keras.Model(x, keras.layers.Conv2D(3, 3, padding="same")(x)).save("k3.keras")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True)
    code, _, err = _run(capsys, "convert", str(tmp_path / "k3.keras"), "-t", "tflite-fp32", "--out", str(tmp_path / "o"))
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "k3.keras: saved by Keras 3." in line and "tf_keras" in line and "set_weights" in line
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o" / "k3.tflite-fp32.tflite").exists()


def test_not_a_model_and_plain_folder_are_one_line_errors(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputFileError, match="not a SavedModel"):
        load_model(tmp_path / "folder")
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(InputFileError, match="TFLite artifact, not a Keras model"):
        load_model(tmp_path / "model.tflite")


def _lambda_model(path):
    x = keras.Input((None, None, 3))
    y = keras.layers.Lambda(lambda t: t * 0.5, name="halve")(keras.layers.Conv2D(3, 3, padding="same")(x))
    keras.Model(x, y).save(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_is_refused_with_a_complete_message_naming_the_option(tmp_path, capsys, suffix):
    path = tmp_path / f"lam{suffix}"
    _lambda_model(path)
    code, _, err = _run(capsys, "convert", str(path), "-t", "tflite-fp32", "--input-size", "32",
                        "--out", str(tmp_path / "o"))
    assert code == 1
    assert "Lambda layer(s) halve" in err and "--unsafe-lambda" in err and "--custom-objects" in err
    assert err.rstrip().endswith("pass --unsafe-lambda")  # not cut mid-word
    code, _, err = _run(capsys, "convert", str(path), "-t", "tflite-fp32", "--input-size", "32",
                        "--out", str(tmp_path / "o"), "--unsafe-lambda")
    assert code == 0, err
    assert "warning" in err and "--unsafe-lambda" in err and "halve" in err
    manifest = json.loads((tmp_path / "o" / f"lam.tflite-fp32.tflite.json").read_text())
    assert manifest["parity"]["passed"]


LAYER_MODULE = '''
import tf_keras as keras


class {name}(keras.layers.Layer):
    def __init__(self, factor=0.5, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
'''


def _custom_layer_model(tmp_path, name):
    module = tmp_path / f"{name.lower()}_layers.py"
    module.write_text(LAYER_MODULE.format(name=name))
    namespace = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)  # the user's own code defines the class
    x = keras.Input((None, None, 3))
    y = namespace[name](factor=0.25, name="scale")(keras.layers.Conv2D(3, 3, padding="same")(x))
    model = keras.Model(x, y)
    model.save(tmp_path / "cust.keras")
    model.save(tmp_path / "cust.h5")
    return module


def test_custom_layer_needs_custom_objects_and_works_with_it(tmp_path, capsys):
    module = _custom_layer_model(tmp_path, "ScaleByFile")
    code, _, err = _run(capsys, "convert", str(tmp_path / "cust.keras"), "-t", "tflite-fp32", "--input-size", "32",
                        "--out", str(tmp_path / "o"))
    assert code == 1 and "ScaleByFile" in err and "--custom-objects MODULE:ScaleByFile" in err
    for suffix in (".keras", ".h5"):
        code, _, err = _run(capsys, "convert", str(tmp_path / f"cust{suffix}"), "-t", "tflite-fp32", "--input-size",
                            "32", "--out", str(tmp_path / f"o{suffix}"), "--custom-objects", f"{module}:ScaleByFile")
        assert code == 0, err
        manifest = json.loads((tmp_path / f"o{suffix}" / "cust.tflite-fp32.tflite.json").read_text())
        assert manifest["parity"]["passed"]


def test_custom_objects_as_a_module_name_and_bad_specs(tmp_path, capsys, monkeypatch):
    _custom_layer_model(tmp_path, "ScaleByName")
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "convert", "cust.h5", "-t", "tflite-fp32", "--input-size", "32", "--out", "o",
                        "--custom-objects", "scalebyname_layers:ScaleByName")
    assert code == 0, err
    code, _, err = _run(capsys, "convert", "cust.h5", "-t", "tflite-fp32", "--out", "o2",
                        "--custom-objects", "no_such_module_here:X")
    assert code == 2 and "no_such_module_here" in err and "Traceback" not in err
    code, _, err = _run(capsys, "convert", "cust.h5", "-t", "tflite-fp32", "--out", "o2",
                        "--custom-objects", "scalebyname_layers:Missing")
    assert code == 2 and "has no attribute 'Missing'" in err


def test_user_unet_trains_distils_and_converts_from_files(unet_files, data_root, tmp_path, capsys):
    _, paths = unet_files
    common = ["--data", str(data_root), "--steps", "2", "--batch", "2", "--patch", "32", "--val-count", "1",
              "--val-crop", "64", "--no-progress"]
    code, out, err = _run(capsys, "train-teacher", "--arch", str(paths["h5"]), "--out", str(tmp_path / "t"), *common)
    assert code == 0, err
    teacher = json.loads((tmp_path / "t" / "model.keras.json").read_text())
    assert teacher["stride"] == 4 and teacher["lineage"][0]["path"] == str(paths["h5"])
    code, out, err = _run(capsys, "distill", "--teacher", str(paths["savedmodel"]), "--student", str(paths["keras"]),
                          "--out", str(tmp_path / "s"), *common)
    assert code == 0, err
    student = json.loads((tmp_path / "s" / "model.keras.json").read_text())
    assert [step["method"] for step in student["lineage"]] == ["initial model", "distill"]
    train_info = json.loads((tmp_path / "s" / "train.json").read_text())
    assert train_info["run"]["arch"] == str(paths["keras"])
    code, out, err = _run(capsys, "convert", str(tmp_path / "s" / "model.keras"), "-t", "tflite-fp32", "-t",
                          "onnx-fp16", "--input-size", "100", "--out", str(tmp_path / "x"))
    assert code == 0, err
    for target, ext in (("tflite-fp32", "tflite"), ("onnx-fp16", "onnx")):
        m = json.loads((tmp_path / "x" / f"model.{target}.{ext}.json").read_text())
        assert m["parity"]["passed"] and m["stride"] == 4 and m["input_size"] == [100, 100]


def test_user_unet_with_batchnorm_and_layernorm_trains_in_bfloat16(unet_files, data_root, tmp_path, capsys):
    from kd_edge.models.precision import compute_dtype

    _, paths = unet_files
    code, out, err = _run(capsys, "train-teacher", "--arch", str(paths["keras"]), "--out", str(tmp_path / "t"),
                          "--precision", "bfloat16", "--data", str(data_root), "--steps", "2", "--batch", "2",
                          "--patch", "32", "--val-count", "1", "--val-crop", "64", "--no-progress")
    assert code == 0, err
    model, manifest = load_model(tmp_path / "t" / "model.keras")
    assert compute_dtype(model) == "float32" and manifest["lineage"][-1]["precision"] == ["bfloat16"]
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    assert np.isfinite(model.predict(x, verbose=0)).all()


def test_unknown_student_is_one_line(tmp_path, capsys, data_root):
    code, _, err = _run(capsys, "distill", "--no-teacher", "--student", "edge-nope", "--data", str(data_root),
                        "--steps", "1", "--out", str(tmp_path / "s"))
    assert code == 1 and "neither an architecture" in err and "model file" in err


# ------------------------------------------------------------------------------------- item 2: the stride
def test_stride_is_the_downsampling_actually_needed():
    from kd_edge.models import build

    assert model_stride(user_unet(levels=2)) == 4          # the product of every stride would be 16
    assert model_stride(user_unet(levels=3, up="upsampling")) == 8
    assert model_stride(build("edge-tiny")) == 4            # the zoo keeps its strides
    assert model_stride(build("edge-s")) == 8


def test_convert_accepts_sizes_that_are_multiples_of_the_true_stride(unet_files, tmp_path, capsys):
    _, paths = unet_files
    code, _, err = _run(capsys, "convert", str(paths["h5"]), "-t", "tflite-fp32", "--input-size", "100",
                        "--out", str(tmp_path))
    assert code == 0, err
    assert json.loads((tmp_path / "unet.tflite-fp32.tflite.json").read_text())["stride"] == 4
    code, _, err = _run(capsys, "convert", str(paths["h5"]), "-t", "tflite-fp32", "--input-size", "102",
                        "--out", str(tmp_path / "b"))
    assert code == 2 and "stride 4 (try 100 or 104)" in err


# ------------------------------------------------------------------------------------- item 3: convert -t all
def test_onnx_fp16_of_a_layernorm_model_loads_and_passes(unet_files, tmp_path):
    import onnxruntime as ort

    from kd_edge.converters import convert

    _, paths = unet_files
    [result] = convert(paths["keras"], ["onnx-fp16"], tmp_path, input_size=64)
    assert result.passed and result.manifest["parity"]["psnr_db"] >= 45.0
    assert result.manifest["fp16"]["float32_nodes"] > 0
    session = ort.InferenceSession(str(result.artifact), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"  # float32 I/O kept


def _broken_onnx(source, path, options):
    """A real, truncated ONNX file: ONNX Runtime refuses it, as it refused the old fp16 LayerNorm graph."""
    from kd_edge.converters import onnx as onnx_targets

    onnx_targets.convert_fp32(source, path, options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return {}


def test_a_failing_target_is_a_table_row_and_the_others_still_run(unet_files, tmp_path, capsys):
    from kd_edge.converters import registry

    _, paths = unet_files
    broken = registry.Target("test-broken-onnx", ecosystem="onnx", precision="fp32", suffix=".onnx",
                             convert=_broken_onnx, inspect=lambda p: {"inputs": [], "outputs": [], "ops": {}})
    registry.register(broken)
    try:
        code, out, err = _run(capsys, "convert", str(paths["keras"]), "-t", "test-broken-onnx", "-t", "tflite-fp32",
                              "--input-size", "32", "--out", str(tmp_path))
    finally:
        registry._REGISTRY.pop("test-broken-onnx")
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith(("test-broken-onnx", "tflite-fp32"))]
    assert rows[0].startswith("test-broken-onnx") and "FAILED" in rows[0] and "ONNX Runtime cannot load" in rows[0]
    assert "ok" in rows[1]  # the target after the failure ran
    assert ".tmp" not in out + err and "unet.test-broken-onnx.onnx" in rows[0]
    assert "1 of 2 targets failed" in err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any(n.startswith(".") or "broken" in n for n in names) and "unet.tflite-fp32.tflite" in names


# ------------------------------------------------------------------------------------- item 4: quantize's gate
def _outlier_model():
    """Full-int8 breaks it: one channel of 'wide' is 2000x the others, so per-tensor int8 activations spend their
    range on it and lose the channels that make the output (the README's dec0_b0_gate2 problem, exaggerated)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="wide")(x)
    y = keras.layers.Add()([x, keras.layers.Conv2D(3, 1, name="mix")(h)])
    model = keras.Model(x, y)
    k, b = model.get_layer("wide").get_weights()
    k[..., 0] *= 2000.0
    model.get_layer("wide").set_weights([k, b])
    k2, b2 = model.get_layer("mix").get_weights()
    k2[:, :, 0, :] *= 1e-4
    k2[:, :, 1:, :] = np.abs(k2[:, :, 1:, :])
    model.get_layer("mix").set_weights([k2, b2])
    return model


def test_quantize_ptq_has_convert_gate_and_number(tmp_path, capsys):
    from kd_edge.models import save_model

    save_model(_outlier_model(), tmp_path / "outlier.keras")
    code, _, err = _run(capsys, "quantize", str(tmp_path / "outlier.keras"), "--ptq", "--input-size", "32",
                        "--out", str(tmp_path / "q"))
    assert code == 1 and "below the 30 dB gate" in err and "not written" in err
    assert not (tmp_path / "q" / "outlier.tflite-int8.tflite").exists()
    report = json.loads((tmp_path / "q" / "quantize_report.json").read_text())
    assert report["tflite"]["written"] is False and report["tflite"]["parity"]["passed"] is False
    code, out, err = _run(capsys, "convert", str(tmp_path / "outlier.keras"), "-t", "tflite-int8", "--input-size",
                          "32", "--out", str(tmp_path / "c"))
    assert code == 1  # convert refuses the same artifact with the same number
    number = f"{report['tflite']['parity']['psnr_db']:.1f} dB < 30 dB"
    assert number in err


# ------------------------------------------------------------------------------------- item 9: what happened
def _small_and_large(tmp_path):
    """Two models: every weight tensor under 1024 elements, and one with a 16x32x3x3 kernel (4608 elements)."""
    from kd_edge.models import save_model

    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    small = keras.Model(x, keras.layers.Add()([x, keras.layers.Conv2D(3, 3, padding="same")(
        keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x))]))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    large = keras.Model(x, keras.layers.Add()([x, keras.layers.Conv2D(3, 1)(h)]))
    save_model(small, tmp_path / "small.keras")
    save_model(large, tmp_path / "large.keras")


def test_manifests_and_table_say_what_quantization_really_did(tmp_path, capsys):
    _small_and_large(tmp_path)
    code, out, err = _run(capsys, "convert", str(tmp_path / "small.keras"), "-t", "tflite-fp32", "-t",
                          "tflite-dynamic", "-t", "onnx-fp32", "-t", "onnx-int8", "--input-size", "64",
                          "--out", str(tmp_path / "s"))
    assert code == 0, err
    dyn = json.loads((tmp_path / "s" / "small.tflite-dynamic.tflite.json").read_text())
    fp32 = json.loads((tmp_path / "s" / "small.tflite-fp32.tflite.json").read_text())
    assert dyn["weights"]["quantized_weights"] == f"0 of {dyn['weights']['tensors']} tensors"
    assert any(n.startswith("quantized in name only") and "1024" in n for n in dyn["notes"])
    if dyn["sha256"] == fp32["sha256"]:
        assert "byte-identical to tflite-fp32" in dyn["notes"]
    onnx8 = json.loads((tmp_path / "s" / "small.onnx-int8.onnx.json").read_text())
    onnx32 = json.loads((tmp_path / "s" / "small.onnx-fp32.onnx.json").read_text())
    assert onnx8["file_size"] > onnx32["file_size"]  # QDQ overhead on a 300-weight model
    assert any(n.startswith("larger than onnx-fp32") for n in onnx8["notes"])
    assert onnx8["weights"]["tensors_by_dtype"].get("int8", 0) > 0
    assert "note: quantized in name only" in out and "note: larger than onnx-fp32" in out
    code, out, err = _run(capsys, "convert", str(tmp_path / "large.keras"), "-t", "tflite-dynamic",
                          "--input-size", "32", "--out", str(tmp_path / "l"))
    assert code == 0, err
    dyn = json.loads((tmp_path / "l" / "large.tflite-dynamic.tflite.json").read_text())
    assert dyn["weights"]["tensors_by_dtype"]["int8"] == 1  # only the 4608-element kernel
    assert not any("in name only" in n for n in dyn["notes"])
    assert any(n.startswith("1 of") and "int8" in n for n in dyn["notes"])
