"""Compression evidence: PSNR change of each compressed model against its float parent, MACs and latency.

On a held-out synthetic set (generated here with its own seed, never used for training or calibration):

* float parent: Keras and LiteRT fp32;
* PTQ int8: full-integer TFLite calibrated on the shared representative images (kd_edge.compress.calibration);
* QAT int8: ``kd-edge quantize --qat`` (distillation against the parent), exported to full-integer TFLite;
* filter pruning: ``kd-edge prune --filters`` (20% by default) after distillation fine-tuning, with params, MACs
  and LiteRT fp32 latency of parent and pruned measured in the same run (interleaved, median over repeats).

Targets (issue 4): QAT int8 within 0.3 dB of the float parent; 20% filter pruning within 0.3 dB with at least
20% fewer MACs and a measured latency drop. The JSON says which were met.

    python benchmarks/compress_eval.py --model runs/student/model.keras --data runs/default/data \
        --qat-steps 300 --prune-steps 300 --out runs/compress-eval --json runs/compress-eval/compress_eval.json
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

TARGET_DB = 0.3


def _heldout(count, size, seed):
    """In-memory synthetic blurred/sharp pairs with their own seed (training and calibration use others)."""
    from kd_edge.data.synth import synth_pairs

    pairs = list(synth_pairs(count, size, seed))
    blur = np.stack([p.blur for p in pairs]).astype(np.float32)
    sharp = np.stack([p.sharp for p in pairs]).astype(np.float32)
    return blur, sharp


def _psnr(pred, sharp):
    from kd_edge.metrics import psnr

    return float(np.mean([psnr(np.clip(p, 0, 1), s) for p, s in zip(pred, sharp)]))


def _keras_predict(model, blur):
    return np.concatenate([np.asarray(model(blur[i:i + 1], training=False)) for i in range(len(blur))])


def _fp32_tflite(model, size):
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, size, size, 3], tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert()


def _latencies(contents, size, repeats, threads, warmup=3):
    """Median ms per model; models are interleaved round by round so load changes hit them alike."""
    from ai_edge_litert.interpreter import Interpreter

    interps = {}
    x = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    for name, content in contents.items():
        it = Interpreter(model_content=content, num_threads=threads)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], x)
        for _ in range(warmup):
            it.invoke()
        interps[name] = it
    times = {name: [] for name in contents}
    for _ in range(repeats):
        for name, it in interps.items():
            t0 = time.perf_counter()
            it.invoke()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: {"median_ms": float(np.median(v)), "min_ms": float(np.min(v)), "repeats": len(v)}
            for name, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="float parent .keras (a trained student)")
    parser.add_argument("--model-note", default="", help="what the parent is (recorded in the JSON)")
    parser.add_argument("--data", default="synth", help="fine-tuning data: DBlur root or 'synth'")
    parser.add_argument("--out", required=True, help="work folder (compressed models are written here)")
    parser.add_argument("--json", required=True, help="output JSON")
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--prune-steps", type=int, default=300)
    parser.add_argument("--filters", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--heldout-count", type=int, default=16)
    parser.add_argument("--heldout-seed", type=int, default=9001)
    parser.add_argument("--size", type=int, default=256, help="held-out image and TFLite input size")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", action="append", default=[], choices=["qat", "ptq", "filters"])
    args = parser.parse_args(argv)

    import kd_edge  # noqa: F401
    import tensorflow as tf

    from kd_edge.compress import runs
    from kd_edge.compress.qat import export_int8_tflite
    from kd_edge.models import count_macs, count_params, load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    parent, manifest = load_model(args.model)
    blur, sharp = _heldout(args.heldout_count, args.size, args.heldout_seed)
    result = {
        "format": "kd-edge-compress-eval/1",
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0], "tensorflow": tf.__version__, "threads": args.threads},
        "command": " ".join([Path(sys.argv[0]).name] + list(argv if argv is not None else sys.argv[1:])),
        "parent": {"path": args.model, "sha256": manifest.get("sha256"), "arch": manifest.get("arch"),
                   "params": count_params(parent), "macs_256": count_macs(parent, 256, 256),
                   "note": args.model_note, "lineage": manifest.get("lineage")},
        "heldout": {"source": "kd_edge.data.synth.synth_pairs (built-in synthetic blur)", "images": int(len(blur)), "size": args.size,
                    "seed": args.heldout_seed, "blurred_input_psnr": _psnr(blur, sharp)},
        "target_db": TARGET_DB,
    }
    float_pred = _keras_predict(parent, blur)
    float_psnr = _psnr(float_pred, sharp)
    parent_fp32 = _fp32_tflite(parent, args.size)
    fp32_psnr = _psnr(runs.run_tflite(parent_fp32, blur), sharp)
    result["float"] = {"keras_psnr": float_psnr, "tflite_fp32_psnr": fp32_psnr}
    print(f"float parent: {float_psnr:.3f} dB (LiteRT fp32 {fp32_psnr:.3f} dB); blurred input "
          f"{result['heldout']['blurred_input_psnr']:.3f} dB", flush=True)

    contents = {"parent_fp32": parent_fp32}
    if "ptq" not in args.skip:
        ptq = export_int8_tflite(parent, out / "ptq.int8.tflite", calib=None, calib_count=args.calib_count,
                                 input_size=args.size)
        p = _psnr(runs.run_tflite(ptq, blur), sharp)
        result["ptq_int8"] = {"psnr": p, "delta_db": p - float_psnr, "bytes": len(ptq),
                              "calibration": f"{args.calib_count} built-in synthetic blurred images"}
        contents["parent_ptq_int8"] = ptq
        print(f"PTQ int8: {p:.3f} dB ({p - float_psnr:+.3f})", flush=True)
    if "qat" not in args.skip:
        t0 = time.perf_counter()
        report = runs.run_qat(args.model, out / "qat", steps=args.qat_steps, data=args.data, batch=args.batch,
                              patch=args.patch, force=True, progress=False, calib_count=args.calib_count,
                              input_size=args.size)
        qat_content = Path(report["tflite"]["path"]).read_bytes()
        p = _psnr(runs.run_tflite(qat_content, blur), sharp)
        result["qat_int8"] = {"psnr": p, "delta_db": p - float_psnr, "within_target": p - float_psnr >= -TARGET_DB,
                              "steps": args.qat_steps, "scheme": report["settings"]["scheme"],
                              "float_layers": report["settings"]["float_layers"], "bytes": len(qat_content),
                              "seconds": time.perf_counter() - t0,
                              "command": f"kd-edge quantize {args.model} --qat --steps {args.qat_steps} "
                                         f"--batch {args.batch} --patch {args.patch} --data {args.data} "
                                         f"--input-size {args.size} --out {out / 'qat'}"}
        contents["qat_int8"] = qat_content
        print(f"QAT int8: {p:.3f} dB ({p - float_psnr:+.3f})", flush=True)
    if "filters" not in args.skip:
        t0 = time.perf_counter()
        report = runs.run_filters(args.model, out / "filters", ratio=args.filters, steps=args.prune_steps,
                                  data=args.data, batch=args.batch, patch=args.patch, force=True, progress=False)
        pruned, _ = load_model(out / "filters" / "model.keras")
        p = _psnr(_keras_predict(pruned, blur), sharp)
        c = report["complexity"]
        pruned_fp32 = _fp32_tflite(pruned, args.size)
        contents["filters_fp32"] = pruned_fp32
        result["filters"] = {
            "ratio": args.filters, "steps": args.prune_steps, "psnr": p, "delta_db": p - float_psnr,
            "within_target": p - float_psnr >= -TARGET_DB,
            "tflite_fp32_psnr": _psnr(runs.run_tflite(pruned_fp32, blur), sharp),
            "params": c["pruned"]["params"], "macs_256": c["pruned"]["macs_256"],
            "params_drop": c["params_drop"], "macs_drop": c["macs_drop"], "macs_target_met": c["macs_drop"] >= 0.2,
            "seconds": time.perf_counter() - t0,
            "command": f"kd-edge prune {args.model} --filters {args.filters} --steps {args.prune_steps} "
                       f"--batch {args.batch} --patch {args.patch} --data {args.data} --out {out / 'filters'}",
        }
        print(f"filters {args.filters:.0%}: {p:.3f} dB ({p - float_psnr:+.3f}), MACs -{c['macs_drop']:.1%}", flush=True)
    lat = _latencies(contents, args.size, args.repeats, args.threads)
    result["latency"] = {"runtime": "LiteRT (ai_edge_litert) on this host", "size": args.size,
                         "threads": args.threads, "models": lat,
                         "note": "interleaved round-robin, median over repeats, all in this run"}
    if "filters" in result:
        drop = 1.0 - lat["filters_fp32"]["median_ms"] / lat["parent_fp32"]["median_ms"]
        result["filters"]["latency_drop"] = drop
        result["filters"]["latency_target_met"] = drop > 0
        print(f"LiteRT fp32 {args.size}px: parent {lat['parent_fp32']['median_ms']:.2f} ms, pruned "
              f"{lat['filters_fp32']['median_ms']:.2f} ms ({drop:+.1%} faster)", flush=True)
    if "qat_int8" in contents:
        result["qat_int8"]["speedup_vs_fp32"] = lat["parent_fp32"]["median_ms"] / lat["qat_int8"]["median_ms"]
    result["seconds"] = time.perf_counter() - t_start
    from kd_edge.atomic import write_json

    write_json(args.json, result)
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
