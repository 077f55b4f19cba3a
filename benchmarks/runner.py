#!/usr/bin/env python3
"""Standalone benchmark runner: one artifact, one thread count, one input size, in this process.

This file is copied as-is to remote boards (a Jetson over ssh) and run there, so it needs only the
Python standard library, numpy and the runtime of the artifact:

* ``.tflite``     LiteRT (``ai_edge_litert``), else ``tflite_runtime``, else ``tensorflow.lite``; XNNPACK, num_threads
* ``.onnx``       ONNX Runtime, CPU provider, intra_op_num_threads
* ``.keras``      TensorFlow + tf_keras (the baseline); ``--import MODULE`` registers custom layers first
* ``.mlpackage``  Core ML via coremltools; ``predict`` exists on macOS only: elsewhere the result says it was not run

It never imports kd_edge (it must run where kd_edge is not installed) unless ``--import`` names a kd_edge
module. It writes one JSON object (``--out FILE`` or stdout): load time, first inference, latency statistics
over ``--runs`` after ``--warmup``, peak resident memory (VmHWM) and the resident memory of the bare runtime
(measured after importing the runtime and before loading the model), and the facts of the host it ran on.

With ``--parity PROBE.npz --gate DB`` it also measures the artifact's parity on this machine (after the timings)
and fails the result when it is below the gate: int8 kernels differ by instruction set.

Usage: python runner.py ARTIFACT [--threads N] [--size S] [--runs R] [--warmup W] [--parity NPZ --gate DB] [--out FILE]
       python runner.py --host-facts [--out FILE]
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

RUNNER_VERSION = 2
PARITY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "neon")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "fphp",
             "asimdhp", "sve", "sve2", "i8mm", "bf16")


# ----------------------------------------------------------------------------------------------- memory
def _proc_status_kb(field):
    """A field of /proc/self/status in KiB (Linux, Android), or None elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb():
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    try:
        import psutil  # optional (macOS)

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


def peak_rss_mb():
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------------------------- host facts
def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def _cpu_model(cpuinfo):
    for key in ("model name", "Hardware", "Model", "cpu model", "Processor"):
        for line in cpuinfo.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value:
                    return value
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _physical_cores(cpuinfo):
    pairs = set()
    phys = core = None
    for line in cpuinfo.splitlines() + [""]:
        if not line.strip():
            if core is not None:
                pairs.add((phys, core))
            phys = core = None
        elif line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
    return len(pairs) or None


def _version(dist, module=None):
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - Python < 3.8
        pass
    if module and module in sys.modules:
        return getattr(sys.modules[module], "__version__", None)
    return None


