"""android_harness: benchmark_model command construction and output parsing (against the format printed by
tensorflow/lite/tools/benchmark/benchmark_model.cc), the device-side peak-RSS script run for real with /bin/sh,
and the clear error of `kd-edge bench --device adb` where adb is missing. No phone is attached here: the
on-device path itself has not run on hardware."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kd_edge.android_harness import adb as adb_mod
from kd_edge.android_harness.benchmark_model import build_command, parse_output, parse_peak_rss
from kd_edge.benchmarks import harness, schema
from kd_edge.errors import KdEdgeError

# benchmark_model 2.x on a phone, adb shell (INFO: prefix, scientific notation from the C++ stream)
OUTPUT_CPU = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [50]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/kd-edge-bench/artifact-0.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/kd-edge-bench/artifact-0.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 1.21
INFO: Initialized session in 66.002ms.
INFO: Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=1357602 curr=1240143 min=1238588 max=1357602 avg=1.25027e+06 std=35650 p5=1238588 median=1240143 p95=1357602

INFO: Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

INFO: Inference timings in us: Init: 66002, First inference: 1357602, Warmup (avg): 1.25027e+06, Inference (avg): 1.24027e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
INFO: Overall peak memory footprint (MB) via periodic monitoring: 112.5
"""

# newer releases print "Peak memory footprint"; logcat prefixes; GPU delegate
OUTPUT_GPU_LOGCAT = """07-08 15:34:20.101 I/tflite  ( 5395): Use gpu: [1]
07-08 15:34:20.300 I/tflite  ( 5395): Created TensorFlow Lite delegate for GPU.
07-08 15:34:20.301 I/tflite  ( 5395): Replacing 58 out of 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for the whole graph.
07-08 15:34:26.201 I/tflite  ( 5395): count=20 first=2653 curr=2709 min=2640 max=3025 avg=2719.85 std=105 p5=2640 median=2709 p95=3025
07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First inference: 2732, Warmup (avg): 2732.15, Inference (avg): 2719.85
07-08 15:34:26.202 I/tflite  ( 5395): Peak memory footprint (MB): init=286.73 overall=337
"""

