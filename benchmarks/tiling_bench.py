"""Evidence for tiled HD inference: `kd-edge deblur` on 720p, 1080p and 4K with TFLite fp16 and int8 artifacts.

    .venv/bin/python benchmarks/tiling_bench.py [--model student.keras] [--sizes 720p,1080p,4k] [--repeats 3]
                                               [--threads 2] [--out benchmarks/results/tiling_bench.json]

For each artifact and image size, the real console script (`kd-edge deblur IMAGE --model ARTIFACT --out ...`)
runs in a fresh process; its peak RSS is that process's own ``ru_maxrss`` (``os.wait4``), its time and
MPix/s are what the command reports in its ``--json`` summary (inference only, and total with image I/O);
medians over ``--repeats``. A run on a 64x64 image gives the fixed cost (interpreter, NumPy, LiteRT, model)
that every size pays. Seam PSNR: the .keras model tiled at the default settings against the same model run on
the whole image (a dynamic shape), per size, in a separate process; plus each artifact's tiled output against
that whole-image Keras output (seams and quantisation together).

Without --model: the embedded default student when it exists, else an untrained ``edge-s`` (time and memory do
not depend on the weights; the JSON says which model it was). Artifacts and images go to a scratch folder.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}
TARGETS = ("tflite-fp16", "tflite-int8")
RSS_TARGET_MB_4K = 1100.0  # the report's student footprint (1.1 GB)


def _exe():
    exe = Path(sys.executable).with_name("kd-edge")
    return str(exe) if exe.exists() else (shutil.which("kd-edge") or "kd-edge")


def make_model(model, arch, work):
    """(path to a .keras student, note saying which one)."""
    if model:
        return Path(model), f"given model {Path(model).name}"
    try:
        from kd_edge.defaults import default_model_path

        return default_model_path("student"), "embedded default student"
    except Exception:  # noqa: BLE001 - not shipped yet
        pass
    import tf_keras as keras

    from kd_edge.models import build, save_model

    keras.utils.set_random_seed(0)
    path = work / f"{arch}-untrained.keras"
    save_model(build(arch), path)
    return path, (f"untrained {arch} (random init, seed 0): no trained student existed when this ran; "
                  "time and memory do not depend on the weights, seam PSNR does a little")


def make_images(work, sizes):
    """A synthetic photograph-like 8-bit PNG per size (dead leaves, slightly blurred)."""
    import cv2
    import numpy as np

    from kd_edge.data.dead_leaves import dead_leaves
    from kd_edge.images import write_image

    rng = np.random.default_rng(0)
    base = dead_leaves(rng, 1080, width=1920)
    paths = {}
    for name in sizes:
        h, w = SIZES[name]
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
        path = work / "images" / f"{name}.png"
        write_image(path, np.clip(img, 0, 1), bit_depth=8)
        paths[name] = path
    small = work / "images" / "tiny64.png"
    write_image(small, np.clip(cv2.resize(base, (64, 64), interpolation=cv2.INTER_AREA), 0, 1))
    paths["64x64"] = small
    return paths


# A bare Python (no site, nothing imported) starts the command and reaps it with os.wait4. Linux carries a
# process's peak RSS across fork and exec, so a child started from this benchmark process (which has
# TensorFlow loaded for the conversion, over 1 GB) would report at least that; the launcher's own ~10 MB
# floor is reported as "launcher_floor_mb" (a run of `true` through it).
LAUNCHER = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                  "wall_s": time.perf_counter() - t0}))
"""


def launch(cmd, scratch):
    """Run ``cmd`` through the bare launcher: (exit code, peak RSS MB, wall s, stdout, stderr)."""
    out, err = Path(scratch) / "launch.out", Path(scratch) / "launch.err"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(out), str(err), *map(str, cmd)],
                          capture_output=True, text=True, env=env, check=True)
    info = json.loads(proc.stdout)
    return info["code"], info["maxrss_kb"] / 1024.0, info["wall_s"], out.read_text(), err.read_text()


# The deblur command alone, without the `kd-edge` group (which, since the lead's commit 9030bc6, imports
# TensorFlow up front for every "deblur" to silence its start-up noise, ~500 MB and ~10 s that a TFLite run
# does not need). Same code path otherwise.
COMMAND_ONLY = ("import sys; from kd_edge.cli import configure_logging; configure_logging(False); "
                "from kd_edge.cli.deblur import deblur; deblur.main(sys.argv[1:], prog_name='kd-edge deblur')")


