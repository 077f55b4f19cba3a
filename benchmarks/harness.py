"""Benchmark orchestration: every (artifact, threads, size) in a fresh runner process, locally or over ssh,
turned into one document of the versioned bench schema (see benchmarks/bench_schema.json).

Public API::

    doc = bench(["out/edge-s.int8.tflite", "out/edge-s.onnx"], threads=[1, 2], sizes=[256], runs=100, warmup=10,
                device="local")            # or "ssh:user@jetson[:port]" (see kd_edge.benchmarks.ssh)
    describe_artifact(path) -> dict        # name, target, kind, precision, params, macs_256, file and gzip bytes
"""
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kd_edge import __version__
from kd_edge.benchmarks import peak as peak_mod
from kd_edge.benchmarks import reference, runner
from kd_edge.benchmarks.host import local_host_facts
from kd_edge.benchmarks.schema import SCHEMA_NAME, SCHEMA_VERSION, validate
from kd_edge.errors import InputFileError, KdEdgeError

ARTIFACT_SUFFIXES = (".tflite", ".onnx", ".keras", ".h5", ".mlpackage")
RUNNER_PATH = Path(runner.__file__).resolve()
KERAS_CUSTOM_LAYERS_MODULE = "kd_edge.models.layers"


# ----------------------------------------------------------------------------------------------- artifacts
def _read_manifest(path):
    p = Path(str(path).rstrip("/") + ".json")
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value):
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _gzip_bytes(path):
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=6)) for f in files)


