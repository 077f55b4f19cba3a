"""Evidence for issue 3: does distillation help an edge student under a fixed CPU budget?

Trains a teacher (or takes --teacher), then the same student twice with the same wall-clock budget on the same
synthetic data: distilled from the teacher, and alone (``--no-teacher``: same losses minus the teacher terms).
Every run goes through the real ``kd-edge`` console script; the exact commands are recorded. Then it measures
held-out PSNR/SSIM (kd_edge.metrics) of the blurred input, the teacher, the distilled and the alone student and
writes JSON.

    python benchmarks/distill_ablation.py --out runs/ablation                      # 20 + 20 + 20 minutes
    python benchmarks/distill_ablation.py --out /tmp/abl --quick                  # a ~3-minute smoke version

Each run's step count is calibrated from a short measured run so that the cosine schedule ends near the budget;
``--time-budget`` is the hard cap. Runs are sequential (they never compete for the cores).
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


def steady_rate(run_dir):
    info = json.loads((Path(run_dir) / "train.json").read_text())
    seg = info["segments"][-1]
    return seg.get("steps_per_s_steady") or seg.get("steps_per_s")


def train_with_budget(exe, base_cmd, out, minutes, calib_steps, log_dir, name):
    """Measure steps/s with a short run, then train for ``minutes`` with a matching step count."""
    calib_dir = Path(out).with_name(Path(out).name + "-calib")
    run([exe, *base_cmd, "--out", calib_dir, "--steps", calib_steps, "--val-every", calib_steps, "--force",
         "--no-progress"], log_dir / f"{name}-calib.log")
    rate = steady_rate(calib_dir)
    steps = max(calib_steps, int(rate * minutes * 60 * 0.97))
    seconds, line = run([exe, *base_cmd, "--out", out, "--steps", steps, "--time-budget", minutes, "--force",
                         "--no-progress"], log_dir / f"{name}.log")
    info = json.loads((Path(out) / "train.json").read_text())
    seg = info["segments"][-1]
    shutil.rmtree(calib_dir, ignore_errors=True)
    return {"command": line, "calibrated_steps_per_s": rate, "planned_steps": steps,
            "steps_done": seg.get("end_step"), "train_seconds": seg.get("seconds"), "wall_seconds": seconds,
            "stopped": seg.get("stopped", "steps reached"), "best": info.get("best"),
            "steps_per_s": seg.get("steps_per_s_steady")}


def evaluate(model_path, pairs, stride_of=None):
    from kd_edge import metrics
    from kd_edge.models import load_model

    model, manifest = load_model(model_path)
    psnrs, ssims = [], []
    for blur, sharp in pairs:
        pred = np.clip(np.asarray(model(blur[None], training=False))[0], 0, 1)
        psnrs.append(metrics.psnr(pred, sharp))
        ssims.append(metrics.ssim(pred, sharp))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "params": manifest.get("params"),
            "arch": manifest.get("arch"), "sha256": manifest.get("sha256"), "model": str(model_path)}


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
    p.add_argument("--teacher-minutes", type=float, default=20.0)
    p.add_argument("--minutes", type=float, default=20.0, help="budget of each student run")
    p.add_argument("--synth-count", type=int, default=64)
    p.add_argument("--synth-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads of every run")
    p.add_argument("--calib-steps", type=int, default=20)
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 1-minute budgets, 16 images of 128 px, patch 64, batch 4")
    a = p.parse_args(argv)
    if a.quick:
        a.teacher_minutes, a.minutes = min(a.teacher_minutes, 1.0), min(a.minutes, 1.0)
        a.synth_count, a.synth_size, a.patch, a.batch, a.calib_steps = 16, 128, 64, 4, 8
    out = Path(a.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    exe = kd_edge_exe()
    common = ["--batch", a.batch, "--patch", a.patch, "--seed", a.seed]
    if a.threads:
        common += ["--threads", a.threads]
    record = {"format": FORMAT, "quick": a.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "kd_edge": kd_edge.__version__},
              "budget": {"teacher_minutes": None if a.teacher else a.teacher_minutes, "student_minutes": a.minutes,
                         "threads": a.threads, "batch": a.batch, "patch": a.patch},
              "runs": {}}

    teacher_dir = out / "teacher"
    data = out / "data"
    _, data_cmd = run([exe, "data", "synth", data, "--count", a.synth_count, "--size", a.synth_size,
                       "--seed", a.seed, "--force"], logs / "data.log")
    record["data"] = {"root": str(data), "count": a.synth_count, "size": a.synth_size, "seed": a.seed}

    if a.teacher:
        teacher_model = Path(a.teacher) / "model.keras" if Path(a.teacher).is_dir() else Path(a.teacher)
        record["runs"]["teacher"] = {"given": str(teacher_model)}
    else:
        record["runs"]["teacher"] = train_with_budget(
            exe, ["train-teacher", "--arch", a.teacher_arch, "--data", data, *common], teacher_dir,
            a.teacher_minutes, a.calib_steps, logs, "teacher")
        teacher_model = teacher_dir / "model.keras"
    record["runs"]["distilled"] = train_with_budget(
        exe, ["distill", "--teacher", teacher_model, "--student", a.student, "--data", data, *common],
        out / "distilled", a.minutes, a.calib_steps, logs, "distilled")
    record["runs"]["alone"] = train_with_budget(
        exe, ["distill", "--no-teacher", "--student", a.student, "--data", data, *common],
        out / "alone", a.minutes, a.calib_steps, logs, "alone")

    from kd_edge import metrics

    pairs = heldout(data, 16)
    results = {"blurred": {"psnr": float(np.mean([metrics.psnr(b, s) for b, s in pairs])),
                           "ssim": float(np.mean([metrics.ssim(b, s) for b, s in pairs]))},
               "teacher": evaluate(teacher_model, pairs),
               "distilled": evaluate(out / "distilled" / "model.keras", pairs),
               "alone": evaluate(out / "alone" / "model.keras", pairs)}
    record["heldout"] = {"images": len(pairs), "size": list(pairs[0][0].shape) if pairs else None}
    record["results"] = results
    record["verdict"] = {
        "distilled_minus_blurred_db": results["distilled"]["psnr"] - results["blurred"]["psnr"],
        "distilled_minus_alone_db": results["distilled"]["psnr"] - results["alone"]["psnr"],
        "distilled_improves_over_blurred": results["distilled"]["psnr"] > results["blurred"]["psnr"],
        "distilled_beats_alone": results["distilled"]["psnr"] > results["alone"]["psnr"],
    }
    record["commands"] = [data_cmd] + [r["command"] for r in record["runs"].values() if "command" in r]
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    target = Path(a.json) if a.json else out / "distill_ablation.json"
    write_json(target, record)
    print(json.dumps({"results": {k: {"psnr": round(v["psnr"], 2), "ssim": round(v["ssim"], 4)}
                                  for k, v in results.items()}, "verdict": record["verdict"]}, indent=2))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
