"""Benchmark .tflite artifacts on an Android phone through ``adb`` and LiteRT's ``benchmark_model`` binary.

Flow per artifact and thread count: push the binary (path given by the user, e.g. a prebuilt
``android_aarch64_benchmark_model``), ``device_peak_rss.sh`` and the artifact into ``/data/local/tmp/kd-edge-bench``;
run ``sh device_peak_rss.sh PEAK_FILE [taskset MASK] benchmark_model --graph=... --num_threads=N ...`` with
``adb shell``; parse benchmark_model's timing/memory output; ``adb pull`` the peak-RSS file; emit results of the
bench schema. Every adb call is an argument list; the device-side command line (adb hands one string to the device
shell) is ``shlex.join`` of fixed tokens and fixed device paths (artifacts are pushed as ``artifact-<i>.tflite``).

Parity on the phone: each probe image of the artifact's ``.parity.npz`` runs once through benchmark_model
(``--input_layer_value_files``, ``--output_filepath``; see android_harness/parity.py) and is scored on the host.

Not run on hardware here: no phone was attached where kd-edge was developed. Command construction and output
parsing are unit-tested; device_peak_rss.sh is tested on Linux.
"""
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from kd_edge.benchmarks import harness, runner
from kd_edge.benchmarks.host import local_host_facts
from kd_edge.benchmarks.schema import validate
from kd_edge.errors import InputFileError, KdEdgeError

from .benchmark_model import build_command, parse_output, parse_peak_rss
from .parity import decode_output, encode_input, parity_flags, score, tensor_io

DEVICE_DIR = "/data/local/tmp/kd-edge-bench"
PEAK_SCRIPT = Path(__file__).resolve().with_name("device_peak_rss.sh")


def find_adb(adb=None):
    """The adb executable, or KdEdgeError with what to do."""
    exe = shutil.which(adb or "adb")
    if not exe:
        raise KdEdgeError(f"adb not found ({adb or 'adb'} is not on PATH): install Android platform-tools "
                          "or pass --adb /path/to/adb")
    return exe


class AdbDevice:
    """One phone. ``serial`` None = the only attached device."""

    def __init__(self, serial=None, *, adb=None, timeout=900):
        self.adb = find_adb(adb)
        self.serial = serial
        self.timeout = timeout

    def command(self, *args):
        return [self.adb, *(["-s", self.serial] if self.serial else []), *map(str, args)]

    def shell_command(self, argv):
        """adb shell with one device-side command line made by shlex.join (no user text is re-split)."""
        return self.command("shell", shlex.join([str(a) for a in argv]))

    def _run(self, cmd, what, check=True):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise KdEdgeError(f"adb: {what} timed out after {self.timeout} s") from None
        if check and res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise KdEdgeError(f"adb: {what} failed (exit {res.returncode}): {msg[-1] if msg else ''}")
        return res

    def check_connected(self):
        res = self._run(self.command("get-state"), "get-state", check=False)
        if res.returncode != 0 or res.stdout.strip() != "device":
            who = f"device {self.serial}" if self.serial else "a device"
            raise KdEdgeError(f"adb: {who} is not connected/authorized ({(res.stderr or res.stdout).strip()})")

    def shell(self, argv, what, check=True):
        return self._run(self.shell_command(argv), what, check=check)

    def push(self, local, remote):
        self._run(self.command("push", str(local), remote), f"push {Path(local).name}")

    def pull(self, remote, local):
        self._run(self.command("pull", remote, str(local)), f"pull {remote}")

    def facts(self):
        props = {}
        for key in ("ro.product.manufacturer", "ro.product.model", "ro.board.platform", "ro.soc.model",
                    "ro.build.version.release", "ro.product.cpu.abi"):
            props[key] = self.shell(["getprop", key], f"getprop {key}", check=False).stdout.strip()
        cpuinfo = self.shell(["cat", "/proc/cpuinfo"], "cat /proc/cpuinfo", check=False).stdout
        nproc = self.shell(["nproc"], "nproc", check=False).stdout.strip()
        return device_facts(props, cpuinfo, nproc)


def device_facts(props, cpuinfo, nproc):
    """Host facts of the bench schema for a phone, from getprop values, /proc/cpuinfo and nproc."""
    flags = set()
    parts = set()
    for line in cpuinfo.splitlines():
        key = line.split(":")[0].strip()
        if key in ("Features", "flags"):
            flags.update(line.split(":", 1)[1].split())
        if key == "CPU part":
            parts.add(line.split(":", 1)[1].strip())
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or ""
    model = " ".join(v for v in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if v)
    cpu = runner._cpu_model(cpuinfo) if "Hardware" in cpuinfo or "model name" in cpuinfo else ""
    return {
        "hostname": model or None,
        "cpu_model": " / ".join(v for v in (soc, cpu, f"CPU parts {','.join(sorted(parts))}" if parts else "") if v) or None,
        "machine": props.get("ro.product.cpu.abi") or None,
        "cores_logical": int(nproc) if str(nproc).isdigit() else None,
        "cores_physical": None, "cores_available": None,
        "isa_flags": sorted(f for f in flags if f in runner.ISA_FLAGS),
        "memory_total_mb": None,
        "os": f"Android {props.get('ro.build.version.release') or '?'}",
        "python": None, "runtimes": {},
    }