def _file_bytes(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _target_of(path, manifest):
    name = Path(str(path).rstrip("/")).name
    if manifest.get("target"):
        return str(manifest["target"])
    stem, _, ext = name.rpartition(".")
    if ext == "keras":
        return "keras"
    if "." in stem:
        return stem.rsplit(".", 1)[1]
    return {"tflite": "fp32", "onnx": "onnx", "mlpackage": "coreml"}.get(ext, ext)


def _precision(target, manifest):
    text = f"{target} {manifest.get('quantization', '')} {manifest.get('precision', '')}".lower()
    for key in ("int8", "dynamic", "fp16"):
        if key in text:
            return key
    return "fp32"


def _macs_at(manifest, size, model_manifest=None):
    """MACs at size x size from the manifest (macs_256, or macs at the manifest's input size), scaled by pixels."""
    for m in (manifest, model_manifest or {}):
        macs256 = _num(m.get("macs_256"))
        if macs256:
            return int(round(macs256 * size * size / 65536.0))
        macs = _num(m.get("macs"))
        if macs:
            ins = m.get("input_size") or 256
            if isinstance(ins, (list, tuple)):
                pixels = int(ins[0]) * int(ins[1])
            else:
                pixels = int(ins) ** 2
            return int(round(macs * size * size / float(pixels)))
    return None


def _manifest_summary(manifest):
    out = {k: manifest[k] for k in ("sha256", "target", "precision", "input_size", "format", "arch", "int8_io",
                                    "kd_edge_version", "created_utc") if k in manifest}
    src = manifest.get("source_model")
    if isinstance(src, dict):
        out["source_model"] = {k: src[k] for k in ("file", "sha256", "arch", "lineage") if k in src}
    return out or None


def describe_artifact(path):
    """What the report needs to know about an artifact besides timings (read from the file and its manifest)."""
    p = Path(str(path).rstrip("/"))
    if not p.exists():
        raise InputFileError(path, "no such file")
    try:
        kind = runner.artifact_kind(str(p))
    except ValueError:
        raise InputFileError(path, f"unknown artifact type (expected one of {', '.join(ARTIFACT_SUFFIXES)})") from None
    manifest = _read_manifest(p)
    source_manifest = {}
    src = manifest.get("source") or manifest.get("source_model") or manifest.get("model")
    if isinstance(src, dict):
        src = src.get("path")
    if isinstance(src, str) and src.endswith(".keras"):
        src_path = Path(src) if Path(src).is_absolute() else p.parent / src
        source_manifest = _read_manifest(src_path) if src_path.exists() else {}
    verified = _verify(p, manifest)
    target = _target_of(p, manifest)
    stem = manifest.get("model") if isinstance(manifest.get("model"), str) and not str(manifest.get("model")).endswith(".keras") else None
    name = p.name
    return {
        "artifact": str(path), "name": name,
        "model": stem or name.split(".")[0],
        "target": target, "kind": kind, "precision": _precision(target, manifest),
        "params": _num(manifest.get("params")) or _num(source_manifest.get("params")),
        "manifest_all": manifest, "source_manifest": source_manifest,
        "file_bytes": _file_bytes(p), "gzip_bytes": _gzip_bytes(p),
        "manifest": _manifest_summary(manifest),
        "sha256_verified": verified,
        "parity_probe": _parity_probe(p, kind, manifest),
    }


def _verify(path, manifest):
    """The artifact's sha256 against its manifest (as deblur/eval do): a modified file is refused before anything
    runs. True when verified, False when there is no manifest hash to check."""
    from kd_edge.runtime import verify

    return verify(path, manifest)


def _parity_probe(path, kind, manifest):
    """{"path", "threshold_db"} of the artifact's verified ``.parity.npz``, or {"reason"} when parity cannot be
    re-measured (Keras is the reference; artifacts converted before kd-edge wrote the probe)."""
    from kd_edge.converters.manifest import sha256_of
    from kd_edge.converters.parity import probe_file_path

    if kind == "keras":
        return {"reason": "the Keras model is the reference"}
    record = (manifest.get("parity") or {}).get("target_probe")
    if not record:
        return {"reason": "the manifest has no parity probe (converted by an older kd-edge): latency only"}
    probe = probe_file_path(path)
    if not probe.is_file():
        raise InputFileError(probe, "missing: the parity probe its manifest names (re-convert, or copy it with the artifact)")
    if sha256_of(probe) != record.get("sha256"):
        raise InputFileError(probe, "sha256 mismatch with the manifest: the parity probe was modified")
    return {"path": str(probe), "threshold_db": float(record["threshold_db"]),
            "built_psnr_db": record.get("psnr_db"),
            "built_on": ((manifest.get("parity") or {}).get("host") or {}).get("isa_flags")}


def expand_artifacts(paths):
    """Artifacts given on the command line; a directory (other than a .mlpackage) means every artifact in it."""
    out = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir() and p.suffix != ".mlpackage" and not (p / "saved_model.pb").is_file():  # not one artifact
            found = sorted(str(c) for c in p.iterdir() if c.suffix in ARTIFACT_SUFFIXES)
            if not found:
                raise InputFileError(raw, "directory holds no .tflite/.onnx/.keras/.mlpackage artifact")
            out.extend(found)
        elif not p.exists():
            raise InputFileError(raw, "no such file")
        else:
            out.append(str(p))
    return out


# ----------------------------------------------------------------------------------------------- local device
def thread_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["TF_USE_LEGACY_KERAS"] = "1"
    return env


class LocalDevice:
    kind = "local"
    target = "local"
    remote_python = None

    def __init__(self, python=None, timeout=1800):
        self.python = python or sys.executable
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def host_facts(self):
        return local_host_facts()

    def controller_facts(self):
        return None

    def measure(self, artifact, info, *, threads, size, runs, warmup, use_xnnpack=True):
        cmd = [self.python, str(RUNNER_PATH), str(artifact), "--threads", str(threads), "--size", str(size),
               "--runs", str(runs), "--warmup", str(warmup), *([] if use_xnnpack else ["--no-xnnpack"]),
               *parity_args(info, info["parity_probe"].get("path"))]
        if info["kind"] == "keras" and importlib.util.find_spec(KERAS_CUSTOM_LAYERS_MODULE.rsplit(".", 1)[0]) \
                and importlib.util.find_spec(KERAS_CUSTOM_LAYERS_MODULE):
            cmd += ["--import", KERAS_CUSTOM_LAYERS_MODULE]
        if info["kind"] == "keras":  # the user's --custom-objects and --unsafe-lambda, for the fresh process
            from kd_edge.models.user_objects import registered_specs, unsafe_lambda_allowed

            cmd += [arg for spec in registered_specs() for arg in ("--import", spec)]
            cmd += ["--unsafe-lambda"] if unsafe_lambda_allowed() else []
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"runner timed out after {self.timeout} s"}
        return parse_runner_output(res.returncode, res.stdout, res.stderr)


def parity_args(info, probe_path):
    """Runner arguments that measure parity on the machine it runs on (none when there is no probe)."""
    probe = info.get("parity_probe") or {}
    if not probe_path or "threshold_db" not in probe:
        return []
    return ["--parity", str(probe_path), "--gate", str(probe["threshold_db"])]