# older builds: no percentiles, no periodic monitoring
OUTPUT_OLD = """count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798
Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""


def test_parse_cpu_output():
    p = parse_output(OUTPUT_CPU)
    assert p["init_ms"] == pytest.approx(66.002) and p["first_inference_ms"] == pytest.approx(1357.602)
    assert p["inference_avg_ms"] == pytest.approx(1240.27)
    assert p["runs"] == 50  # the measured runs, not the warm-up line
    lat = p["latency_ms"]
    assert lat["p50"] == pytest.approx(1239.807) and lat["min"] == pytest.approx(1238.588)
    assert lat["max"] == pytest.approx(1252.566) and lat["std"] == pytest.approx(2.565)
    assert lat["p5"] == pytest.approx(1238.753) and lat["p95"] == pytest.approx(1247.415) and lat["p90"] is None
    assert p["mem_init_mb"] == pytest.approx(6.36328) and p["mem_overall_mb"] == pytest.approx(109.832)
    assert p["mem_peak_mb"] == pytest.approx(112.5) and p["model_file_mb"] == pytest.approx(1.21)
    assert p["xnnpack"] and not p["gpu_delegate"]


def test_parse_newer_gpu_output_with_logcat_prefix():
    p = parse_output(OUTPUT_GPU_LOGCAT)
    assert p["init_ms"] == pytest.approx(458.883) and p["latency_ms"]["p50"] == pytest.approx(2.709)
    assert p["mem_overall_mb"] == pytest.approx(337) and "mem_peak_mb" not in p
    assert p["gpu_delegate"] and p["delegated_nodes"] == [58, 58] and p["delegate_name"] == "TfLiteGpuDelegateV2"


def test_parse_old_output_without_percentiles():
    p = parse_output(OUTPUT_OLD)
    assert p["latency_ms"]["p50"] == pytest.approx(2950.34)  # no median printed: the mean stands in
    assert p["median_reported"] is False and p["mem_overall_mb"] == pytest.approx(46.0859)


def test_parse_failure_names_the_problem():
    with pytest.raises(KdEdgeError, match="no 'Inference timings in us' line.*Failed to allocate tensors"):
        parse_output("INFO: Loaded model x.tflite\nERROR: Failed to allocate tensors!\nBenchmarking failed.\n")


def test_build_command_cpu_pinned():
    argv = build_command("/data/local/tmp/kd-edge-bench/benchmark_model", "/data/local/tmp/m.tflite", threads=4,
                         runs=100, warmup=10, cpu_mask="0xF0")
    assert argv[:2] == ["taskset", "f0"]
    assert argv[2] == "/data/local/tmp/kd-edge-bench/benchmark_model"
    for flag in ("--graph=/data/local/tmp/m.tflite", "--num_threads=4", "--num_runs=100", "--warmup_runs=10",
                 "--use_xnnpack=true", "--use_gpu=false", "--report_peak_memory_footprint=true"):
        assert flag in argv
    assert not any("gpu_precision" in a for a in argv)


def test_build_command_gpu_fp16_and_errors():
    argv = build_command("bm", "m.tflite", use_gpu=True, fp16=True)
    assert argv[0] == "bm" and "--use_gpu=true" in argv and "--gpu_precision_loss_allowed=true" in argv
    assert "--use_xnnpack=false" in argv
    assert "--gpu_precision_loss_allowed=false" in build_command("bm", "m.tflite", use_gpu=True)
    with pytest.raises(KdEdgeError, match="add --use-gpu"):
        build_command("bm", "m.tflite", fp16=True)
    for mask in ("0", "zz", "f0; reboot"):
        with pytest.raises(KdEdgeError, match="bad --cpu-mask"):
            build_command("bm", "m.tflite", cpu_mask=mask)
    with pytest.raises(KdEdgeError):
        build_command("bm", "m.tflite", threads=0)


def test_adb_commands_are_argument_lists(tmp_path):
    fake_adb = tmp_path / "adb"  # a real executable file so that find_adb accepts the path; never run here
    fake_adb.write_text("#!/bin/sh\nexit 1\n")
    fake_adb.chmod(0o755)
    dev = adb_mod.AdbDevice("emulator-5554", adb=str(fake_adb))
    assert dev.command("push", "/x/my model.tflite", "/data/local/tmp/kd-edge-bench/artifact-0.tflite") == [
        str(fake_adb), "-s", "emulator-5554", "push", "/x/my model.tflite", "/data/local/tmp/kd-edge-bench/artifact-0.tflite"]
    argv = ["sh", "/data/local/tmp/kd-edge-bench/device_peak_rss.sh", "/data/local/tmp/kd-edge-bench/peak-0-1.txt",
            *build_command("/data/local/tmp/kd-edge-bench/benchmark_model", "/data/local/tmp/kd-edge-bench/a b;$(x).tflite")]
    cmd = dev.shell_command(argv)
    assert cmd[:4] == [str(fake_adb), "-s", "emulator-5554", "shell"] and len(cmd) == 5
    assert shlex.split(cmd[4]) == argv  # the device shell gets exactly these words back


def _sh():
    return shutil.which("sh") or "/bin/sh"


def test_device_peak_rss_script_records_vmhwm(tmp_path):
    script = Path(adb_mod.PEAK_SCRIPT)
    out = tmp_path / "peak.txt"
    code = "import time; b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5); print('done')"
    res = subprocess.run([_sh(), str(script), str(out), sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "done"
    peak = parse_peak_rss(out.read_text())
    assert peak["exit_code"] == 0 and peak["samples"] >= 3
    assert peak["vm_hwm_kb"] > 80 * 1024 and peak["vm_rss_max_kb"] > 80 * 1024


def test_device_peak_rss_script_keeps_arguments_and_exit_code(tmp_path):
    out = tmp_path / "peak.txt"
    marker = tmp_path / "INJECTED"
    res = subprocess.run([_sh(), str(adb_mod.PEAK_SCRIPT), str(out), sys.executable, "-c",
                          "import sys; print(sys.argv[1:]); sys.exit(3)", "a b", f"$(touch {marker})"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and parse_peak_rss(out.read_text())["exit_code"] == 3
    assert res.stdout.strip() == repr(["a b", f"$(touch {marker})"]) and not marker.exists()
    res = subprocess.run([_sh(), str(adb_mod.PEAK_SCRIPT)], capture_output=True, text=True, timeout=10)
    assert res.returncode == 64 and "usage" in res.stderr


def test_parsed_output_becomes_a_valid_bench_result(tmp_path):
    art = tmp_path / "edge-s.tflite-int8.tflite"
    art.write_bytes(b"TFL3" + bytes(100))
    (tmp_path / (art.name + ".json")).write_text('{"target": "tflite-int8", "precision": "int8", "params": 300000, '
                                                 '"macs_256": 2000000000}')
    info = harness.describe_artifact(art)
    raw = adb_mod.raw_from_benchmark_model(parse_output(OUTPUT_CPU), parse_peak_rss("vm_hwm_kb=120000\nexit_code=0\n"),
                                           runs=50, warmup=10, use_gpu=False, fp16=False, use_xnnpack=True, size=256)
    r = harness.make_result(info, raw, threads=4, size=256)
    doc = harness.new_document(device_block={"kind": "adb", "target": "emulator-5554", "benchmark_model": "bm"},
                               host=adb_mod.device_facts(
                                   {"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7",
                                    "ro.board.platform": "gs201", "ro.build.version.release": "14",
                                    "ro.product.cpu.abi": "arm64-v8a"},
                                   "processor\t: 0\nBogoMIPS\t: 49.15\nFeatures\t: fp asimd evtstrm aes pmull sha1 "
                                   "sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp i8mm bf16\n"
                                   "CPU part\t: 0xd05\n\nprocessor\t: 4\nCPU part\t: 0xd41\n", "8"),
                               controller=None, settings={"runs": 50, "warmup": 10, "threads": [4], "sizes": [256]},
                               peak=None)
    doc["results"].append(r)
    schema.validate(doc)
    assert r["status"] == "ok" and r["peak_rss_mb"] == pytest.approx(120000 / 1024)
    assert r["rss_delta_mb"] == pytest.approx(109.832) and r["latency_ms"]["p50"] == pytest.approx(1239.807)
    assert r["gflops"] == pytest.approx(2 * 2e9 / 1.239807 / 1e9)
    assert r["vs_p100"]["student"]["latency_ratio"] == pytest.approx(1239.807 / 22)
    assert doc["host"]["cpu_model"].startswith("gs201") and "i8mm" in doc["host"]["isa_flags"]
    assert doc["host"]["os"] == "Android 14" and doc["host"]["cores_logical"] == 8
    failed = adb_mod.raw_from_benchmark_model(parse_output(OUTPUT_OLD), {"vm_hwm_kb": 1, "exit_code": 1}, runs=50,
                                              warmup=1, use_gpu=False, fp16=False, use_xnnpack=True, size=256)
    assert failed["status"] == "failed" and "exit code 1" in failed["reason"]


def test_cli_adb_without_adb_is_a_clear_error(tmp_path, kd_edge_exe):
    art = tmp_path / "m.tflite"
    art.write_bytes(b"TFL3")
    bm = tmp_path / "benchmark_model"
    bm.write_bytes(b"\x7fELF")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + ":/usr/bin:/bin")
    if shutil.which("adb", path=env["PATH"]):
        pytest.skip("adb is installed on this machine")
    res = subprocess.run([kd_edge_exe, "bench", str(art), "--device", "adb", "--benchmark-model", str(bm)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip() == ("kd-edge: error: adb not found (adb is not on PATH): install Android "
                                  "platform-tools or pass --adb /path/to/adb")
    res = subprocess.run([kd_edge_exe, "bench", str(art), "--device", "adb:XYZ", "--adb", str(tmp_path / "none")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1 and "adb not found" in res.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_artifacts import converted_artifacts

    return converted_artifacts(tmp_path_factory.mktemp("adb-parity"), size=32, targets=("tflite-fp32", "tflite-int8"))


def test_phone_parity_up_to_the_device_boundary(converted, tmp_path):
    """What kd-edge hands benchmark_model (raw input tensor files) and reads back (--output_filepath bytes), with
    real LiteRT standing in for the phone's benchmark_model: the same parity as the host runner measures."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from kd_edge.android_harness.parity import decode_output, encode_input, parity_flags, score, tensor_io
    from kd_edge.benchmarks import runner
    from kd_edge.converters.parity import probe_file_path

    art = converted["tflite-int8"]
    with np.load(probe_file_path(art)) as data:
        inputs, reference = data["inputs"], data["reference"]
    in_d, out_d = tensor_io(art)
    interp = Interpreter(model_path=str(art))
    interp.allocate_tensors()
    outputs = []
    for image in inputs:
        raw = encode_input(image, in_d)
        assert len(raw) == int(np.prod(in_d["shape"])) * np.dtype(in_d["dtype"]).itemsize
        # benchmark_model: the value file's bytes become the input tensor; --output_filepath gets the output's bytes
        interp.set_tensor(in_d["index"], np.frombuffer(raw, in_d["dtype"]).reshape(in_d["shape"]))
        interp.invoke()
        outputs.append(decode_output(interp.get_tensor(out_d["index"]).tobytes(), out_d, [1, *image.shape]))
    phone = score(outputs, reference, 30.0)
    host = runner.measure(str(art), threads=1, size=32, runs=1, warmup=0, parity=str(probe_file_path(art)),
                          gate_db=30.0)["parity"]
    assert phone["passed"] and phone["psnr_db"] == pytest.approx(host["psnr_db"], abs=1e-6)
    with pytest.raises(KdEdgeError, match="output bytes"):
        decode_output(b"\0" * 10, out_d, [1, 32, 32, 3])
    flags = parity_flags(in_d["name"], "/d/in.raw", "/d/out.bin", [1, 32, 32, 3])
    assert flags == [f"--input_layer={in_d['name']}", "--input_layer_shape=1,32,32,3",
                     f"--input_layer_value_files={in_d['name']}:/d/in.raw", "--output_filepath=/d/out.bin"]
    cmd = build_command("/d/benchmark_model", "/d/a.tflite", runs=1, warmup=0, report_peak_memory=False,
                        extra_flags=flags)
    assert "--num_runs=1" in cmd and "--warmup_runs=0" in cmd and cmd[-1] == "--output_filepath=/d/out.bin"