def run_cli_measured(image, artifact, out_dir, threads, json_path, *, command_only=False):
    """One `kd-edge deblur` in a fresh process; returns (its --json summary, peak RSS MB, wall s, stdout).

    ``command_only``: run the deblur command without the `kd-edge` group (no TensorFlow pre-import)."""
    head = [sys.executable, "-c", COMMAND_ONLY] if command_only else [_exe(), "deblur"]
    cmd = [*head, str(image), "--model", str(artifact), "--out", str(out_dir), "--force",
           "--json", str(json_path)]
    if threads:
        cmd += ["--threads", str(threads)]
    code, rss_mb, wall, out, err = launch(cmd, Path(json_path).parent)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
    return json.loads(Path(json_path).read_text()), rss_mb, wall, out.strip()


SEAM_CHILD = r"""
import json, sys, resource
import numpy as np
from kd_edge.images import read_image
from kd_edge.metrics import psnr
from kd_edge.runtime import load
from kd_edge import tiling
image_path, keras_path, artifacts = sys.argv[1], sys.argv[2], sys.argv[3:]
rgb = read_image(image_path).rgb
keras_rt = load(keras_path)
whole = tiling.deblur_whole(rgb, keras_rt)
tiled = tiling.deblur(rgb, keras_rt)  # defaults: tile 256, overlap 32, hann
result = {"seam_psnr_db": psnr(tiled, whole), "model_vs_input_psnr_db": psnr(whole, rgb), "artifacts": {}}
for art in artifacts:
    rt = load(art)
    result["artifacts"][art] = psnr(tiling.deblur(rgb, rt), whole)
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps(result))
"""


