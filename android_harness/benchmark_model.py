"""LiteRT's ``benchmark_model`` tool: command construction and output parsing.

The output format is the one printed by tensorflow/lite/tools/benchmark/benchmark_model.cc
(``BenchmarkLoggingListener::OnBenchmarkEnd``) and benchmark_tflite_model.cc, with or without the ``INFO: `` or
logcat prefixes::

    The input model file size (MB): 1.2345
    Initialized session in 66.002ms.
    count=50 first=2531 curr=2793 min=1171 max=9925 avg=1885.74 std=870 p5=1190 median=1800 p95=3500
    Inference timings in us: Init: 66002, First inference: 637079, Warmup (avg): 637079, Inference (avg): 1885.74
    Memory footprint delta from the start of the tool (MB): init=7.40234 overall=7.83203
    Peak memory footprint (MB): init=4.92969 overall=138.809          (newer releases)
    Overall peak memory footprint (MB) via periodic monitoring: 140.2 (--report_peak_memory_footprint=true)

The last ``count=`` line is the measured runs (the one before it is the warm-up).
"""
import re

from kd_edge.errors import KdEdgeError

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                      + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_MEM_DELTA = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init="
                        + _NUM + r" overall=" + _NUM)
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)
_STATS = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")+)")
_KV = re.compile(r"(\w+)=" + _NUM)
_FILE_MB = re.compile(r"The input model file size \(MB\): " + _NUM)
_INIT_SESSION = re.compile(r"Initialized session in " + _NUM + r"\s*ms")
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\)")


def build_command(binary, graph, *, threads=1, runs=100, warmup=10, use_xnnpack=True, use_gpu=False, fp16=False,
                  cpu_mask=None, report_peak_memory=True, extra_flags=()):
    """The argument list that runs benchmark_model on the device (``taskset MASK`` first when cpu_mask is given).

    cpu_mask: hexadecimal CPU affinity mask for taskset (e.g. "f0" = the four big cores of a 4+4 SoC).
    fp16: --gpu_precision_loss_allowed=true (fp16 arithmetic in the GPU delegate); needs use_gpu.
    """
    if threads < 1 or runs < 1 or warmup < 0:
        raise KdEdgeError("benchmark_model: threads and runs must be >= 1, warmup >= 0")
    if fp16 and not use_gpu:
        raise KdEdgeError("benchmark_model: --fp16 (gpu_precision_loss_allowed) applies to the GPU delegate: add --use-gpu")
    argv = []
    if cpu_mask is not None:
        mask = str(cpu_mask).lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]+", mask) or int(mask, 16) == 0:
            raise KdEdgeError(f"bad --cpu-mask {cpu_mask!r}: a non-zero hexadecimal CPU mask such as f0")
        argv += ["taskset", mask]
    argv += [
        str(binary), f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}",
        f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0",
        f"--use_xnnpack={'true' if use_xnnpack and not use_gpu else 'false'}",
        f"--use_gpu={'true' if use_gpu else 'false'}",
    ]
    if use_gpu:
        argv.append(f"--gpu_precision_loss_allowed={'true' if fp16 else 'false'}")
    if report_peak_memory:
        argv.append("--report_peak_memory_footprint=true")
    argv += list(extra_flags)
    return argv


def _f(text):
    return float(text)


def parse_output(text):
    """benchmark_model's output -> dict (times in ms, memory in MB). KdEdgeError if the timing summary is missing."""
    m = _TIMINGS.search(text)
    if not m:
        tail = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
        raise KdEdgeError("benchmark_model output has no 'Inference timings in us' line (did it fail?): "
                          + " | ".join(tail))
    init_us, first_us, warmup_us, avg_us = map(_f, m.groups())
    out = {"init_ms": init_us / 1e3, "first_inference_ms": first_us / 1e3, "warmup_avg_ms": warmup_us / 1e3,
           "inference_avg_ms": avg_us / 1e3}
    stats = [dict((k, _f(v)) for k, v in _KV.findall(s.group(0))) for s in _STATS.finditer(text)]
    if stats:
        runs = stats[-1]
        lat = {"mean": runs.get("avg", avg_us) / 1e3, "std": runs.get("std", 0.0) / 1e3,
               "min": runs.get("min", avg_us) / 1e3, "max": runs.get("max", avg_us) / 1e3,
               "p50": runs.get("median", runs.get("avg", avg_us)) / 1e3, "p90": None, "p99": None,
               "p5": runs["p5"] / 1e3 if "p5" in runs else None, "p95": runs["p95"] / 1e3 if "p95" in runs else None}
        out["runs"] = int(runs["count"])
        out["latency_ms"] = lat
        out["median_reported"] = "median" in runs
    mem = _MEM_DELTA.search(text)
    if mem:
        out["mem_init_mb"], out["mem_overall_mb"] = map(_f, mem.groups())
    peak = _MEM_PEAK.search(text)
    if peak:
        out["mem_peak_mb"] = _f(peak.group(1))
    fm = _FILE_MB.search(text)
    if fm:
        out["model_file_mb"] = _f(fm.group(1))
    dm = _DELEGATED.search(text)
    if dm:
        out["delegated_nodes"] = [int(dm.group(1)), int(dm.group(2))]
        out["delegate_name"] = dm.group(3)
    out["gpu_delegate"] = "GPU delegate created" in text or "Created TensorFlow Lite delegate for GPU" in text
    out["xnnpack"] = "XNNPACK delegate" in text
    return out


def parse_peak_rss(text):
    """device_peak_rss.sh's result file -> dict of ints (vm_hwm_kb, vm_rss_max_kb, samples, exit_code, pid)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    if "vm_hwm_kb" not in out:
        raise KdEdgeError("device_peak_rss.sh wrote no vm_hwm_kb line")
    return out