def isa_flags(cpuinfo=None):
    """The ISA_FLAGS this CPU shows in /proc/cpuinfo (x86 'flags', Arm 'Features'), sorted; [] where unknown."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = set()
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in flags if f in ISA_FLAGS)


def host_facts():
    """CPU model, cores, ISA flags, OS and runtime versions of the machine this runs on."""
    cpuinfo = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    mem_total = None
    try:
        with open("/proc/meminfo") as fh:
            mem_total = round(int(fh.readline().split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    runtimes = {}
    for dist in ("ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow", "tf-keras", "coremltools", "numpy"):
        v = _version(dist)
        if v:
            runtimes[dist] = v
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(cpuinfo),
        "machine": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": _physical_cores(cpuinfo),
        "cores_available": affinity,
        "isa_flags": isa_flags(cpuinfo),
        "memory_total_mb": mem_total,
        "os": f"{platform.system()} {platform.release()}",
        "os_detail": platform.platform(),
        "python": platform.python_version(),
        "runtimes": runtimes,
    }


# ----------------------------------------------------------------------------------------------- engines
class NotRun(Exception):
    """The artifact cannot be measured here (wrong OS, fixed size mismatch); the reason goes in the JSON."""


def _random_input(shape, seed=0):
    import numpy as np

    return np.random.default_rng(seed).random(shape, dtype=np.float32)


class TFLiteEngine:
    kind = "tflite"

    def __init__(self, threads, use_xnnpack=True):
        self.threads = threads
        self.use_xnnpack = use_xnnpack
        try:
            from ai_edge_litert.interpreter import Interpreter

            self.runtime, self.runtime_version = "litert", _version("ai-edge-litert")
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter

                self.runtime, self.runtime_version = "tflite_runtime", _version("tflite-runtime")
            except ImportError:
                from tensorflow.lite import Interpreter

                self.runtime, self.runtime_version = "tensorflow.lite", _version("tensorflow")
        self._Interpreter = Interpreter
        self.delegate = "xnnpack" if use_xnnpack else "builtin"

    def load(self, path, size):
        import numpy as np

        kwargs = {"model_path": path, "num_threads": self.threads}
        if not self.use_xnnpack:
            try:
                from ai_edge_litert.interpreter import OpResolverType

                kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            except ImportError:
                pass
        self.interp = self._Interpreter(**kwargs)
        inp = self.interp.get_input_details()[0]
        sig = list(inp.get("shape_signature", inp["shape"]))
        if any(d == -1 for d in sig[1:3]):
            shape = [1, size, size, int(sig[3]) if sig[3] > 0 else 3]
            self.interp.resize_tensor_input(inp["index"], shape)
        else:
            shape = [int(d) for d in inp["shape"]]
            shape[0] = 1
            if shape[1] != size or shape[2] != size:
                raise NotRun(f"fixed input {shape[1]}x{shape[2]}, requested {size}x{size}")
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        x = _random_input(shape)
        dtype = self.inp["dtype"]
        self.input_dtype = np.dtype(dtype).name
        if dtype in (np.int8, np.uint8):
            scale, zero = self.inp["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.x = x
        self.shape = shape

    def infer(self):
        self.interp.set_tensor(self.inp["index"], self.x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])

    def predict(self, x):
        """float32 NHWC in [0, 1] -> float32 output; int8 I/O (de)quantised with the model's parameters."""
        import numpy as np

        if list(self.inp["shape"]) != list(x.shape):
            self.interp.resize_tensor_input(self.inp["index"], list(x.shape))
            self.interp.allocate_tensors()
            self.inp = self.interp.get_input_details()[0]
            self.out = self.interp.get_output_details()[0]
        dtype = self.inp["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self.inp["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if y.dtype in (np.int8, np.uint8):
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return np.asarray(y, np.float32)


class ONNXEngine:
    kind = "onnx"

    def __init__(self, threads):
        import onnxruntime as ort

        self.ort = ort
        self.threads = threads
        self.runtime, self.runtime_version = "onnxruntime", ort.__version__
        self.delegate = "CPUExecutionProvider"

    def load(self, path, size):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = self.ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        dims = list(inp.shape)
        nchw = len(dims) == 4 and dims[1] == 3 and dims[3] != 3
        if nchw:
            shape = [1, 3, size, size]
            fixed = [d for d in dims[2:4] if isinstance(d, int)]
        else:
            shape = [1, size, size, dims[3] if isinstance(dims[3], int) else 3]
            fixed = [d for d in dims[1:3] if isinstance(d, int)]
        if fixed and any(d != size for d in fixed):
            raise NotRun(f"fixed input {dims}, requested {size}x{size}")
        self.name = inp.name
        self.input_dtype = "float16" if "float16" in inp.type else "float32"
        import numpy as np

        self.x = _random_input(shape).astype(self.input_dtype)
        self.shape = shape
        self._np = np

    def infer(self):
        return self.sess.run(None, {self.name: self.x})[0]

    def predict(self, x):
        return self._np.asarray(self.sess.run(None, {self.name: x.astype(self.input_dtype)})[0], self._np.float32)


class KerasEngine:
    kind = "keras"

    def __init__(self, threads, imports=()):
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import importlib

        for module in imports:
            if ":" in module:  # a kd-edge --custom-objects MODULE:NAME spec (kd-edge is installed here)
                from kd_edge.models.user_objects import register

                register(module)
            else:
                importlib.import_module(module)
        import tensorflow as tf
        import tf_keras

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.tf, self.keras = tf, tf_keras
        self.threads = threads
        self.runtime, self.runtime_version = "tensorflow", tf.__version__
        self.delegate = "tf_keras"

    def load(self, path, size):
        if "kd_edge" in sys.modules:  # imported by --import: kd-edge's one loader (.keras, .h5, SavedModel)
            from kd_edge.models import load_model

            self.model = load_model(path, verify=False)[0]
        else:
            self.model = self.keras.models.load_model(path, compile=False)
        dims = list(self.model.input_shape)
        fixed = [d for d in dims[1:3] if d is not None]
        if fixed and any(d != size for d in fixed):
            raise NotRun(f"fixed input {dims}, requested {size}x{size}")
        self.shape = [1, size, size, dims[3] or 3]
        self.x = self.tf.constant(_random_input(self.shape))
        self.input_dtype = "float32"
        self._call = self.tf.function(lambda t: self.model(t, training=False), reduce_retracing=True)

    def infer(self):
        return self._call(self.x).numpy()

    def predict(self, x):
        return self._call(self.tf.constant(x)).numpy()


class CoreMLEngine:
    kind = "coreml"

    def __init__(self, threads):
        if sys.platform != "darwin":
            raise NotRun(f"Core ML predict runs on macOS only; this host is {platform.system()}: not run")
        import coremltools as ct

        self.ct = ct
        self.runtime, self.runtime_version = "coremltools", ct.__version__
        self.delegate = "CPU_ONLY"

    def load(self, path, size):
        self.model = self.ct.models.MLModel(path, compute_units=self.ct.ComputeUnit.CPU_ONLY)
        spec = self.model.get_spec()
        self.name = spec.description.input[0].name
        self.shape = [1, size, size, 3]
        self.x = _random_input(self.shape)
        self.input_dtype = "float32"

    def infer(self):
        return self.model.predict({self.name: self.x})


def artifact_kind(path):
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "keras"  # a tf_keras SavedModel folder
    p = path.rstrip("/").lower()
    for suffix, kind in ((".tflite", "tflite"), (".onnx", "onnx"), (".keras", "keras"), (".h5", "keras"),
                         (".mlpackage", "coreml"), (".mlmodel", "coreml")):
        if p.endswith(suffix):
            return kind
    raise ValueError(f"{path}: unknown artifact type (expected .tflite, .onnx, .keras, .mlpackage)")


def make_engine(kind, threads, imports=(), use_xnnpack=True):
    if kind == "tflite":
        return TFLiteEngine(threads, use_xnnpack=use_xnnpack)
    if kind == "onnx":
        return ONNXEngine(threads)
    if kind == "keras":
        return KerasEngine(threads, imports)
    if kind == "coreml":
        return CoreMLEngine(threads)
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------- measuring
def latency_stats(times_ms):
    """mean/std/min/max/p50/p90/p99 of a list of latencies in milliseconds."""
    import numpy as np

    t = np.asarray(times_ms, dtype=np.float64)
    return {
        "mean": float(t.mean()), "std": float(t.std(ddof=1)) if t.size > 1 else 0.0,
        "min": float(t.min()), "max": float(t.max()),
        "p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)),
    }


def psnr_db(reference, candidate):
    """PSNR (dB, max_val 1) of one image, capped at 100 dB (identical images), as kd_edge.metrics.psnr."""
    import numpy as np

    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(candidate, np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else min(100.0, 10.0 * np.log10(1.0 / mse))


def measure_parity(engine, probe_path, gate_db):
    """Parity of the loaded artifact on this machine: the converter's probe (``<artifact>.parity.npz``: uint8
    inputs, the Keras reference as float16) run through ``engine`` here, minimum PSNR against the reference."""
    import numpy as np

    with np.load(probe_path, allow_pickle=False) as probe:
        inputs, reference = probe["inputs"], probe["reference"].astype(np.float32)
    values = []
    for image, ref in zip(inputs, reference):
        out = engine.predict(image[None].astype(np.float32) / np.float32(255.0))
        values.append(psnr_db(ref, np.asarray(out, np.float32).reshape(ref.shape)))
    worst = min(values)
    return {"measured": True, "psnr_db": worst, "psnr_db_per_image": values, "threshold_db": gate_db,
            "passed": None if gate_db is None else bool(worst >= gate_db), "probe_images": len(values),
            "probe_shape": list(inputs.shape[1:]), "metric": "minimum PSNR (dB, max_val 1) vs the Keras reference"}


def measure(path, *, threads=1, size=256, runs=100, warmup=10, imports=(), use_xnnpack=True, parity=None,
            gate_db=None):
    """Measure one artifact in this process. Returns the runner's JSON object. ``parity``: the artifact's
    ``.parity.npz``; measured after the timings and the peak memory, a result below ``gate_db`` fails."""
    result = {"runner_version": RUNNER_VERSION, "artifact": path, "threads": threads, "size": size,
              "runs": runs, "warmup": warmup, "status": "ok", "reason": None, "pid": os.getpid()}
    kind = artifact_kind(path)
    result["kind"] = kind
    try:
        result["load_avg_1m"] = os.getloadavg()[0]  # other work on the machine skews timings: record it
    except (AttributeError, OSError):
        result["load_avg_1m"] = None
    try:
        engine = make_engine(kind, threads, imports, use_xnnpack)
    except NotRun as exc:
        result.update(status="not_run", reason=str(exc))
        return result
    import numpy as np  # noqa: F401  (part of the bare runtime footprint)

    result.update(runtime=engine.runtime, runtime_version=engine.runtime_version, delegate=engine.delegate)
    result["runtime_rss_mb"] = current_rss_mb()
    t0 = time.perf_counter()
    try:
        engine.load(path, size)
    except NotRun as exc:
        result.update(status="not_run", reason=str(exc))
        return result
    result["init_ms"] = (time.perf_counter() - t0) * 1e3
    result["loaded_rss_mb"] = current_rss_mb()
    result["input_shape"] = list(engine.shape)
    result["input_dtype"] = engine.input_dtype
    t0 = time.perf_counter()
    engine.infer()
    result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        engine.infer()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.infer()
        times.append((time.perf_counter() - t0) * 1e3)
    result["latency_ms"] = latency_stats(times)
    result["mpix_per_s"] = size * size / (result["latency_ms"]["p50"] / 1e3) / 1e6
    result["peak_rss_mb"] = peak_rss_mb()
    if result["runtime_rss_mb"] is not None and result["peak_rss_mb"] is not None:
        result["rss_delta_mb"] = result["peak_rss_mb"] - result["runtime_rss_mb"]
    if parity:
        result["parity"] = measure_parity(engine, parity, gate_db)
        if result["parity"]["passed"] is False:
            flags = " ".join(f for f in host_facts()["isa_flags"] if f in PARITY_FLAGS) or "no avx2/vnni/dotprod flags"
            result.update(status="failed", reason=(
                f"parity {result['parity']['psnr_db']:.1f} dB < gate {gate_db:g} dB on this host ({flags}): "
                "the artifact's numerics differ here from where it was converted; do not deploy it here"))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", nargs="?")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-xnnpack", action="store_true", help="LiteRT without the default XNNPACK delegate")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        help="module to import before loading a .keras model (registers custom layers)")
    parser.add_argument("--unsafe-lambda", action="store_true",
                        help="with kd-edge installed: let Keras Lambda layers load (their code runs)")
    parser.add_argument("--parity", help="the artifact's .parity.npz: measure parity here after the timings")
    parser.add_argument("--gate", type=float, help="parity gate in dB (with --parity): below it the result fails")
    parser.add_argument("--host-facts", action="store_true", help="print only the host facts")
    parser.add_argument("--out", default="-", help="JSON output file ('-' = stdout)")
    args = parser.parse_args(argv)
    if args.unsafe_lambda:
        from kd_edge.models.user_objects import allow_unsafe_lambda

        allow_unsafe_lambda()
    if args.host_facts:
        payload = host_facts()
    else:
        if not args.artifact:
            parser.error("ARTIFACT is required")
        if not os.path.exists(args.artifact):
            print(f"runner: {args.artifact}: no such file", file=sys.stderr)
            return 1
        if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.size < 1:
            parser.error("--runs, --threads and --size must be >= 1, --warmup >= 0")
        if args.parity and not os.path.exists(args.parity):
            print(f"runner: {args.parity}: no such file", file=sys.stderr)
            return 1
        payload = measure(args.artifact, threads=args.threads, size=args.size, runs=args.runs, warmup=args.warmup,
                          imports=args.imports, use_xnnpack=not args.no_xnnpack, parity=args.parity,
                          gate_db=args.gate)
        payload["host"] = host_facts()
    text = json.dumps(payload, indent=1)
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
