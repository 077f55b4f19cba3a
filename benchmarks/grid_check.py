"""Grid check: does a model paint a lattice locked to its stride on noisy saturated areas or flat synthetic scenes?

    python -m kd_edge.benchmarks.grid_check [MODEL ...] [--names a,b] [--json PATH]

The synthetic half of ``realdata.py``'s grid-artefact check (``kd_edge.grid_artifacts``), without ``../shared``: the
ten noisy saturated fields of ``kd_edge.stress_inputs.noisy_saturated_fields`` and 16 blurred synthetic scenes (the
converters' parity-probe kind). Prints the worst lattice per model in 8-bit levels and writes JSON (per input,
``clean`` when every input is under ``VISIBLE_LEVELS``). Exit code 0 either way: it measures, the tests judge.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMAT = "kd-edge-grid-check/1"


def check_model(path, name, threads=None) -> dict:
    from kd_edge.benchmarks import realdata

    runtime, sha, verified = realdata.load_runtime(path, threads)
    grid = realdata.grid_artifacts(realdata.ModelRunner(runtime), {}, None)
    grid.pop("real_photos", None)  # none are scored here: realdata.py adds them
    return {"name": name, "path": str(path), "kind": runtime.kind, "sha256": sha, "verified": verified,
            "grid_artifacts": grid}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="grid_check", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=".keras, .tflite or .onnx (default: embedded student)")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per MODEL")
    parser.add_argument("--threads", type=int, default=None, help="threads for LiteRT / ONNX Runtime")
    parser.add_argument("--note", default="", help="what the models are (recorded in the JSON)")
    parser.add_argument("--json", dest="json_path", default=None, help="output JSON (default: print only)")
    args = parser.parse_args(argv)

    from kd_edge.quiet_import import import_tensorflow_quietly, set_quiet

    set_quiet(True)
    import_tensorflow_quietly()
    from kd_edge.atomic import write_json
    from kd_edge.benchmarks.host import describe, local_host_facts
    from kd_edge.defaults import default_model_path
    from kd_edge.errors import KdEdgeError
    from kd_edge.report.evaluate import default_names, parse_names

    paths = [Path(p) for p in args.models] or [default_model_path("student")]
    names = parse_names(args.names, len(paths)) or default_names(paths)
    facts = local_host_facts()
    print(f"grid check ({describe(facts)})")
    t0 = time.perf_counter()
    try:
        models = [check_model(p, n, args.threads) for p, n in zip(paths, names)]
    except KdEdgeError as exc:
        print(f"grid_check: error: {exc}", file=sys.stderr)
        return 1
    for m in models:
        g = m["grid_artifacts"]
        fields = g["saturated_fields"]["per_input"]
        worst = max(fields, key=fields.get)
        print(f"{m['name']}: {g['period']}-px lattice, noisy saturated fields worst {fields[worst]:.1f} levels "
              f"({worst}), synthetic scenes worst {g['synthetic_scenes']['worst_levels']:.1f}: "
              f"{'clean' if g['clean'] else 'VISIBLE'} (threshold {g['visible_threshold_levels']:g})")
    if args.json_path:
        write_json(Path(args.json_path), {"format": FORMAT, "command": " ".join(["grid_check"] + list(
            argv if argv is not None else sys.argv[1:])), "note": args.note, "host": facts, "models": models,
            "seconds": round(time.perf_counter() - t0, 2)})
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
