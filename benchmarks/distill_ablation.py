"""Evidence for issue 3: does distillation help an edge student under a fixed CPU budget?

Trains a teacher (or takes --teacher), then the same student twice on the same data: distilled from the teacher,
and alone (``--no-teacher``: same losses minus the teacher terms). Every run goes through the real ``kd-edge``
console script; the exact commands are recorded. Then it measures held-out PSNR/SSIM (kd_edge.metrics) of the
blurred input, the teacher, the distilled and the alone student, with a paired per-image comparison of the two
students, and writes JSON.

    python benchmarks/distill_ablation.py --out runs/ablation                      # 20 + 20 + 20 minutes
    python benchmarks/distill_ablation.py --out /tmp/abl --quick                  # a ~3-minute smoke version
    python benchmarks/distill_ablation.py --out runs/abl --teacher runs/teacher --data runs/data \
        --heldout runs/eval-data --steps 1500 --teacher-cache --side-by-side     # equal steps, same time

Budgets: by default each run's step count is calibrated from a short measured run so that the cosine schedule ends
near ``--minutes`` (the hard cap), and runs are sequential. ``--steps N`` gives both students exactly N steps
instead. ``--teacher-cache`` distils offline (the teacher runs once per training image, see
``kd_edge.distill.teacher_cache``) so that a distilled step costs what a step alone costs; the cache's build time is
recorded and, under a time budget, taken out of the distilled run's minutes. ``--side-by-side`` runs the two
students at the same time with ``--threads`` each (default 1), so that any other load on the machine hits both.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import kd_edge  # noqa: E402,F401  (tf_keras before TensorFlow)
from kd_edge.atomic import write_json

FORMAT = "kd-edge-distill-ablation/1"


def kd_edge_exe():
    exe = Path(sys.executable).with_name("kd-edge")
    if exe.exists():
        return str(exe)
    found = shutil.which("kd-edge")
    if not found:
        sys.exit("the kd-edge console script is not installed")
    return found


def run(cmd, log):
    """Run a kd-edge command, teeing nothing; returns (seconds, the command line)."""
    line = " ".join(shlex.quote(str(c)) for c in ["kd-edge", *cmd[1:]])
    print(f"$ {line}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {line}\n  see {log}")
    return seconds, line


def train_info(run_dir):
    return json.loads((Path(run_dir) / "train.json").read_text())


def steady_rate(info):
    seg = info["segments"][-1]
    return seg.get("steps_per_s_steady") or seg.get("steps_per_s")


def _summary(out, line, seconds, **extra):
    info = train_info(out)
    seg = info["segments"][-1]
    cache = (info.get("teacher") or {}).get("cache")
    return dict(extra, command=line, steps_done=seg.get("end_step"), train_seconds=seg.get("seconds"),
                wall_seconds=seconds, stopped=seg.get("stopped", "steps reached"), best=info.get("best"),
                steps_per_s=seg.get("steps_per_s_steady"), teacher_cache=cache)


def train_with_budget(exe, base_cmd, out, minutes, calib_steps, log_dir, name):
    """Measure steps/s with a short run, then train for ``minutes`` (less the teacher cache's build time, when the
    calibration run built one) with a matching step count."""
    calib_dir = Path(out).with_name(Path(out).name + "-calib")
    run([exe, *base_cmd, "--out", calib_dir, "--steps", calib_steps, "--val-every", calib_steps, "--force",
         "--no-progress"], log_dir / f"{name}-calib.log")
    calib = train_info(calib_dir)
    rate = steady_rate(calib)
    calib_cache = (calib.get("teacher") or {}).get("cache")
    minus = calib_cache["seconds"] if calib_cache else 0.0
    minutes = max(minutes - minus / 60.0, 0.1)
    steps = max(calib_steps, int(rate * minutes * 60 * 0.97))
    seconds, line = run([exe, *base_cmd, "--out", out, "--steps", steps, "--time-budget", round(minutes, 3),
                         "--force", "--no-progress"], log_dir / f"{name}.log")
    shutil.rmtree(calib_dir, ignore_errors=True)
    return _summary(out, line, seconds, calibrated_steps_per_s=rate, planned_steps=steps,
                    budget_minutes=minutes, cache_build_seconds_in_budget=minus)


def train_steps(exe, base_cmd, out, steps, log_dir, name):
    """Train for exactly ``steps`` steps (no time budget)."""
    seconds, line = run([exe, *base_cmd, "--out", out, "--steps", steps, "--force", "--no-progress"],
                        log_dir / f"{name}.log")
    return _summary(out, line, seconds, planned_steps=steps)


def train_side_by_side(exe, cmds, outs, steps, log_dir, names):
    """Start every run at once with exactly ``steps`` steps; wait for all. Returns one summary per run."""
    procs = []
    for cmd, out, name in zip(cmds, outs, names):
        full = [str(c) for c in [exe, *cmd, "--out", out, "--steps", steps, "--force", "--no-progress"]]
        line = " ".join(shlex.quote(c) for c in ["kd-edge", *full[1:]])
        print(f"$ {line} &", flush=True)
        fh = open(log_dir / f"{name}.log", "w")
        procs.append((subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT), fh, line, out, time.perf_counter()))
    ended = {}
    while len(ended) < len(procs):  # poll, so that each run's wall time ends when it does
        for i, (proc, *_rest) in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.perf_counter()
        time.sleep(0.5)
    summaries = []
    for i, (proc, fh, line, out, t0) in enumerate(procs):
        fh.close()
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {line}\n  see {fh.name}")
        summaries.append(_summary(out, line, ended[i] - t0, planned_steps=steps))
    return summaries


def scores(model, pairs):
    """Mean and per-image PSNR/SSIM of a Keras model's clipped output on ``pairs``."""
    from kd_edge import metrics

    psnrs, ssims = [], []
    for blur, sharp in pairs:
        pred = np.clip(np.asarray(model(blur[None], training=False))[0], 0, 1)
        psnrs.append(metrics.psnr(pred, sharp))
        ssims.append(metrics.ssim(pred, sharp))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "per_image_psnr": [round(float(v), 4) for v in psnrs], "per_image_ssim": [round(float(v), 5) for v in ssims]}


