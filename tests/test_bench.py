"""kd-edge bench on this host: the standalone runner's statistics on real artifacts, the harness, the schema,
the report, plots, compare and the roofline peak. Real LiteRT, ONNX Runtime and TensorFlow; nothing mocked."""
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from kd_edge.benchmarks import harness, peak, reference, report, runner, schema
from kd_edge.errors import InputFileError, KdEdgeError

sys.path.insert(0, str(Path(__file__).parent))
from bench_artifacts import make_artifacts  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return make_artifacts(tmp_path_factory.mktemp("bench-arts"), size=SIZE)


@pytest.fixture(scope="module")
def doc(arts):
    doc = harness.bench([str(arts["fp32"]), str(arts["int8"]), str(arts["onnx"])],
                        threads=[1, 2], sizes=[SIZE], runs=15, warmup=3)
    # the Keras/TensorFlow baseline once (its process start is the slow part)
    doc["results"] += harness.bench([str(arts["keras"])], threads=[1], sizes=[SIZE], runs=5, warmup=1)["results"]
    return doc


def _run_runner(path, *extra, block=("kd_edge", "tensorflow")):
    """Run runner.py as on a board without kd_edge or TensorFlow: importing either fails in that process."""
    code = ("import sys, runpy\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
            + f"sys.argv = {[runner.__file__, str(path), *extra]!r}\n"
            + f"runpy.run_path({runner.__file__!r}, run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


@pytest.mark.parametrize("which", ["fp32", "int8", "onnx"])
def test_runner_statistics_without_kd_edge_or_tensorflow(arts, which):
    out = _run_runner(arts[which], "--threads", "1", "--size", str(SIZE), "--runs", "25", "--warmup", "2")
    assert out["status"] == "ok", out
    lat = out["latency_ms"]
    assert out["runs"] == 25 and out["warmup"] == 2
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert out["init_ms"] > 0 and out["first_inference_ms"] > 0
    assert out["runtime_rss_mb"] > 0 and out["peak_rss_mb"] >= out["runtime_rss_mb"] and out["rss_delta_mb"] >= 0
    assert out["mpix_per_s"] == pytest.approx(SIZE * SIZE / (lat["p50"] / 1e3) / 1e6)
    assert out["input_shape"] == [1, SIZE, SIZE, 3]
    assert out["input_dtype"] == ("int8" if which == "int8" else "float32")
    assert out["host"]["cores_logical"] >= 1 and out["host"]["cpu_model"]
    assert out["runtime"] == ("onnxruntime" if which == "onnx" else "litert")


def test_runner_refuses_a_size_a_fixed_artifact_does_not_have(arts):
    out = _run_runner(arts["fp32"], "--size", "64", "--runs", "2")
    assert out["status"] == "not_run" and "fixed input 32x32" in out["reason"]


def test_runner_says_core_ml_is_not_run_on_linux(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML runs for real")
    pkg = tmp_path / "m.mlpackage"
    pkg.mkdir()
    out = runner.measure(str(pkg), threads=1, size=SIZE, runs=2, warmup=0)
    assert out["status"] == "not_run" and "macOS only" in out["reason"]


def test_latency_stats_percentiles():
    s = runner.latency_stats([float(v) for v in range(1, 101)])
    assert s["min"] == 1 and s["max"] == 100 and s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    assert s["mean"] == pytest.approx(50.5)


def test_host_facts_reads_isa_flags_from_cpuinfo():
    facts = runner.host_facts()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in cpuinfo:
        assert "avx2" in facts["isa_flags"]
    if "avx512_vnni" in cpuinfo:
        assert "avx512_vnni" in facts["isa_flags"]
    assert facts["runtimes"]["onnxruntime"] and facts["runtimes"]["ai-edge-litert"]


def test_bench_document_is_valid_and_complete(doc, arts):
    schema.validate(doc)
    assert doc["schema"] == "kd-edge-bench" and doc["schema_version"] == 1
    assert len(doc["results"]) == 7
    by = {(r["target"], r["threads"]): r for r in doc["results"]}
    for r in doc["results"]:
        assert r["status"] == "ok", r
        assert r["params"] and r["macs"] and r["gflops"] > 0
        assert r["macs"] == round(json.loads(Path(str(arts["fp32"]) + ".json").read_text())["macs_256"] * SIZE * SIZE / 65536)
        assert r["gflops"] == pytest.approx(2 * r["macs"] / (r["latency_ms"]["p50"] / 1e3) / 1e9)
        assert r["file_bytes"] > 0 and 0 < r["gzip_bytes"]
        assert r["peak_rss_mb"] > 0 and r["rss_delta_mb"] >= 0
        student = r["vs_p100"]["student"]
        assert student["latency_ratio"] == pytest.approx(r["latency_ms"]["p50"] * (65536 / SIZE**2) / 22)
        assert student["memory_ratio"] == pytest.approx(r["peak_rss_mb"] / 1100)
    assert by[("tflite-int8", 1)]["precision"] == "int8" and by[("tflite-int8", 1)]["input_dtype"] == "int8"
    assert by[("keras", 1)]["runtime"] == "tensorflow" and by[("onnx-fp32", 2)]["runtime"] == "onnxruntime"
    assert by[("keras", 1)]["runs"] == 5 and by[("tflite-fp32", 2)]["runs"] == 15
    # the bare TensorFlow runtime is far heavier than LiteRT's: the baseline RSS is measured per runtime
    assert by[("keras", 1)]["runtime_rss_mb"] > 3 * by[("tflite-fp32", 1)]["runtime_rss_mb"]
    # each result ran in its own process
    assert doc["settings"]["fresh_process_per_result"] is True


def test_schema_rejects_broken_documents(doc):
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)
    bad = json.loads(json.dumps(doc))
    del bad["results"][0]["latency_ms"]["p50"]
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["schema_version"] = 2
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)