def seam_check(image, keras_path, artifacts):
    proc = subprocess.run([sys.executable, "-c", SEAM_CHILD, str(image), str(keras_path), *map(str, artifacts)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".keras student (default: embedded default student, else untrained edge-s)")
    ap.add_argument("--arch", default="edge-s", help="architecture to build when there is no student")
    ap.add_argument("--sizes", default="720p,1080p,4k")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--no-seam", action="store_true", help="skip the seam PSNR runs (they need the whole image in Keras)")
    ap.add_argument("--seam-sizes", default="720p,1080p",
                    help="sizes for the seam check (default 720p,1080p: the whole-image Keras run at 4K takes "
                         "minutes and gigabytes; the seam PSNR does not depend on the image size)")
    ap.add_argument("--no-command-only", action="store_true",
                    help="skip the runs of the deblur command without the kd-edge group's TensorFlow pre-import")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--out", default="benchmarks/results/tiling_bench.json")
    args = ap.parse_args(argv)

    import kd_edge  # noqa: F401
    from kd_edge.atomic import write_json

    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    scratch = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kd-tiling-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        model_path, note = make_model(args.model, args.arch, scratch)
        print(f"model: {model_path} ({note})", flush=True)
        from kd_edge.converters import convert

        artifacts = {}
        for target in targets:
            [res] = convert(model_path, [target], scratch / "artifacts", input_size=256, force=True)
            artifacts[target] = Path(res.artifact)
            print(f"converted {target}: {res.artifact} ({res.manifest.get('file_size')} bytes)", flush=True)
        images = make_images(scratch, sizes)
        floor_mb = launch(["true"], scratch)[1]
        cases = []
        for target, artifact in artifacts.items():
            base_summary, base_rss, base_wall, _ = run_cli_measured(images["64x64"], artifact, scratch / "out",
                                                                    args.threads, scratch / "run.json")
            print(f"{target} 64x64 (fixed cost): peak RSS {base_rss:.0f} MB, wall {base_wall:.2f} s", flush=True)
            fixed_case = {"target": target, "size": "64x64", "height": 64, "width": 64, "megapixels": 0.004096,
                          "peak_rss_mb": round(base_rss, 1), "wall_s": round(base_wall, 3)}
            if not args.no_command_only:
                only = run_cli_measured(images["64x64"], artifact, scratch / "out", args.threads, scratch / "run.json",
                                        command_only=True)
                fixed_case["command_only_peak_rss_mb"] = round(only[1], 1)
                fixed_case["command_only_wall_s"] = round(only[2], 3)
            cases.append(fixed_case)
            for name in sizes:
                h, w = SIZES[name]
                runs = [run_cli_measured(images[name], artifact, scratch / "out", args.threads, scratch / "run.json")
                        for _ in range(max(1, args.repeats))]
                infer = [r[0]["summary"]["inference_s"] for r in runs]
                total = [r[0]["summary"]["total_s"] for r in runs]
                rss = [r[1] for r in runs]
                walls = [r[2] for r in runs]
                mpix = h * w / 1e6
                case = {"target": target, "size": name, "height": h, "width": w, "megapixels": round(mpix, 4),
                        "tiles": None, "inference_s_median": round(statistics.median(infer), 3),
                        "inference_s_all": [round(v, 3) for v in infer],
                        "total_s_with_io_median": round(statistics.median(total), 3),
                        "process_wall_s_median": round(statistics.median(walls), 3),
                        "mpix_per_s": round(mpix / statistics.median(infer), 4),
                        "s_per_mpix": round(statistics.median(infer) / mpix, 4),
                        "peak_rss_mb": round(max(rss), 1), "peak_rss_mb_all": [round(v, 1) for v in rss],
                        "rss_above_fixed_cost_mb": round(max(rss) - base_rss, 1)}
                from kd_edge.tiling import plan_tiles

                case["tiles"] = plan_tiles(h, w, 256, 32, align=_stride(artifact)).count
                case["s_per_tile"] = round(statistics.median(infer) / case["tiles"], 4)
                if not args.no_command_only:  # peak RSS without the group's TensorFlow pre-import
                    only = run_cli_measured(images[name], artifact, scratch / "out", args.threads,
                                            scratch / "run.json", command_only=True)
                    case["command_only_peak_rss_mb"] = round(only[1], 1)
                    case["command_only_inference_s"] = round(only[0]["summary"]["inference_s"], 3)
                cases.append(case)
                print(f"{target} {name}: {case['inference_s_median']:.2f} s, {case['mpix_per_s']:.3f} MPix/s, "
                      f"peak RSS {case['peak_rss_mb']:.0f} MB ({case['tiles']} tiles); without the TF "
                      f"pre-import {case.get('command_only_peak_rss_mb')} MB", flush=True)
        seams = {}
        if not args.no_seam:
            seam_sizes = [s.strip().lower() for s in args.seam_sizes.split(",") if s.strip().lower() in images]
            for name in seam_sizes:
                t0 = time.perf_counter()
                seams[name] = seam_check(images[name], model_path, list(artifacts.values()))
                if "artifacts" in seams[name]:
                    seams[name]["artifacts"] = {Path(k).name: round(v, 3) for k, v in seams[name]["artifacts"].items()}
                    seams[name]["seam_psnr_db"] = round(seams[name]["seam_psnr_db"], 3)
                    seams[name]["model_vs_input_psnr_db"] = round(seams[name]["model_vs_input_psnr_db"], 3)
                seams[name]["seconds"] = round(time.perf_counter() - t0, 1)
                print(f"seam {name}: {seams[name]}", flush=True)
        for case in cases:
            if case["size"] in seams and "seam_psnr_db" in seams[case["size"]]:
                case["seam_psnr_db"] = seams[case["size"]]["seam_psnr_db"]
                case["artifact_tiled_vs_keras_whole_psnr_db"] = seams[case["size"]]["artifacts"].get(
                    artifacts[case["target"]].name)
        linearity = {}
        for target in artifacts:
            rows = [c for c in cases if c["target"] == target and c["size"] in SIZES]
            if len(rows) >= 2:
                spm = [c["s_per_mpix"] for c in rows]
                linearity[target] = {"s_per_mpix": {c["size"]: c["s_per_mpix"] for c in rows},
                                     "max_over_min": round(max(spm) / min(spm), 3)}
        four_k = [c for c in cases if c["size"] == "4k"]
        result = {
            "benchmark": "tiling_bench", "schema": 1,
            "command": "benchmarks/tiling_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                     "python": platform.python_version(),
                     "load_average_at_start": list(os.getloadavg())},
            "model": {"path": str(model_path.name), "note": note},
            "settings": {"tile": 256, "overlap": 32, "blend": "hann", "batch": 4, "threads": args.threads,
                         "repeats": args.repeats, "image": "synthetic dead-leaves PNG, 8-bit RGB"},
            "launcher_floor_mb": round(floor_mb, 1),
            "cases": cases, "seam": seams, "linearity": linearity,
            "targets": {"peak_rss_4k_mb_max": RSS_TARGET_MB_4K,
                        "peak_rss_4k_ok": bool(four_k) and all(c["peak_rss_mb"] <= RSS_TARGET_MB_4K for c in four_k),
                        "peak_rss_4k_mb": {c["target"]: c["peak_rss_mb"] for c in four_k},
                        "command_only_peak_rss_4k_mb": {c["target"]: c.get("command_only_peak_rss_mb")
                                                        for c in four_k},
                        "seam_psnr_min_db": 45.0,
                        "seam_ok": bool(seams) and all(s.get("seam_psnr_db", 0) >= 45.0 for s in seams.values())},
        }
        write_json(args.out, result)
        print(f"wrote {args.out}", flush=True)
        return 0
    finally:
        if not args.work:
            shutil.rmtree(scratch, ignore_errors=True)


def _stride(artifact):
    try:
        manifest = json.loads(Path(str(artifact) + ".json").read_text())
        return int(manifest.get("stride") or 1)
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