def evaluate(model_path, pairs):
    from kd_edge.models import load_model

    model, manifest = load_model(model_path)
    return {**scores(model, pairs), "params": manifest.get("params"), "arch": manifest.get("arch"),
            "sha256": manifest.get("sha256"), "model": str(model_path)}


def evaluate_last_checkpoint(run_dir, pairs):
    """Held-out scores of a run's last checkpoint (its final step), beside the exported best-by-validation model.

    The weights go into the run's own network (its model.keras), not a fresh build of its architecture name: the
    builds' defaults change (edge-* attention became bounded), a checkpoint's variables do not say which they had.
    """
    import tensorflow as tf

    from kd_edge.models import load_model

    latest = tf.train.latest_checkpoint(str(Path(run_dir) / "ckpt"))
    if latest is None:
        return None
    model, _ = load_model(Path(run_dir) / "model.keras")
    tf.train.Checkpoint(student=model).restore(latest).expect_partial()
    return {**scores(model, pairs), "checkpoint": latest}


def paired(a, b):
    """Per-image difference a - b: mean, standard error, and on how many images a is higher."""
    d = np.asarray(a, float) - np.asarray(b, float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
    return {"mean": float(d.mean()), "std_error": se, "higher_on": int((d > 0).sum()), "images": int(len(d))}


def heldout(data_root, stride):
    from kd_edge.data.pipeline import eval_pairs

    pairs = []
    for _, blur, sharp in eval_pairs(data_root):
        h, w = blur.shape[0] // stride * stride, blur.shape[1] // stride * stride
        pairs.append((blur[:h, :w], sharp[:h, :w]))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="work folder (runs, logs); the JSON goes to --json")
    p.add_argument("--json", default=None, help="result file [default: <out>/distill_ablation.json]")
    p.add_argument("--teacher", default=None, help="use this teacher (.keras or run folder) instead of training one")
    p.add_argument("--teacher-arch", default="edge-l")
    p.add_argument("--student", default="edge-s")
    p.add_argument("--data", default=None, help="train on this DBlur root instead of synthesising <out>/data")
    p.add_argument("--heldout", default=None,
                   help="DBlur root (or split) to measure on [default: the held-out split of the training data]")
    p.add_argument("--teacher-minutes", type=float, default=20.0)
    p.add_argument("--minutes", type=float, default=20.0, help="budget of each student run")
    p.add_argument("--steps", type=int, default=None,
                   help="give both students exactly this many steps (no calibration, no time budget)")
    p.add_argument("--teacher-cache", action="store_true", help="distil offline from cached teacher outputs")
    p.add_argument("--side-by-side", action="store_true",
                   help="run the two students at the same time (needs --steps; --threads defaults to 1)")
    p.add_argument("--synth-count", type=int, default=64)
    p.add_argument("--synth-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads of every run")
    p.add_argument("--train-option", action="append", default=[], metavar="OPT=VALUE",
                   help="extra option of every student run, e.g. --train-option=--lr=7e-4 (repeatable)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="train nothing: measure the runs already in --out again (the runs, budget and commands "
                        "are kept from the existing --json)")
    p.add_argument("--calib-steps", type=int, default=20)
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 1-minute budgets, 16 images of 128 px, patch 64, batch 4")
    a = p.parse_args(argv)
    if a.side_by_side and not a.steps:
        p.error("--side-by-side needs --steps (equal step counts; time budgets would race each other)")
    if a.side_by_side and not a.threads:
        a.threads = 1
    if a.quick:
        a.teacher_minutes, a.minutes = min(a.teacher_minutes, 1.0), min(a.minutes, 1.0)
        a.synth_count, a.synth_size, a.patch, a.batch, a.calib_steps = 16, 128, 64, 4, 8
    out = Path(a.out)
    target = Path(a.json) if a.json else out / "distill_ablation.json"
    if a.evaluate_only:
        if not target.is_file():
            p.error(f"--evaluate-only needs the JSON of the earlier runs: {target} does not exist")
        record = json.loads(target.read_text())
        teacher_model = Path(record["runs"]["teacher"].get("given") or out / "teacher" / "model.keras")
        data = Path(a.data or record["data"]["root"])
        measure(record, a, out, teacher_model, data, target)
        return 0
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    exe = kd_edge_exe()
    common = ["--batch", a.batch, "--patch", a.patch, "--seed", a.seed]
    if a.threads:
        common += ["--threads", a.threads]
    student_extra = []
    for opt in a.train_option:
        student_extra += opt.split("=", 1)
    record = {"format": FORMAT, "quick": a.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "kd_edge": kd_edge.__version__},
              "budget": {"teacher_minutes": None if a.teacher else a.teacher_minutes,
                         "student_minutes": None if a.steps else a.minutes, "student_steps": a.steps,
                         "threads": a.threads, "batch": a.batch, "patch": a.patch,
                         "teacher_cache": a.teacher_cache, "side_by_side": a.side_by_side},
              "runs": {}}
    commands = []
    if a.data:
        data = Path(a.data)
        record["data"] = {"root": str(data), "given": True}
    else:
        data = out / "data"
        _, data_cmd = run([exe, "data", "synth", data, "--count", a.synth_count, "--size", a.synth_size,
                           "--seed", a.seed, "--force"], logs / "data.log")
        commands.append(data_cmd)
        record["data"] = {"root": str(data), "count": a.synth_count, "size": a.synth_size, "seed": a.seed}

    teacher_dir = out / "teacher"
    if a.teacher:
        teacher_model = Path(a.teacher) / "model.keras" if Path(a.teacher).is_dir() else Path(a.teacher)
        record["runs"]["teacher"] = {"given": str(teacher_model)}
    else:
        record["runs"]["teacher"] = train_with_budget(
            exe, ["train-teacher", "--arch", a.teacher_arch, "--data", data, *common], teacher_dir,
            a.teacher_minutes, a.calib_steps, logs, "teacher")
        teacher_model = teacher_dir / "model.keras"
    distill_cmd = ["distill", "--teacher", teacher_model, "--student", a.student, "--data", data, *common,
                   *student_extra]
    if a.teacher_cache:
        distill_cmd += ["--teacher-cache", out / "teacher-cache"]
    alone_cmd = ["distill", "--no-teacher", "--student", a.student, "--data", data, *common, *student_extra]
    if a.side_by_side:
        distilled, alone = train_side_by_side(exe, [distill_cmd, alone_cmd], [out / "distilled", out / "alone"],
                                              a.steps, logs, ["distilled", "alone"])
    elif a.steps:
        distilled = train_steps(exe, distill_cmd, out / "distilled", a.steps, logs, "distilled")
        alone = train_steps(exe, alone_cmd, out / "alone", a.steps, logs, "alone")
    else:
        distilled = train_with_budget(exe, distill_cmd, out / "distilled", a.minutes, a.calib_steps, logs,
                                      "distilled")
        alone = train_with_budget(exe, alone_cmd, out / "alone", a.minutes, a.calib_steps, logs, "alone")
    record["runs"]["distilled"], record["runs"]["alone"] = distilled, alone

    record["commands"] = commands + [r["command"] for r in record["runs"].values() if "command" in r]
    measure(record, a, out, teacher_model, data, target)
    return 0