def parity_result(info, raw):
    """The result's parity: measured on the benchmark host by the runner, or why it was not."""
    if raw.get("parity"):
        return dict(raw["parity"], built_psnr_db=info["parity_probe"].get("built_psnr_db"),
                    built_on=info["parity_probe"].get("built_on"))
    reason = info["parity_probe"].get("reason") or raw.get("reason") or "not measured"
    return {"measured": False, "reason": reason}


def parse_runner_output(returncode, stdout, stderr):
    if returncode != 0:
        tail = (stderr or "").strip().splitlines()
        return {"status": "failed", "reason": f"runner exit {returncode}: {tail[-1] if tail else 'no message'}"}
    try:
        return json.loads(stdout)
    except ValueError:
        return {"status": "failed", "reason": "runner printed no JSON"}


# ----------------------------------------------------------------------------------------------- results
def make_result(info, raw, *, threads, size, peak=None):
    """One result of the schema from the artifact description and the runner's (or benchmark_model's) output."""
    macs = _macs_at(info["manifest_all"], size, info["source_manifest"])
    r = {k: info[k] for k in ("artifact", "name", "model", "target", "kind", "precision", "params", "file_bytes",
                              "gzip_bytes", "manifest", "sha256_verified")}
    r["parity"] = parity_result(info, raw)
    r.update(threads=threads, size=size, macs=macs, status=raw.get("status", "failed"), reason=raw.get("reason"))
    for key in ("runtime", "runtime_version", "delegate", "runs", "warmup", "input_dtype", "init_ms",
                "first_inference_ms", "latency_ms", "mpix_per_s", "runtime_rss_mb", "peak_rss_mb", "rss_delta_mb",
                "load_avg_1m", "repeat_p50_ms"):
        r[key] = raw.get(key)
    lat = (r.get("latency_ms") or {}).get("p50")
    if r["status"] == "ok" and lat:
        r["gflops"] = 2.0 * macs / (lat / 1e3) / 1e9 if macs else None
        pk = peak_mod.peak_for(peak, threads, info["precision"])
        r["latency_floor_ms"] = 2.0 * macs / (pk * 1e9) * 1e3 if (pk and macs) else None
        r["efficiency"] = r["latency_floor_ms"] / lat if r["latency_floor_ms"] else None
        r["vs_p100"] = reference.ratios(lat, r.get("peak_rss_mb"), size)
    else:
        r.update(gflops=None, latency_floor_ms=None, efficiency=None, vs_p100=None)
    return r


def open_device(device, **options):
    """'local', 'ssh:USER@HOST[:PORT]' (see kd_edge.benchmarks.ssh). adb is handled by kd_edge.android_harness."""
    device = device or "local"
    if device == "local":
        return LocalDevice()
    if device.startswith("ssh:"):
        from kd_edge.benchmarks.ssh import SSHDevice

        return SSHDevice(device[4:], remote_python=options.get("remote_python") or "python3",
                         identity=options.get("identity"), ssh_options=options.get("ssh_options") or ())
    raise KdEdgeError(f"unknown --device {device!r}: use local, ssh:USER@HOST[:PORT] or adb[:SERIAL]")


def new_document(*, device_block, host, controller, settings, peak, command=None, notes=()):
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kd_edge_version": __version__, "command": command,
        "device": device_block, "host": host, "controller": controller,
        "settings": settings, "peak": peak, "reference": reference.reference_summary(),
        "results": [], "notes": list(notes),
    }


