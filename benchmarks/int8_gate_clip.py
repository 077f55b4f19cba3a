"""Evidence run: what the sigmoid gates' [-16, 16] input clip costs a full-int8 TFLite on this host.

    .venv/bin/python -m kd_edge.benchmarks.int8_gate_clip [--model M.keras] [--threads 1,2] [--repeats 5]
        [--out benchmarks/results/int8_gate_clip.json]

The clip lowers to MINIMUM/MAXIMUM, which LiteRT's XNNPACK delegate does not take in int8, so the int8 graph is cut
into several delegate partitions with the reference kernels in between. This script builds the model twice with the
same weights, with ``SimpleGate(clip=16)`` and with ``clip=None`` (:func:`kd_edge.models.gate_clip.rewrite_gate_clip`;
the embedded defaults have had no clip since this measurement), checks how far the two Keras models differ on the
adversarial inputs of ``kd_edge.stress_inputs`` (the clip only acts on gate inputs beyond +-16), converts the clipped
one to tflite-fp32 and tflite-int8 and the clip-free one to tflite-int8 with ``kd_edge.converters.convert``
(parity-gated, as `kd-edge convert`), counts each int8 graph's XNNPACK partitions, and times all three with
``kd_edge.benchmarks.harness.bench`` (interleaved fresh-process rounds; the JSON holds the host's CPU flags).
"""
import argparse
import tempfile
from collections import Counter
from pathlib import Path

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)

SIZE = 256


def delegate_partitions(path, threads=2):
    """Op counts of the int8 graph after LiteRT applied its default (XNNPACK) delegate: DELEGATE = partitions."""
    from ai_edge_litert.interpreter import Interpreter

    from kd_edge.quiet_import import native_stderr_silenced

    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return dict(sorted(Counter(op["op_name"] for op in interpreter._get_ops_details()).items()))


def main(argv=None):
    import numpy as np

    from kd_edge.atomic import write_json
    from kd_edge.benchmarks import harness
    from kd_edge.benchmarks.host import local_host_facts
    from kd_edge.converters import convert
    from kd_edge.defaults import default_model_path
    from kd_edge.errors import InputFileError
    from kd_edge.models import load_model, model_stride
    from kd_edge.models.gate_clip import rewrite_gate_clip
    from kd_edge.models.layers import DEFAULT_GATE_CLIP
    from kd_edge.stress_inputs import all_stress_inputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".keras model with SimpleGate layers (default: the embedded default student)")
    harness.add_round_arguments(ap)
    ap.add_argument("--out", default="benchmarks/results/int8_gate_clip.json")
    args = ap.parse_args(argv)
    from kd_edge.quiet_import import set_quiet

    set_quiet(True)  # the converters' and LiteRT's C++ start-up lines, as in the CLI
    model_path = Path(args.model) if args.model else default_model_path("student")
    threads = args.threads
    with tempfile.TemporaryDirectory(prefix="kd-edge-gate-clip-") as tmp:
        tmp = Path(tmp)
        # both variants written from the file itself: only the gates' config differs, the weights are the same bytes
        clipped_path, twin_path = tmp / "clipped.keras", tmp / "unclipped.keras"
        try:  # checks the file against its manifest's sha256; one line naming it on bad input (no gates, ...)
            step = rewrite_gate_clip(model_path, clipped_path, DEFAULT_GATE_CLIP)["lineage"][-1]
            rewrite_gate_clip(model_path, twin_path, None)
        except InputFileError as exc:
            raise SystemExit(str(exc)) from None
        gates, sha256 = step["gates"], step["from_sha256"]
        model, twin = load_model(clipped_path)[0], load_model(twin_path)[0]
        diff = 0.0
        for _, image in all_stress_inputs(64, stride=model_stride(model), max_side=256):
            a = model.predict(image[None], verbose=0)
            b = twin.predict(image[None], verbose=0)
            diff = max(diff, float(np.abs(a - b).max()))
        clipped = {r.target: r for r in convert(clipped_path, ["tflite-fp32", "tflite-int8"], tmp / "clipped",
                                                input_size=SIZE)}
        unclipped = convert(twin_path, ["tflite-int8"], tmp / "unclipped", input_size=SIZE)[0]
        arts = {"tflite-fp32": clipped["tflite-fp32"], "tflite-int8": clipped["tflite-int8"],
                "tflite-int8-no-clip": unclipped}
        doc = harness.bench([str(r.artifact) for r in arts.values()], threads=threads, sizes=[SIZE], runs=args.runs,
                            warmup=args.warmup, repeats=args.repeats)
        rows = {}
        for key, result in arts.items():
            name = Path(result.artifact).name
            rows[key] = {"artifact": f"{key}/{name}", "parity_db": result.manifest["parity"]["psnr_db"],
                         **harness.p50_by_threads(doc, name, threads),
                         "ops_after_delegation": delegate_partitions(result.artifact)}
    p50 = {key: row["p50_ms"] for key, row in rows.items()}
    out = {
        "what": "full-int8 TFLite with and without the SimpleGate input clip, beside tflite-fp32; one interleaved "
                "run; p50 = the median round's p50",
        "model": str(model_path), "sha256": sha256, "size": SIZE, "gates": gates,
        "runs": args.runs, "warmup": args.warmup, "repeats": args.repeats, "host": local_host_facts(),
        "keras_max_abs_diff_on_stress_inputs": diff, "artifacts": rows,
        "int8_over_fp32_p50": {str(t): p50["tflite-int8"][str(t)] / p50["tflite-fp32"][str(t)] for t in threads},
        "int8_no_clip_over_fp32_p50": {str(t): p50["tflite-int8-no-clip"][str(t)] / p50["tflite-fp32"][str(t)]
                                       for t in threads},
        "load_avg_1m": harness.load_averages(doc),
    }
    write_json(Path(args.out), out)
    for key, row in rows.items():
        print(f"{key:20s} parity {row['parity_db']:6.2f} dB  delegate partitions "
              f"{row['ops_after_delegation'].get('DELEGATE', 0):3d}  "
              + "  ".join(f"{t} thr p50 {ms:6.2f} ms" for t, ms in row["p50_ms"].items()))
    print(f"Keras with vs without the clip on the stress inputs: max |diff| {diff:.2e}; wrote {args.out}")


if __name__ == "__main__":
    main()