def measure(record, a, out, teacher_model, data, target):
    """Held-out scores of the blurred input, the teacher and both students (exported and final), paired; write."""
    from kd_edge import metrics

    heldout_root = Path(a.heldout) if a.heldout else data
    pairs = heldout(heldout_root, 16)
    blurred = {"psnr": float(np.mean([metrics.psnr(b, s) for b, s in pairs])),
               "ssim": float(np.mean([metrics.ssim(b, s) for b, s in pairs]))}
    results = {"blurred": blurred, "teacher": evaluate(teacher_model, pairs),
               "distilled": evaluate(out / "distilled" / "model.keras", pairs),
               "alone": evaluate(out / "alone" / "model.keras", pairs)}
    final = {name: evaluate_last_checkpoint(out / name, pairs) for name in ("distilled", "alone")}
    if all(final.values()):
        results["distilled_final_step"], results["alone_final_step"] = final["distilled"], final["alone"]
    record["heldout"] = {"root": str(heldout_root), "images": len(pairs),
                         "size": list(pairs[0][0].shape) if pairs else None}
    record["results"] = results
    d, al = results["distilled"], results["alone"]
    record["paired_distilled_minus_alone"] = {"psnr_db": paired(d["per_image_psnr"], al["per_image_psnr"]),
                                              "ssim": paired(d["per_image_ssim"], al["per_image_ssim"])}
    if "alone_final_step" in results:
        df, af = results["distilled_final_step"], results["alone_final_step"]
        record["paired_final_step_distilled_minus_alone"] = {
            "psnr_db": paired(df["per_image_psnr"], af["per_image_psnr"]),
            "ssim": paired(df["per_image_ssim"], af["per_image_ssim"])}
    record["verdict"] = {
        "distilled_minus_blurred_db": d["psnr"] - blurred["psnr"],
        "distilled_minus_alone_db": d["psnr"] - al["psnr"],
        "distilled_minus_alone_ssim": d["ssim"] - al["ssim"],
        "distilled_improves_over_blurred": d["psnr"] > blurred["psnr"],
        "distilled_beats_alone": d["psnr"] > al["psnr"],
    }
    record["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(target, record)
    print(json.dumps({"results": {k: {"psnr": round(v["psnr"], 3), "ssim": round(v["ssim"], 4)}
                                  for k, v in results.items()},
                      "paired": record["paired_distilled_minus_alone"],
                      "paired_final_step": record.get("paired_final_step_distilled_minus_alone"),
                      "verdict": record["verdict"]}, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    sys.exit(main())
