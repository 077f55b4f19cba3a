"""kd-edge bench re-measures each artifact's parity on the machine it runs on (the converter's .parity.npz probe)
and reports it beside latency; below the gate the row fails with a clear reason. A tampered artifact is refused
before anything runs (host, and adb before adb is touched). CPU flags are in every bench and parity JSON.
Real artifacts from `kd-edge convert`, real LiteRT and ONNX Runtime in fresh runner processes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kd_edge.benchmarks import harness, runner, schema
from kd_edge.errors import InputFileError

sys.path.insert(0, str(Path(__file__).parent))
from bench_artifacts import converted_artifacts, tampered_copy  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return converted_artifacts(tmp_path_factory.mktemp("parity-arts"), size=SIZE)


def _cpuinfo_flags():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set()
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in flags if f in runner.ISA_FLAGS)


def test_parity_is_measured_here_beside_latency(arts):
    names = ["tflite-fp32", "tflite-int8", "onnx-int8"]
    doc = harness.bench([str(arts[n]) for n in names], threads=[1], sizes=[SIZE], runs=3, warmup=1)
    schema.validate(doc)
    assert doc["host"]["isa_flags"] == _cpuinfo_flags()
    for name, r in zip(names, doc["results"]):
        m = json.loads(Path(str(arts[name]) + ".json").read_text())
        parity = r["parity"]
        assert r["status"] == "ok", r["reason"]
        assert r["sha256_verified"] is True and r["latency_ms"]["p50"] > 0
        assert parity["measured"] and parity["passed"] and parity["probe_images"] == 2
        assert parity["threshold_db"] == m["parity"]["threshold_db"]
        assert parity["psnr_db"] >= parity["threshold_db"]
        # the same probe where it was converted (this host here): the same numbers within run-to-run noise
        assert parity["built_psnr_db"] == pytest.approx(parity["psnr_db"], abs=0.5)
        assert m["parity"]["host"]["isa_flags"] == _cpuinfo_flags() == parity["built_on"]


def test_a_reference_that_does_not_match_is_a_failed_row(arts, tmp_path, kd_edge_exe):
    out = tmp_path / "b.json"
    res = subprocess.run([kd_edge_exe, "bench", str(arts["mismatch"]), str(arts["tflite-fp32"]), "--threads", "1",
                          "--size", str(SIZE), "--runs", "3", "--warmup", "0", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    bad, good = schema.read_results(out)["results"]
    assert bad["status"] == "failed" and bad["parity"]["measured"] and bad["parity"]["passed"] is False
    assert bad["parity"]["psnr_db"] < 60 and "parity" in bad["reason"] and "< gate 60 dB on this host" in bad["reason"]
    assert good["status"] == "ok" and good["parity"]["passed"]
    assert "FAILED: parity" in res.stdout + res.stderr


def test_a_tampered_artifact_is_refused_before_anything_runs(arts, tmp_path, kd_edge_exe):
    bad = tampered_copy(arts["onnx-int8"], tmp_path / "t")
    with pytest.raises(InputFileError, match="sha256 mismatch"):
        harness.bench([str(bad)], threads=[1], sizes=[SIZE], runs=2, warmup=0)
    for device in ([], ["--device", "adb:emulator-5554", "--benchmark-model", str(bad)]):
        res = subprocess.run([kd_edge_exe, "bench", str(bad), "--size", str(SIZE), "--runs", "2", *device],
                             capture_output=True, text=True, timeout=120)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert str(bad) in lines[0] and "sha256 mismatch" in lines[0]


def test_a_modified_parity_probe_is_refused(arts, tmp_path):
    from kd_edge.converters.parity import probe_file_path

    copy = tampered_copy(arts["tflite-int8"], tmp_path / "p")
    copy.write_bytes(Path(arts["tflite-int8"]).read_bytes())  # the artifact intact, only the probe changed
    probe = probe_file_path(copy)
    data = bytearray(probe.read_bytes())
    data[-40] ^= 0x01
    probe.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="parity probe was modified"):
        harness.bench([str(copy)], threads=[1], sizes=[SIZE], runs=2, warmup=0)
