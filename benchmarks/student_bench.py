"""Evidence run: convert a student to every target and benchmark it here (threads 1 and 2, 256x256).

    .venv/bin/python -m kd_edge.benchmarks.student_bench [--model runs/student/best.keras] [--out benchmarks/results]

Without --model it uses the embedded default student when one exists, else builds an untrained ``edge-s`` (latency
and memory do not depend on the weights; the JSON's notes say which model it was). Steps: ``kd-edge convert
--target all`` into ``<out>/work/artifacts-<stem>/`` (git-ignored; skipped when artifacts exist, unless
--reconvert), ``kd-edge bench --peak`` when this host has no cached peak, then ``kd-edge bench`` on the .keras baseline and every artifact, writing
``<out>/<stem>.json``, ``<out>/<stem>.md`` and ``<out>/<stem>-plots/``.
"""
import argparse
import hashlib
import sys
from pathlib import Path

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)


def _default_student():
    from kd_edge.defaults import default_model_path
    from kd_edge.errors import KdEdgeError

    try:
        return default_model_path("student")
    except KdEdgeError:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".keras student (default: embedded default student, else untrained edge-s)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", help="result file stem (default: edge-s, or the model's stem)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--size", default="256")
    ap.add_argument("--runs", default="50")
    ap.add_argument("--warmup", default="5")
    ap.add_argument("--targets", default="all")
    ap.add_argument("--reconvert", action="store_true", help="convert again even if artifacts exist")
    ap.add_argument("--repeats", default="3", help="interleaved repeats per configuration (median kept)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    work = out / "work"
    notes = []
    model = Path(args.model) if args.model else _default_student()
    if model is None:
        from kd_edge.models import build, save_model

        model = work / "edge-s.keras"
        if not model.exists():
            save_model(build("edge-s"), model, lineage={"method": "untrained", "note": "built by student_bench"})
        notes.append("model: edge-s built untrained (no trained student existed when this ran); latency and memory "
                     "do not depend on the weight values, but int8 calibration ranges do. Re-run with --model "
                     "runs/<student>/best.keras for the trained student.")
    else:
        sha = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
        notes.append(f"model: {model} (sha256 {sha}...)")
    name = args.name or ("edge-s" if model.name == "edge-s.keras" else model.stem)
    arts = work / f"artifacts-{name}"
    from kd_edge.cli import main as cli

    def run(*a):
        try:
            cli(list(a))
        except SystemExit as exc:
            if exc.code:
                raise SystemExit(f"student_bench: `kd-edge {' '.join(a)}` failed with exit {exc.code}")

    targets = []
    for t in args.targets.split(","):
        targets += ["-t", t]
    have = arts.is_dir() and any(p.suffix in (".tflite", ".onnx") for p in arts.iterdir())
    if args.reconvert or not have:
        run("convert", str(model), *targets, "--out", str(arts), "--input-size", args.size, "--force")
    from kd_edge.benchmarks import peak

    if peak.load_cached() is None:
        run("bench", "--peak", "--threads", args.threads)
    artifacts = [str(model)] + sorted(str(p) for p in arts.iterdir()
                                      if p.suffix in (".tflite", ".onnx", ".mlpackage"))
    run("bench", *artifacts, "--threads", args.threads, "--size", args.size, "--runs", args.runs,
        "--warmup", args.warmup, "--repeats", args.repeats, "--json", str(out / f"{name}.json"), "--report", str(out / f"{name}.md"),
        "--plots", str(out / f"{name}-plots"), *[x for n in notes for x in ("--note", n)],
        "--note", f"re-run: .venv/bin/python -m kd_edge.benchmarks.student_bench {' '.join(argv or sys.argv[1:])}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
