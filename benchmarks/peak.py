"""Roofline peak: this host's practical fp32 (and int8) throughput, measured once and cached.

fp32: the best of a numpy float32 matmul (the BLAS numpy ships) and a conv-heavy LiteRT model (XNNPACK), per
thread count. int8: the same conv model fully int8-quantized, run by LiteRT (XNNPACK's QS8 kernels; VNNI/dot-product
where the CPU has them). Each point runs in a fresh subprocess with its thread count. The result is stored in
``$XDG_CACHE_HOME/kd-edge/peak.json`` (default ``~/.cache/kd-edge/peak.json``) keyed by CPU model and core count,
and copied into every bench JSON so reports can show the latency floor ``2*MACs/peak`` and efficiency.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kd_edge.atomic import write_bytes, write_json
from kd_edge.benchmarks import runner
from kd_edge.errors import KdEdgeError

CONV = {"size": 64, "channels": 64, "layers": 4, "kernel": 3}
MATMUL_N = 1024

_MATMUL_CODE = """
import sys, time, numpy as np
n = int(sys.argv[1]); rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32); b = rng.random((n, n), dtype=np.float32)
a @ b
best = 1e9
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
print(2.0 * n ** 3 / best / 1e9)
"""


def cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kd-edge" / "peak.json"


def _host_key(facts):
    return f"{facts.get('cpu_model')}|{facts.get('cores_logical')}|{facts.get('machine')}"


def load_cached(facts=None):
    """The cached peak for this host, or None."""
    facts = facts or runner.host_facts()
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(_host_key(facts))


def _thread_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def matmul_gflops(threads, n=MATMUL_N, repeats=10):
    res = subprocess.run([sys.executable, "-c", _MATMUL_CODE, str(n), str(repeats)], capture_output=True, text=True,
                         env=_thread_env(threads), timeout=300)
    if res.returncode != 0:
        raise KdEdgeError(f"peak: numpy matmul failed: {res.stderr.strip()[-300:]}")
    return float(res.stdout.strip().splitlines()[-1])


def conv_macs():
    c = CONV
    return c["size"] * c["size"] * c["channels"] * c["channels"] * c["kernel"] ** 2 * c["layers"]


def build_conv_models(out_dir):
    """Write peak_conv.fp32.tflite and peak_conv.int8.tflite (a stack of 3x3 convolutions) into out_dir."""
    import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    c = CONV
    inp = keras.Input((c["size"], c["size"], c["channels"]), batch_size=1)
    x = inp
    for _ in range(c["layers"]):
        x = keras.layers.Conv2D(c["channels"], c["kernel"], padding="same", activation="relu")(x)
    model = keras.Model(inp, x)
    out_dir = Path(out_dir)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    write_bytes(out_dir / "peak_conv.fp32.tflite", conv.convert())
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.random((1, c["size"], c["size"], c["channels"]), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    write_bytes(out_dir / "peak_conv.int8.tflite", conv.convert())
    return out_dir / "peak_conv.fp32.tflite", out_dir / "peak_conv.int8.tflite"


def _litert_gops(path, threads, runs=20):
    res = subprocess.run([sys.executable, runner.__file__, str(path), "--threads", str(threads), "--size",
                          str(CONV["size"]), "--runs", str(runs), "--warmup", "3"],
                         capture_output=True, text=True, env=_thread_env(threads), timeout=300)
    if res.returncode != 0:
        raise KdEdgeError(f"peak: LiteRT conv run failed: {res.stderr.strip()[-300:]}")
    raw = json.loads(res.stdout)
    return 2.0 * conv_macs() / (raw["latency_ms"]["min"] / 1e3) / 1e9


def measure_peak(threads_list=None, *, echo=None):
    """Measure and cache the peak. Returns the ``peak`` block of the bench schema."""
    facts = runner.host_facts()
    cores = facts.get("cores_available") or facts.get("cores_logical") or 1
    threads_list = sorted(set(threads_list or [t for t in (1, 2, 4, 8, 16) if t <= cores] or [1]))
    detail = {"numpy_matmul_fp32": {}, "litert_conv_fp32": {}, "litert_conv_int8": {}}
    fp32, int8 = {}, {}
    with tempfile.TemporaryDirectory(prefix="kd-edge-peak-") as tmp:
        f32_model, i8_model = build_conv_models(tmp)
        for t in threads_list:
            key = str(t)
            detail["numpy_matmul_fp32"][key] = matmul_gflops(t)
            detail["litert_conv_fp32"][key] = _litert_gops(f32_model, t)
            detail["litert_conv_int8"][key] = _litert_gops(i8_model, t)
            fp32[key] = max(detail["numpy_matmul_fp32"][key], detail["litert_conv_fp32"][key])
            int8[key] = detail["litert_conv_int8"][key]
            if echo:
                echo(f"peak threads={t}: fp32 {fp32[key]:.1f} GFLOP/s (numpy {detail['numpy_matmul_fp32'][key]:.1f}, "
                     f"LiteRT conv {detail['litert_conv_fp32'][key]:.1f}), int8 {int8[key]:.1f} GOP/s")
    peak = {
        "fp32_gflops": fp32, "int8_gops": int8, "detail": detail,
        "method": (f"best of numpy float32 {MATMUL_N}x{MATMUL_N} matmul and a LiteRT XNNPACK conv stack "
                   f"({CONV['layers']}x conv{CONV['kernel']}x{CONV['kernel']} {CONV['channels']}ch at "
                   f"{CONV['size']}x{CONV['size']}); int8 = the same conv stack full-int8; min latency, fresh process per point"),
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": facts.get("cpu_model"),
    }
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[_host_key(facts)] = peak
    write_json(path, data)
    return peak


def peak_for(peak, threads, precision):
    """Peak (GFLOP/s or GOP/s) for a thread count and precision, or None: the best measured at a thread count
    not above ``threads``."""
    if not peak:
        return None
    table = peak.get("int8_gops" if precision == "int8" else "fp32_gflops") or {}
    if not table:
        return None
    counts = sorted(int(k) for k in table)
    usable = [c for c in counts if c <= threads] or counts[:1]
    # More threads can always run as fewer: the practical peak at t threads is the best measured at <= t
    # (a loaded machine can measure 2 threads below 1).
    return max(table[str(c)] for c in usable)
