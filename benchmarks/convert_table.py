"""Evidence for `kd-edge convert`: one model to every target, with size, gzip size, parity and latency.

    .venv/bin/python benchmarks/convert_table.py [--model student.keras | --arch edge-s] [--targets all]
        [--repeats 30] [--threads 2] [--calib DIR] [--out benchmarks/results/convert_table]

Writes ``<out>.json`` and ``<out>.md``. Conversion goes through kd_edge.converters.convert (the parity
gates included, at 256x256). Latency: median (and p10/p90) of ``--repeats`` single-image 256x256 runs after
5 warm-up runs, through kd_edge.runtime.load (LiteRT for TFLite, ONNX Runtime for ONNX, the Keras model
itself as the reference), all targets measured in the same process one after another, with the same thread
count, so the ratios are comparable. Core ML packages cannot run off macOS: size only, latency "n/a".

Without --model: the embedded default student when it exists, else a randomly initialised ``--arch``
(``edge-s``); size, MACs and latency do not depend on the weights, parity of quantised targets does
(slightly), and the JSON says which model it was.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _model(args, work):
    if args.model:
        return Path(args.model), f"given model {args.model}"
    try:
        from kd_edge.defaults import default_model_path

        path = default_model_path("student")
        return path, f"embedded default student {path.name}"
    except Exception:  # noqa: BLE001 - no embedded student in this checkout
        pass
    from kd_edge.models import build, save_model

    import tf_keras

    tf_keras.utils.set_random_seed(0)
    path = Path(work) / f"{args.arch}.keras"
    save_model(build(args.arch), path, arch=args.arch)
    return path, f"untrained {args.arch} (random init, seed 0): no trained student was available"


def _latency(runtime, repeats, size=256):
    import numpy as np

    x = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    for _ in range(5):
        runtime.predict(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runtime.predict(x)
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    return {"median_ms": statistics.median(times), "p10_ms": times[len(times) // 10],
            "p90_ms": times[(len(times) * 9) // 10], "repeats": repeats}


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def markdown(report):
    rows = [f"Model: {report['model_note']} - {report['params']:,} params, {report['macs_256'] / 1e9:.2f} GMACs at 256x256. "
            f"Host: {report['host']['cpu']}, {report['threads']} thread(s); latency = median of {report['repeats']} "
            f"single-image 256x256 runs.", "",
            "| target | runtime | size (KiB) | gzip (KiB) | parity PSNR (dB) | gate (dB) | max abs diff | median ms (p10-p90) | vs fp32 | GPU delegate |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    keras = report["keras_latency"]
    rows.append(f"| keras (reference) | TensorFlow | {report['source_size'] / 1024:.1f} | - | - | - | - | "
                f"{keras['median_ms']:.1f} ({keras['p10_ms']:.1f}-{keras['p90_ms']:.1f}) | - | - |")
    for r in report["targets"]:
        lat = r.get("latency")
        lat_txt = f"{lat['median_ms']:.1f} ({lat['p10_ms']:.1f}-{lat['p90_ms']:.1f})" if lat else "n/a (needs macOS)"
        parity = _fmt(r["parity_db"], ".1f") if r["parity_measured"] else "not measured (macOS)"
        gpu = r.get("gpu_delegate")
        gpu_txt = "-" if gpu is None else ("compatible" if gpu else "not compatible")
        rows.append(f"| {r['target']} | {r['runtime']} | {r['file_size'] / 1024:.1f} | {r['gzip_size'] / 1024:.1f} | "
                    f"{parity} | {r['threshold_db']:.0f} | {_fmt(r['max_abs_diff'], '.4f')} | {lat_txt} | "
                    f"{_fmt(r.get('speedup_vs_fp32'), '.2f')}{'x' if r.get('speedup_vs_fp32') else ''} | {gpu_txt} |")
    rows += ["", "vs fp32: fp32 latency of the same runtime divided by this target's latency (>1 = faster)."]
    return "\n".join(rows) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--arch", default="edge-s")
    parser.add_argument("--targets", default="all", help="comma-separated targets or 'all'")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib")
    parser.add_argument("--out", default="benchmarks/results/convert_table")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from kd_edge import runtime
    from kd_edge.converters import convert
    from kd_edge.converters.manifest import tool_versions

    work = Path(tempfile.mkdtemp(prefix="convert_table."))
    model_path, note = _model(args, work)
    targets = args.targets.split(",") if args.targets != "all" else ["all"]
    start = time.time()
    results = convert(model_path, targets, work / "artifacts", input_size=256, calib=args.calib, force=True,
                      threads=args.threads, log=lambda m: print(m, file=sys.stderr))
    convert_s = time.time() - start
    keras_rt = runtime.load(model_path)
    report = {
        "schema": "kd-edge-convert-table/1",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": str(model_path), "model_note": note,
        "params": results[0].manifest["params"], "macs_256": results[0].manifest["macs_256"],
        "source_size": model_path.stat().st_size,
        "threads": args.threads, "repeats": args.repeats, "input": [1, 256, 256, 3],
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "platform": sys.platform,
                 "load_avg_1m": os.getloadavg()[0]},
        "tools": tool_versions(), "convert_seconds": convert_s,
        "keras_latency": _latency(keras_rt, args.repeats),
        "targets": [],
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                report["host"]["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for r in results:
        m = r.manifest
        row = {"target": r.target, "precision": m["precision"], "ecosystem": m["ecosystem"],
               "runtime": {"tflite": "LiteRT", "onnx": "ONNX Runtime", "coreml": "Core ML"}[m["ecosystem"]],
               "file_size": m["file_size"], "gzip_size": m["gzip_size"], "sha256": m["sha256"],
               "parity_measured": m["parity"]["measured"], "parity_db": m["parity"]["psnr_db"],
               "max_abs_diff": m["parity"]["max_abs_diff"], "threshold_db": m["parity"]["threshold_db"],
               "op_count": m["op_count"], "convert_seconds": r.seconds}
        if "gpu_delegate" in m:
            row["gpu_delegate"] = m["gpu_delegate"]["compatible"]
            row["gpu_delegate_warnings"] = m["gpu_delegate"]["warnings"]
        if m["ecosystem"] != "coreml" or sys.platform == "darwin":
            row["latency"] = _latency(runtime.load(r.artifact, threads=args.threads), args.repeats)
        report["targets"].append(row)
        print(f"{r.target}: {row.get('latency', {}).get('median_ms', float('nan')):.2f} ms", file=sys.stderr)
    fp32 = {row["ecosystem"]: row["latency"]["median_ms"] for row in report["targets"]
            if row["precision"] == "fp32" and row.get("latency")}
    for row in report["targets"]:
        if row.get("latency") and row["ecosystem"] in fp32:
            row["speedup_vs_fp32"] = fp32[row["ecosystem"]] / row["latency"]["median_ms"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from kd_edge.atomic import write_json, write_text

    write_json(out.with_suffix(".json"), report)
    write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
