"""Evidence run: is ONNX Runtime's int8 worth using? onnx-int8 vs onnx-fp32 (and the recipe kd-edge used before
issue 14) in one interleaved run, with parity, the int16-saturation emulation and the fused op counts.

    .venv/bin/python -m kd_edge.benchmarks.onnx_int8_speed [--model M.keras] [--threads 1,2] [--repeats 5]
        [--out benchmarks/results/onnx_int8_speed.json]

Steps: ``kd_edge.converters.convert`` to onnx-fp32 and onnx-int8 (parity-gated, as `kd-edge convert`); the previous
recipe (QDQ, int8 activations, 8-bit per-channel weights, Min/Max clips kept) quantized from the same fp32 graph
and calibration images; ``kd_edge.benchmarks.harness.bench`` on the three, ``--repeats`` interleaved fresh-process
rounds (each result is the round with the median p50); ONNX Runtime's optimised graph of each (which ops really run:
QLinearConv vs float Conv); ``int8_saturation`` on the probe images. The JSON holds the host's CPU flags: the
ratio is this host's; on x86 without VNNI only the emulation speaks (no such host was available).
"""
import argparse
import tempfile
from collections import Counter
from pathlib import Path

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)

SIZE = 256


def previous_recipe(fp32_path, out_path, images):
    """kd-edge's onnx-int8 before issue 14: QDQ, int8 activations, 8-bit per-channel weights, clips as Min/Max."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"input": img[None]} for img in images])

        def get_next(self):
            return next(self._it, None)

    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


def optimised_ops(path, threads=2):
    """Op counts of the graph ONNX Runtime actually runs (after its QDQ fusions and layout transforms)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


def main(argv=None):
    import numpy as np

    from kd_edge.benchmarks import harness
    from kd_edge.benchmarks.host import local_host_facts
    from kd_edge.converters import convert, int8_saturation
    from kd_edge.converters.parity import probe_images, representative
    from kd_edge.defaults import default_model_path
    from kd_edge.runtime import OnnxRuntime, load

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".keras model (default: the embedded default student)")
    harness.add_round_arguments(ap)
    ap.add_argument("--out", default="benchmarks/results/onnx_int8_speed.json")
    args = ap.parse_args(argv)
    model = Path(args.model) if args.model else default_model_path("student")
    threads = args.threads
    with tempfile.TemporaryDirectory(prefix="kd-edge-onnx-int8-") as tmp:
        tmp = Path(tmp)
        results = {r.target: r for r in convert(model, ["onnx-fp32", "onnx-int8"], tmp, input_size=SIZE)}
        previous = tmp / "previous-recipe.onnx"
        previous_recipe(results["onnx-fp32"].artifact, previous, representative(None, 32, SIZE))
        probes = probe_images(SIZE)
        keras = load(model).predict(probes)
        old_rt = OnnxRuntime(previous, None, False)
        from kd_edge.metrics import psnr

        arts = {"onnx-fp32": results["onnx-fp32"].artifact, "onnx-int8": results["onnx-int8"].artifact,
                "previous-int8": previous}
        doc = harness.bench([str(p) for p in arts.values()], threads=threads, sizes=[SIZE], runs=args.runs,
                            warmup=args.warmup, repeats=args.repeats)
        rows = {}
        for key, path in arts.items():
            parity = (float(np.min(psnr(keras, old_rt.predict(probes)))) if key == "previous-int8"
                      else results[key].manifest["parity"]["psnr_db"])
            rows[key] = {
                "artifact": path.name, "parity_db": parity, **harness.p50_by_threads(doc, path.name, threads),
                "ort_optimised_ops": optimised_ops(path),
            }
            if key != "onnx-fp32":
                seen = int8_saturation.probe_saturation(path, probes)
                rows[key]["int16_saturation_on_probes"] = {k: seen[k] for k in (
                    "method", "images", "dense_convs", "pairs", "saturated", "saturated_convs", "saturation_free")}
                rows[key]["int16_pair_bound"] = {k: v for k, v in int8_saturation.pair_bounds(path).items()
                                                 if k != "layers"}
        ratios = {str(t): rows["onnx-int8"]["p50_ms"][str(t)] / rows["onnx-fp32"]["p50_ms"][str(t)] for t in threads}
        out = {
            "what": "onnx-int8 vs onnx-fp32 (ONNX Runtime, CPU EP), one interleaved run; p50 = the median round's p50",
            "model": str(model), "size": SIZE, "runs": args.runs, "warmup": args.warmup, "repeats": args.repeats,
            "host": local_host_facts(), "onnx_int8_manifest": results["onnx-int8"].manifest["int8"],
            "artifacts": rows, "int8_over_fp32_p50": ratios,
            "load_avg_1m": harness.load_averages(doc),
        }
    path = Path(args.out)
    from kd_edge.atomic import write_json

    write_json(path, out)
    for key, row in rows.items():
        print(f"{key:14s} parity {row['parity_db']:6.2f} dB  " + "  ".join(
            f"{t} thr p50 {ms:6.2f} ms" for t, ms in row["p50_ms"].items())
            + f"  QLinearConv {row['ort_optimised_ops'].get('QLinearConv', 0)} Conv {row['ort_optimised_ops'].get('Conv', 0)}")
    print("int8 / fp32 p50: " + ", ".join(f"{t} thr {r:.2f}x" for t, r in ratios.items()) + f"; wrote {path}")


if __name__ == "__main__":
    main()
