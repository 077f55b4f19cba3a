"""Evidence run: training throughput of `kd-edge train-teacher` (or `distill`) in optimizer steps/s and patches/s
per architecture, patch, batch, thread count, oneDNN on/off and --precision, each run a fresh process, repeats
interleaved.

    .venv/bin/python -m kd_edge.benchmarks.train_throughput [--data DIR|synth] [--arch edge-s,edge-m]
        [--patch 64,96] [--batch 8] [--threads 2] [--onednn on,off] [--precision float32,bfloat16]
        [--teacher MODEL] [--steps 40] [--repeats 2] [--json benchmarks/results/train_throughput.json]

Each run is the real command (``python -m kd_edge train-teacher ... --steps N``, or ``distill --teacher MODEL
--student ARCH`` with ``--teacher``; validation once at the end on one crop) in a fresh process with
``TF_ENABLE_ONEDNN_OPTS`` set; the figure is its ``train.json`` segment's ``steps_per_s_steady`` (after the step
function is traced). Every (configuration, repeat) runs in one interleaved order so drift on the host hits all
configurations alike; the JSON keeps each repeat, the median, the ratios oneDNN-on over -off and bfloat16 over
float32 per configuration, and the host's CPU flags (these figures are this host's: bf16 pays only on a CPU with
bf16 units, e.g. ``avx512_bf16``).
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ONEDNN = {"on": "1", "off": "0"}


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v.strip()]


def run_once(data, arch, patch, batch, threads, onednn, precision, steps, work, teacher=None):
    """One fresh training process; returns (steps/s steady, seconds in all)."""
    out = Path(work) / f"{arch}-p{patch}-b{batch}-t{threads}-{onednn}-{precision}"
    what = (["distill", "--teacher", str(teacher), "--student", arch] if teacher
            else ["train-teacher", "--arch", arch])
    cmd = [sys.executable, "-m", "kd_edge", *what, "--data", str(data),
           "--steps", str(steps), "--batch", str(batch), "--patch", str(patch), "--threads", str(threads),
           "--precision", precision,
           "--val-every", str(steps), "--val-count", "1", "--seed", "0", "--no-progress", "--force",
           "--out", str(out)]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=ONEDNN[onednn])
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"train_throughput: {' '.join(cmd)} failed (rc {res.returncode}): {tail[0]}")
    segment = json.loads((out / "train.json").read_text())["segments"][-1]
    return segment["steps_per_s_steady"], segment["seconds"]


def _synth_data(work):
    from kd_edge.data.synth import synthesize

    root = Path(work) / "data"
    synthesize(root, count=48, size=160, seed=0)
    return root


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synth", help="DBlur root to train on, or 'synth' (48 built-in pairs)")
    ap.add_argument("--arch", type=_csv(str), default=["edge-s", "edge-m"])
    ap.add_argument("--patch", type=_csv(int), default=[64, 96])
    ap.add_argument("--batch", type=_csv(int), default=[8])
    ap.add_argument("--threads", type=_csv(int), default=[2])
    ap.add_argument("--onednn", type=_csv(str), default=["on", "off"])
    ap.add_argument("--precision", type=_csv(str), default=["float32"])
    ap.add_argument("--teacher", default=None, help="time `distill --teacher MODEL --student ARCH` instead")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args(argv)
    bad = [v for v in args.onednn if v not in ONEDNN]
    if bad:
        ap.error(f"--onednn takes on and/or off, not {','.join(bad)}")
    bad = [v for v in args.precision if v not in ("float32", "bfloat16")]
    if bad:
        ap.error(f"--precision takes float32 and/or bfloat16, not {','.join(bad)}")
    if args.steps < 2:
        ap.error("--steps must be >= 2 (the first step traces the step function)")

    from kd_edge.atomic import write_json
    from kd_edge.benchmarks.host import describe, local_host_facts

    configs = list(itertools.product(args.arch, args.patch, args.batch, args.threads, args.onednn, args.precision))
    runs = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="kd-edge-train-throughput-") as work:
        data = _synth_data(work) if args.data == "synth" else Path(args.data)
        for repeat in range(args.repeats):
            for c in configs:
                rate, seconds = run_once(data, *c, args.steps, work, teacher=args.teacher)
                runs[c].append({"repeat": repeat, "steps_per_s": rate, "seconds": seconds})
                print(f"{c[0]:8s} patch {c[1]:3d} batch {c[2]:2d} threads {c[3]} oneDNN {c[4]:3s} {c[5]:8s}: "
                      f"{rate:5.2f} steps/s, {rate * c[2]:5.1f} patches/s", flush=True)
    rows = []
    for (arch, patch, batch, threads, onednn, precision), reps in runs.items():
        median = statistics.median(r["steps_per_s"] for r in reps)
        rows.append({"arch": arch, "patch": patch, "batch": batch, "threads": threads, "onednn": onednn,
                     "precision": precision, "steps_per_s": median, "patches_per_s": median * batch,
                     "repeats": reps})
    ratios = _ratios(rows, "onednn", "on", "off", "onednn_on_over_off")
    precision_ratios = _ratios(rows, "precision", "bfloat16", "float32", "bfloat16_over_float32")
    host = local_host_facts()
    doc = {
        "what": "kd-edge train-teacher throughput, fresh process per run, interleaved repeats; "
                "steps/s = train.json steps_per_s_steady (after tracing), median over repeats",
        "command": "python -m kd_edge.benchmarks.train_throughput " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:]),
        "data": str(args.data), "steps": args.steps, "host": host, "host_line": describe(host),
        "method": f"distill --teacher {args.teacher}" if args.teacher else "train-teacher",
        "rows": rows, "onednn_ratios": ratios, "precision_ratios": precision_ratios,
    }
    write_json(Path(args.json), doc)
    for r in ratios:
        print(f"{r['arch']} patch {r['patch']} batch {r['batch']} threads {r['threads']} {r['precision']}: "
              f"oneDNN on/off {r['onednn_on_over_off']:.2f}x")
    for r in precision_ratios:
        print(f"{r['arch']} patch {r['patch']} batch {r['batch']} threads {r['threads']} oneDNN {r['onednn']}: "
              f"bfloat16/float32 {r['bfloat16_over_float32']:.2f}x")
    print(f"wrote {args.json}")


def _ratios(rows, key, top, bottom, name):
    """steps/s of rows with key == top over those with key == bottom, for every other configuration alike."""
    others = ("arch", "patch", "batch", "threads", "onednn", "precision")
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in others if k != key), {})[r[key]] = r["steps_per_s"]
    return [{**dict(zip([k for k in others if k != key], config)), name: by[top] / by[bottom]}
            for config, by in groups.items() if top in by and bottom in by]


if __name__ == "__main__":
    main()