def _tflite_input(path, size):
    """(fixed size or None, input name) of a .tflite, read on the host with LiteRT."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT is a dependency
        return None, None
    inp = Interpreter(model_path=str(path)).get_input_details()[0]
    sig = list(inp.get("shape_signature", inp["shape"]))
    fixed = None if any(d == -1 for d in sig[1:3]) else int(sig[1])
    return fixed, inp["name"]


def raw_from_benchmark_model(parsed, peak, *, runs, warmup, use_gpu, fp16, use_xnnpack, size):
    """benchmark_model's parsed output + device_peak_rss.sh's -> the runner's raw dict shape."""
    lat = parsed.get("latency_ms")
    if lat is None:
        avg = parsed["inference_avg_ms"]
        lat = {"mean": avg, "std": 0.0, "min": avg, "max": avg, "p50": avg, "p90": None, "p99": None}
    peak_mb = peak["vm_hwm_kb"] / 1024.0 if peak and peak.get("vm_hwm_kb") else parsed.get("mem_peak_mb")
    delta = parsed.get("mem_overall_mb")
    raw = {
        "status": "ok", "reason": None, "runtime": "benchmark_model", "runtime_version": None,
        "delegate": ("gpu-fp16" if fp16 else "gpu") if use_gpu else ("xnnpack" if use_xnnpack else "builtin"),
        "runs": parsed.get("runs", runs), "warmup": warmup, "input_dtype": None,
        "init_ms": parsed["init_ms"], "first_inference_ms": parsed["first_inference_ms"], "latency_ms": lat,
        "mpix_per_s": size * size / (lat["p50"] / 1e3) / 1e6,
        "peak_rss_mb": peak_mb, "rss_delta_mb": delta,
        "runtime_rss_mb": (peak_mb - delta) if (peak_mb is not None and delta is not None) else None,
    }
    if peak and peak.get("exit_code"):
        raw.update(status="failed", reason=f"benchmark_model exit code {peak['exit_code']}")
    return raw


def phone_parity(dev, info, *, remote_bin, remote_art, dynamic, tmp, index, threads, use_xnnpack, use_gpu, fp16,
                 cpu_mask):
    """The artifact's parity on the phone (see android_harness/parity.py); {"measured": False, ...} on failure."""
    import numpy as np

    probe = info["parity_probe"]
    with np.load(probe["path"], allow_pickle=False) as data:
        inputs, reference = data["inputs"], data["reference"]
    in_detail, out_detail = tensor_io(info["artifact"])
    outputs = []
    try:
        for j, image in enumerate(inputs):
            local_in, local_out = Path(tmp) / f"probe-{index}-{j}.raw", Path(tmp) / f"probe-{index}-{j}.out"
            remote_in, remote_out = f"{DEVICE_DIR}/probe-{index}-{j}.raw", f"{DEVICE_DIR}/probe-{index}-{j}.out"
            local_in.write_bytes(encode_input(image, in_detail))
            dev.push(local_in, remote_in)
            shape = [1, *image.shape]
            flags = parity_flags(in_detail["name"], remote_in, remote_out, shape if dynamic else None)
            cmd = build_command(remote_bin, remote_art, threads=threads, runs=1, warmup=0, use_xnnpack=use_xnnpack,
                                use_gpu=use_gpu, fp16=fp16, cpu_mask=cpu_mask, report_peak_memory=False,
                                extra_flags=flags)
            dev.shell(cmd, f"benchmark_model parity {info['name']}")
            dev.pull(remote_out, local_out)
            outputs.append(decode_output(local_out.read_bytes(), out_detail, shape))
    except KdEdgeError as exc:
        return {"measured": False, "reason": f"parity on the phone: {exc}"}
    return score(outputs, reference, probe["threshold_db"])


