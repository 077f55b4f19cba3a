"""kd-edge convert: every target on edge-tiny through the real console script, manifests, parity gates,
dynamic shapes, atomic failure and the documented exit codes. Real TF, LiteRT, ONNX Runtime, coremltools."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import runtime
from kd_edge.cli import main
from kd_edge.converters import TARGETS, THRESHOLDS_DB, convert, registry
from kd_edge.converters.manifest import gzip_size_of, sha256_of, size_of
from kd_edge.errors import KdEdgeError
from kd_edge.metrics import psnr

SIZE = 64
EXT = {"tflite": ".tflite", "onnx": ".onnx", "coreml": ".mlpackage"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from kd_edge.models import build, save_model

    import tf_keras

    tf_keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(build("edge-tiny"), path, arch="edge-tiny")
    return path


@pytest.fixture(scope="module")
def keras_model(model_path):
    from kd_edge.models import load_model

    return load_model(model_path)[0]


@pytest.fixture(scope="module")
def all_out(model_path, kd_edge_exe, tmp_path_factory):
    """One real `kd-edge convert --target all` call makes every artifact."""
    out = tmp_path_factory.mktemp("all")
    res = subprocess.run([kd_edge_exe, "convert", str(model_path), "--target", "all", "--out", str(out),
                          "--input-size", str(SIZE), "--json", str(out / "summary.json")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def probes(h, w, n=2, seed=7):
    """Blurred blocky images drawn by the test itself (not the converter's probes), float32 in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.9, (n, h // 4, w // 4, 3)).astype(np.float32)
    sharp = np.kron(base, np.ones((1, 4, 4, 1), np.float32))
    blurred = np.stack([cv2.GaussianBlur(img, (0, 0), 1.5) for img in sharp])
    return np.clip(blurred + rng.normal(0, 0.01, blurred.shape), 0, 1).astype(np.float32)


@pytest.mark.slow
def test_all_makes_every_artifact_in_one_call(all_out):
    summary = json.loads((all_out / "summary.json").read_text())
    assert [r["target"] for r in summary["results"]] == list(TARGETS)
    # the CPU that gated them (int8 kernels differ by instruction set), in the summary and in every parity record
    assert summary["host"]["isa_flags"] and summary["host"]["cpu_model"]
    assert all(r["parity"]["host"] == summary["host"] for r in summary["results"])
    for target in TARGETS:
        artifact = all_out / f"tiny.{target}{EXT[target.split('-')[0]]}"
        assert artifact.exists(), artifact
        assert (all_out / (artifact.name + ".json")).exists()
    assert not [p for p in all_out.iterdir() if p.name.startswith(".")], "temp files left behind"


@pytest.mark.parametrize("target", TARGETS)
def test_manifest_and_parity(all_out, model_path, keras_model, target):
    ecosystem, precision = target.split("-")
    artifact = all_out / f"tiny.{target}{EXT[ecosystem]}"
    m = json.loads((all_out / (artifact.name + ".json")).read_text())
    assert m["target"] == target and m["precision"] == precision and m["ecosystem"] == ecosystem
    assert m["layout"] == "NHWC" and m["value_range"] == [0.0, 1.0] and "normalisation" in m
    assert m["input_size"] == [SIZE, SIZE] and m["dynamic_shape"] is False
    assert m["inputs"][0]["shape"] == [1, SIZE, SIZE, 3] and m["inputs"][0]["dtype"] == "float32"
    assert m["outputs"][0]["shape"] == [1, SIZE, SIZE, 3]
    assert m["sha256"] == sha256_of(artifact) and m["file_size"] == size_of(artifact)
    assert 0 < m["gzip_size"] == gzip_size_of(artifact)
    assert m["source_model"]["sha256"] == sha256_of(model_path) and m["source_model"]["arch"] == "edge-tiny"
    assert m["params"] > 1000 and m["macs_256"] > 0 and m["stride"] == 4
    assert m["tiling"] == {"tile": SIZE, "overlap": 32}
    assert m["tools"]["tensorflow"] and m["tools"]["coremltools"]
    assert m["op_count"] == sum(m["ops"].values()) > 10
    if precision == "fp16":  # the activations' headroom below fp16's 65504, measured on the Keras model
        from kd_edge.models.attention_bound import largest_activation
        from kd_edge.stress_inputs import stress_inputs

        peak, _ = largest_activation(keras_model, [image for _, image in stress_inputs(64, stride=4)])
        fp16 = m["fp16_range"]
        assert fp16["measured"] and fp16["within"] and fp16["limit"] == 65504.0
        assert fp16["largest_activation"] == pytest.approx(peak, rel=1e-6)
        assert fp16["headroom"] == pytest.approx(65504.0 / peak, rel=1e-6)
    else:
        assert "fp16_range" not in m
    parity = m["parity"]
    assert parity["threshold_db"] == THRESHOLDS_DB[precision]
    if ecosystem == "coreml" and sys.platform != "darwin":
        assert parity["measured"] is False and parity["passed"] is None and "macOS" in parity["reason"]
        assert m["structural_validation"]["spec_loads"] is True
        expected = "float16" if precision == "fp16" else "float32"
        assert max(m["op_output_precisions"], key=lambda k: m["op_output_precisions"][k] if "float" in k else -1) == expected
        return
    assert parity["measured"] and parity["passed"] and parity["psnr_db"] >= THRESHOLDS_DB[precision]
    assert 0 <= parity["max_abs_diff"] < {"fp32": 1e-3, "fp16": 0.05, "dynamic": 0.1, "int8": 0.5}[precision]
    if ecosystem == "tflite":
        gpu = m["gpu_delegate"]
        assert isinstance(gpu["compatible"], bool) and gpu["checked_against"]
    # independent check: load through the runtime (sha256-verified) on the test's own images
    rt = runtime.load(artifact)
    assert rt.verified
    x = probes(SIZE, SIZE)
    got = np.min(psnr(rt.predict(x), keras_model(x, training=False).numpy()))
    assert got >= THRESHOLDS_DB[precision], f"{target}: {got:.1f} dB"


def test_quantised_targets_really_are_quantised(all_out):
    m = json.loads((all_out / "tiny.tflite-int8.tflite.json").read_text())
    assert "QUANTIZE" in m["ops"] and m["calibration"]["images"] == 32
    m = json.loads((all_out / "tiny.onnx-int8.onnx.json").read_text())
    assert m["ops"]["QuantizeLinear"] > 0 and m["ops"]["DequantizeLinear"] > 0
    m = json.loads((all_out / "tiny.onnx-fp16.onnx.json").read_text())
    assert m["initializer_dtypes"].get("float16", 0) > 0 and m["inputs"][0]["dtype"] == "float32"
    m = json.loads((all_out / "tiny.tflite-fp16.tflite.json").read_text())
    assert m["ops"].get("DEQUANTIZE", 0) > 0  # fp16 weights dequantised at load time


@pytest.mark.parametrize("target", ["onnx-int8", "tflite-int8", "tflite-dynamic"])
def test_int8_targets_pass_their_gate_with_every_kernel_family(all_out, keras_model, target):
    """Portable int8: the fast kernels of this host (XNNPACK, ruy, MLAS integer GEMM) and the ISA-independent
    paths (LiteRT reference kernels, ONNX Runtime's unfused QDQ graph) all clear the gate."""
    from kd_edge.benchmarks.int8_portability import kernel_parity

    ecosystem = target.split("-")[0]
    artifact = all_out / f"tiny.{target}{EXT[ecosystem]}"
    x = probes(SIZE, SIZE, n=2)
    scores = kernel_parity(artifact, ecosystem, x, keras_model(x, training=False).numpy())
    measured = {k: v for k, v in scores.items() if isinstance(v, float)}
    assert len(measured) >= 2, scores
    gate = THRESHOLDS_DB[target.split("-")[1]]
    assert all(v >= gate for v in measured.values()), scores
    m = json.loads((all_out / (artifact.name + ".json")).read_text())
    assert m["parity"]["host"]["isa_flags"] and m["parity"]["target_probe"]["psnr_db"] >= gate
    if target == "onnx-int8":
        int8 = m["int8"]
        assert int8["quantization"]["reduce_range"] is True and int8["quantization"]["activation_type"] == "uint8"
        assert int8["int16_pair_bounds"]["safe"] and int8["int16_pair_bounds"]["max_pair"] <= 32640
        assert "VNNI" in int8["assumes"]


def test_onnx_graphs_keep_only_the_input_and_output_transposes(all_out):
    import onnx

    for target in ("onnx-fp32", "onnx-fp16", "onnx-int8"):
        artifact = all_out / f"tiny.{target}.onnx"
        ops = [n.op_type for n in onnx.load(str(artifact)).graph.node]
        m = json.loads((all_out / (artifact.name + ".json")).read_text())
        # every SimpleGate's NHWC round trip is gone (the parity test above checks the function is unchanged)
        assert m["transpose_cleanup"]["transposes_removed"] > 0, target
        # left: the NHWC input's and output's, and at most two around BoundedResidual's 3-channel image arithmetic
        # (tf2onnx keeps x in NHWC there); none on a feature map
        assert ops.count("Transpose") <= 4 and ops.count("Split") > 0, (target, ops.count("Transpose"))


def test_existing_artifact_needs_force(all_out, model_path, capsys):
    created = json.loads((all_out / "tiny.onnx-fp32.onnx.json").read_text())["created_utc"]
    time.sleep(1.1)
    with pytest.raises(SystemExit) as info:
        main(["convert", str(model_path), "-t", "onnx-fp32", "--out", str(all_out), "--input-size", str(SIZE)])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny.onnx-fp32.onnx: already exists (use --force" in err[0]
    with pytest.raises(SystemExit) as info:
        main(["convert", str(model_path), "-t", "onnx-fp32", "--out", str(all_out), "--input-size", str(SIZE), "--force"])
    assert info.value.code == 0
    rt = runtime.load(all_out / "tiny.onnx-fp32.onnx")
    assert rt.verified and rt.manifest["created_utc"] != created


DYNAMIC = ["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8", "coreml-fp16"]


@pytest.fixture(scope="module")
def dynamic_out(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic")
    return {r.target: r for r in convert(model_path, DYNAMIC, out, input_size="dynamic", calib_count=16)}


@pytest.mark.slow
@pytest.mark.parametrize("target", DYNAMIC)
def test_dynamic_artifacts_run_at_two_sizes(dynamic_out, keras_model, target):
    result = dynamic_out[target]
    m = result.manifest
    assert m["input_size"] == "dynamic" and m["dynamic_shape"] is True
    assert m["inputs"][0]["shape"][1:3] == [None, None]
    rt = runtime.load(result.artifact)
    assert rt.input_size is None
    if target.startswith("coreml"):
        assert m["parity"]["measured"] is False and m["coreml"]["dynamic_range"] == [4, 4096]
        return
    assert [p["probe_shape"] for p in m["parity"]["probes"]] == [[128, 128, 3], [96, 160, 3]]
    for h, w in ((32, 32), (48, 64)):
        x = probes(h, w)
        y = rt.predict(x)
        assert y.shape == x.shape
        assert np.min(psnr(y, keras_model(x, training=False).numpy())) >= THRESHOLDS_DB[m["precision"]]


def test_failed_gate_leaves_nothing_and_exits_1(model_path, tmp_path, capsys):
    # a real fp16 artifact held to an impossible gate: the gate must fail and the artifact must vanish
    fp16 = registry.get("tflite-fp16")
    strict = registry.Target("test-strict-fp16", ecosystem="tflite", precision="fp16", suffix=".tflite",
                             convert=fp16.convert, inspect=fp16.inspect, threshold_db=99.0)
    registry.register(strict)
    try:
        with pytest.raises(SystemExit) as info:
            main(["convert", str(model_path), "-t", "test-strict-fp16", "-t", "tflite-fp32", "--out", str(tmp_path),
                  "--input-size", str(SIZE)])
        assert info.value.code == 1
        err = capsys.readouterr().err
        assert "parity gate failed (test-strict-fp16" in err and "< 99 dB" in err
    finally:
        registry._REGISTRY.pop("test-strict-fp16")
    names = sorted(p.name for p in tmp_path.iterdir())
    # the good one is kept, with its manifest and its parity probe
    assert names == ["tiny.tflite-fp32.tflite", "tiny.tflite-fp32.tflite.json", "tiny.tflite-fp32.tflite.parity.npz"]


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(["convert", *args])
    return info.value.code, capsys.readouterr().err


def test_unknown_target_is_usage_error_listing_targets(model_path, tmp_path, capsys):
    code, err = _cli(capsys, str(model_path), "-t", "tflite-int4", "--out", str(tmp_path))
    assert code == 2 and "unknown target 'tflite-int4'" in err
    assert all(t in err for t in TARGETS)


@pytest.mark.parametrize("size,message", [("0", "positive integer"), ("-8", "positive integer"),
                                          ("2.5", "positive integer"), ("big", "positive integer"),
                                          ("30", "not a multiple of the model stride 4 (try 28 or 32)")])
def test_bad_input_size_is_usage_error(model_path, tmp_path, capsys, size, message):
    code, err = _cli(capsys, str(model_path), "-t", "tflite-fp32", "--out", str(tmp_path), "--input-size", size)
    assert code == 2 and message in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [None, b"this is not a keras zip"])
def test_unreadable_model_is_one_line_exit_1(tmp_path, capsys, content):
    bad = tmp_path / "broken.keras"
    if content is not None:
        bad.write_bytes(content)
    code, err = _cli(capsys, str(bad), "-t", "tflite-fp32", "--out", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and str(bad) in lines[0]


def test_python_api_rejects_unknown_target(model_path, tmp_path):
    with pytest.raises(KdEdgeError, match="valid targets: tflite-fp32"):
        convert(model_path, ["nope"], tmp_path)


def test_calibration_folder_is_used_for_int8(model_path, tmp_path):
    import cv2

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(probes(48, 48, n=6, seed=11)):
        cv2.imwrite(str(calib / f"{i}.png"), (img[..., ::-1] * 255).round().astype(np.uint8))
    (result,) = convert(model_path, ["tflite-int8"], tmp_path / "out", input_size=SIZE, calib=calib, calib_count=6)
    assert result.manifest["calibration"] == {"images": 6, "size": SIZE, "source": str(calib)}
    assert result.passed is True
    # probes come from the calibration folder too when --calib is given
    assert result.manifest["parity"]["probes"][0]["probe_images"] == 4