def test_read_results_names_the_file(tmp_path, doc):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(InputFileError, match="x.json: not JSON"):
        schema.read_results(p)
    p.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(InputFileError, match="not a kd-edge bench result"):
        schema.read_results(p)
    broken = json.loads(json.dumps(doc))
    broken["results"][0]["threads"] = 0
    p.write_text(json.dumps(broken))
    with pytest.raises(InputFileError, match="results/0/threads"):
        schema.read_results(p)


def test_markdown_report_shows_reference_hardware_and_ratios(doc):
    md = report.markdown(doc)
    assert "P100 reference (NVIDIA Tesla P100, 256x256): teacher 34 ms / 1.7 GB, student 22 ms / 1.1 GB" in md
    assert doc["host"]["cpu_model"] in md
    assert md.count("| tiny.") == 7
    assert "LiteRT tflite-int8 vs LiteRT tflite-fp32 (1 thr, 32px)" in md
    assert "ONNX Runtime onnx-fp32 vs LiteRT tflite-fp32" in md
    assert "the P100 student's 22 ms" in md


def test_plots_are_real_pngs(doc, tmp_path):
    paths = report.plots(doc, tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["latency_by_target.png", "memory_by_target.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_reference_is_the_seed_report():
    ref = reference.load_reference()
    assert ref["models"]["teacher"]["latency_ms"] == 34 and ref["models"]["teacher"]["memory_mb"] == 1700
    assert ref["models"]["student"]["latency_ms"] == 22 and ref["models"]["student"]["memory_mb"] == 1100
    shared = Path(__file__).resolve().parents[2] / "shared" / "reference" / "p100_reference.json"
    if shared.exists():
        assert json.loads(shared.read_text())["models"] == ref["models"]
    r = reference.ratios(11.0, 550.0, 256)
    assert r["student"]["latency_ratio"] == pytest.approx(0.5) and r["student"]["memory_ratio"] == pytest.approx(0.5)


def test_roofline_floor_uses_peak_for_threads_and_precision(doc, arts):
    pk = {"fp32_gflops": {"1": 10.0, "2": 20.0}, "int8_gops": {"1": 40.0}, "measured_utc": "x", "method": "m"}
    info = harness.describe_artifact(arts["int8"])
    r = next(x for x in doc["results"] if x["target"] == "tflite-int8" and x["threads"] == 2)
    raw = {k: r[k] for k in ("status", "latency_ms", "peak_rss_mb", "runtime_rss_mb", "rss_delta_mb")}
    res = harness.make_result(info, raw, threads=2, size=SIZE, peak=pk)
    assert res["latency_floor_ms"] == pytest.approx(2 * res["macs"] / 40e9 * 1e3)  # int8, nearest measured <= 2
    assert res["efficiency"] == pytest.approx(res["latency_floor_ms"] / r["latency_ms"]["p50"])
    assert peak.peak_for(pk, 4, "fp32") == 20.0 and peak.peak_for(None, 1, "fp32") is None
    assert peak.peak_for({"fp32_gflops": {"1": 30.0, "2": 25.0}}, 2, "fp32") == 30.0


@pytest.mark.slow
def test_peak_measures_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pk = peak.measure_peak([1])
    assert pk["fp32_gflops"]["1"] > 1 and pk["int8_gops"]["1"] > 1
    assert pk["fp32_gflops"]["1"] >= pk["detail"]["numpy_matmul_fp32"]["1"]
    assert peak.load_cached() == json.loads(json.dumps(pk))
    assert (tmp_path / "kd-edge" / "peak.json").is_file()


def test_describe_artifact_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        harness.describe_artifact(tmp_path / "missing.tflite")
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(InputFileError, match="unknown artifact type"):
        harness.describe_artifact(tmp_path / "x.bin")
    with pytest.raises(KdEdgeError, match="unknown --device"):
        harness.open_device("bluetooth:phone")


def _cli(*args):
    from kd_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code


def test_cli_bench_json_report_plots_and_compare(arts, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--threads", "1", "--size", str(SIZE), "--runs", "8", "--warmup", "2"]
    assert _cli("bench", str(arts["fp32"]), str(arts["int8"]), *common, "--json", str(a),
                "--report", str(tmp_path / "r.md"), "--plots", str(tmp_path / "p")) == 0
    assert _cli("bench", str(arts["fp32"]), *common, "--json", str(b), "--note", "second run", "--repeats", "3") == 0
    da, db = schema.read_results(a), schema.read_results(b)
    assert len(da["results"]) == 2 and db["notes"] == ["second run"] and len(db["results"]) == 1
    reps = db["results"][0]["repeat_p50_ms"]
    assert len(reps) == 3 and reps == sorted(reps) and db["results"][0]["latency_ms"]["p50"] == reps[1]
    assert db["settings"]["repeats"] == 3 and da["results"][0]["repeat_p50_ms"] is None
    assert "kd-edge bench" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "p" / "latency_by_target.png").is_file()
    capsys.readouterr()
    assert _cli("bench", "compare", str(a), str(b)) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny.tflite-fp32.tflite"))
    ra = next(r for r in da["results"] if r["target"] == "tflite-fp32")["latency_ms"]["p50"]
    rb = db["results"][0]["latency_ms"]["p50"]
    assert f"{rb / ra:.2f}" in row.split()


def test_cli_errors_are_one_line(tmp_path, capsys, arts):
    assert _cli("bench", str(tmp_path / "nope.tflite")) == 1
    assert "nope.tflite: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert _cli("bench", "compare", str(bad), str(bad)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err
    assert _cli("bench", str(arts["fp32"]), "--threads", "0") == 2
    assert _cli("bench", str(arts["fp32"]), "--device", "ssh:bad host!") == 1
    assert "bad ssh target" in capsys.readouterr().err


def test_runner_without_xnnpack_uses_the_builtin_kernels(arts):
    out = _run_runner(arts["fp32"], "--size", str(SIZE), "--runs", "3", "--no-xnnpack")
    assert out["status"] == "ok" and out["delegate"] == "builtin"