def bench_adb(artifacts, *, benchmark_model, serial=None, adb=None, threads=(1,), size=256, runs=100, warmup=10,
              use_xnnpack=True, use_gpu=False, fp16=False, cpu_mask=None, command=None, notes=(), echo=None):
    """Benchmark .tflite artifacts on a phone. Returns a validated bench document (device kind 'adb')."""
    # the artifacts first: a missing or modified file (sha256 against its manifest) is refused before adb is touched
    infos = [harness.describe_artifact(a) for a in harness.expand_artifacts(artifacts)]
    dev = AdbDevice(serial, adb=adb)
    binary = Path(benchmark_model) if benchmark_model else None
    if binary is None:
        raise KdEdgeError("--device adb needs --benchmark-model PATH (LiteRT's benchmark_model built for the phone)")
    if not binary.is_file():
        raise InputFileError(binary, "no such file (LiteRT benchmark_model binary for the phone)")
    build_command("benchmark_model", "x.tflite", threads=max(threads), runs=runs, warmup=warmup, use_gpu=use_gpu,
                  fp16=fp16, cpu_mask=cpu_mask)  # validates options before touching the device
    dev.check_connected()
    dev.shell(["mkdir", "-p", DEVICE_DIR], "mkdir")
    remote_bin = f"{DEVICE_DIR}/benchmark_model"
    remote_script = f"{DEVICE_DIR}/device_peak_rss.sh"
    dev.push(binary, remote_bin)
    dev.push(PEAK_SCRIPT, remote_script)
    dev.shell(["chmod", "755", remote_bin, remote_script], "chmod")
    doc = harness.new_document(
        device_block={"kind": "adb", "target": serial or "(default device)", "remote_python": None,
                      "benchmark_model": str(binary)},
        host=dev.facts(), controller=local_host_facts(),
        settings={"runs": runs, "warmup": warmup, "threads": list(threads), "sizes": [size],
                  "fresh_process_per_result": True,
                  "adb": {"use_xnnpack": use_xnnpack, "use_gpu": use_gpu, "fp16": fp16, "cpu_mask": cpu_mask}},
        peak=None, command=command, notes=notes)
    doc["notes"].append("adb: timings and the memory delta are benchmark_model's; peak RSS is VmHWM polled by "
                        "device_peak_rss.sh; p90/p99 are not reported by benchmark_model (p5/p95 are)")
    with tempfile.TemporaryDirectory(prefix="kd-edge-adb-") as tmp:
        for i, info in enumerate(infos):
            if info["kind"] != "tflite":
                for t in threads:
                    doc["results"].append(harness.make_result(
                        info, {"status": "not_run", "reason": "the adb path runs .tflite artifacts (benchmark_model)"},
                        threads=t, size=size))
                continue
            fixed, input_name = _tflite_input(info["artifact"], size)
            extra = []
            if fixed is None and input_name:
                extra = [f"--input_layer={input_name}", f"--input_layer_shape=1,{size},{size},3"]
            eff_size = fixed or size
            remote_art = f"{DEVICE_DIR}/artifact-{i}.tflite"
            dev.push(info["artifact"], remote_art)
            phone = dict(remote_bin=remote_bin, remote_art=remote_art, dynamic=fixed is None, tmp=tmp, index=i,
                         threads=max(threads), use_xnnpack=use_xnnpack, use_gpu=use_gpu, fp16=fp16, cpu_mask=cpu_mask)
            parity = phone_parity(dev, info, **phone) if info["parity_probe"].get("path") else None
            for t in threads:
                peak_remote = f"{DEVICE_DIR}/peak-{i}-{t}.txt"
                bm = build_command(remote_bin, remote_art, threads=t, runs=runs, warmup=warmup,
                                   use_xnnpack=use_xnnpack, use_gpu=use_gpu, fp16=fp16, cpu_mask=cpu_mask,
                                   extra_flags=extra)
                res = dev.shell(["sh", remote_script, peak_remote, *bm], f"benchmark_model {info['name']}", check=False)
                try:
                    parsed = parse_output(res.stdout + "\n" + res.stderr)
                    local = Path(tmp) / f"peak-{i}-{t}.txt"
                    dev.pull(peak_remote, local)
                    peak = parse_peak_rss(local.read_text())
                    raw = raw_from_benchmark_model(parsed, peak, runs=runs, warmup=warmup, use_gpu=use_gpu, fp16=fp16,
                                                   use_xnnpack=use_xnnpack, size=eff_size)
                except KdEdgeError as exc:
                    raw = {"status": "failed", "reason": str(exc)}
                if parity is not None:
                    raw["parity"] = parity
                    if parity.get("passed") is False and raw["status"] == "ok":
                        raw.update(status="failed", reason=(
                            f"parity {parity['psnr_db']:.1f} dB < gate {parity['threshold_db']:g} dB on this phone: "
                            "the artifact's numerics differ here from where it was converted; do not deploy it here"))
                result = harness.make_result(info, raw, threads=t, size=eff_size)
                doc["results"].append(result)
                if echo:
                    echo(harness.one_line(result))
    dev.shell(["rm", "-rf", DEVICE_DIR], "cleanup", check=False)
    return validate(doc)