def bench(artifacts, *, threads=(1,), sizes=(256,), runs=100, warmup=10, device="local", peak=None,
          command=None, notes=(), echo=None, use_xnnpack=True, repeats=1, **device_options):
    """Measure every (artifact, threads, size) in a fresh runner process. Returns a validated bench document."""
    if runs < 1 or warmup < 0 or repeats < 1:
        raise KdEdgeError("--runs and --repeats must be >= 1 and --warmup >= 0")
    if not threads or any(t < 1 for t in threads) or not sizes or any(s < 1 for s in sizes):
        raise KdEdgeError("--threads and --size need positive integers")
    infos = [describe_artifact(a) for a in expand_artifacts(artifacts)]
    with open_device(device, **device_options) as dev:
        host = dev.host_facts()
        if peak is None and dev.kind == "local":
            peak = peak_mod.load_cached(host)
        doc = new_document(
            device_block={"kind": dev.kind, "target": dev.target, "remote_python": dev.remote_python,
                          "benchmark_model": None},
            host=host, controller=dev.controller_facts(),
            settings={"runs": runs, "warmup": warmup, "threads": list(threads), "sizes": list(sizes),
                      "fresh_process_per_result": True, "use_xnnpack": use_xnnpack, "repeats": repeats,
                      "adb": None},
            peak=peak, command=command, notes=notes)
        if dev.kind != "local" and peak is None:
            doc["notes"].append("no roofline peak for the remote host (run `kd-edge bench --peak` there): floors omitted")
        # Interleaved repeats: round r measures every configuration once, so a burst of other work on the
        # machine hits all of them alike; each result is the repeat with the median p50.
        raws = {}
        for rep in range(repeats):
            for ai, info in enumerate(infos):
                for size in sizes:
                    for t in threads:
                        raw = dev.measure(info["artifact"], info, threads=t, size=size, runs=runs, warmup=warmup,
                                          use_xnnpack=use_xnnpack)
                        raws.setdefault((ai, size, t), []).append(raw)
                        if echo:
                            tag = f" [repeat {rep + 1}/{repeats}]" if repeats > 1 else ""
                            echo(one_line(make_result(info, raw, threads=t, size=size, peak=peak)) + tag)
        for ai, info in enumerate(infos):
            for size in sizes:
                for t in threads:
                    raw = _median_raw(raws[(ai, size, t)])
                    doc["results"].append(make_result(info, raw, threads=t, size=size, peak=peak))
    if any(r["kind"] == "coreml" and r["status"] == "not_run" for r in doc["results"]):
        doc["notes"].append("Core ML artifacts were not run: Core ML predict exists on macOS only")
    return validate(doc)


def add_round_arguments(parser):
    """The options of an evidence script that times artifacts with one interleaved :func:`bench` run:
    ``--threads`` (comma-separated, parsed into ``args.threads`` as a list of ints), ``--runs``, ``--warmup`` and
    ``--repeats`` (rounds of fresh processes)."""
    parser.add_argument("--threads", default=[1, 2], type=lambda text: [int(t) for t in text.split(",")],
                        help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)


def p50_by_threads(doc, artifact_name, threads):
    """One artifact's latency in a bench document: {"p50_ms": {threads: the median repeat's p50},
    "repeat_p50_ms": {threads: every repeat's p50}}, thread counts as strings (JSON keys)."""
    rows = {r["threads"]: r for r in doc["results"] if r["name"] == artifact_name}
    return {"p50_ms": {str(t): rows[t]["latency_ms"]["p50"] for t in threads},
            "repeat_p50_ms": {str(t): rows[t]["repeat_p50_ms"] for t in threads}}


def load_averages(doc):
    """The distinct 1-minute load averages recorded while a bench document's results were measured."""
    return sorted({r["load_avg_1m"] for r in doc["results"] if r.get("load_avg_1m") is not None})


def _median_raw(raws):
    """The raw measurement whose p50 is the median of the repeats (all repeats' p50 kept in repeat_p50_ms)."""
    ok = [r for r in raws if r.get("status") == "ok" and r.get("latency_ms")]
    if not ok:
        return raws[-1]
    ok.sort(key=lambda r: r["latency_ms"]["p50"])
    chosen = dict(ok[(len(ok) - 1) // 2])
    chosen["repeat_p50_ms"] = [r["latency_ms"]["p50"] for r in ok] if len(raws) > 1 else None
    return chosen


def one_line(r):
    if r["status"] != "ok":
        return f"{r['name']:<36} t={r['threads']} {r['size']}px  {r['status'].upper()}: {r['reason']}"
    lat = r["latency_ms"]
    parity = r.get("parity") or {}
    gate = f"  parity {parity['psnr_db']:.1f} dB" if parity.get("measured") else ""
    return (f"{r['name']:<36} t={r['threads']} {r['size']}px  p50 {lat['p50']:8.2f} ms  p90 {lat['p90']:8.2f} ms  "
            f"peak RSS {r['peak_rss_mb'] or 0:7.1f} MB (+{r['rss_delta_mb'] or 0:.1f}){gate}")
