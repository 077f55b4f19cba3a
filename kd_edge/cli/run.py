"""``kd-edge run``: the whole job on the embedded default models (what ``make run`` does).

Each step is the public command a user would type, run as its own process (``python -m kd_edge ...``) so that
memory figures stay clean and every step can be repeated by hand from the printed command line.
"""
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from kd_edge.cli.paths import ExistingPath
from kd_edge.errors import KdEdgeError

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HD_SAMPLE = SAMPLES / "hd_sample_blur.png"
HD_SHARP = SAMPLES / "hd_sample_sharp.png"
# The held-out evaluation set: the camera blur model of the default models' last training set
# (kd_edge/weights/MODEL_CARD.md: today's --camera preset, half of the pairs blurred in sRGB values) on the built-in
# sources, another seed, so no image is shared with training; no untouched pairs (a sharp input is judged by the
# do-no-harm line on real photos instead).
EVAL_SYNTH = ["--camera", "--kernel-bias", "1.5", "--srgb-blur", "0.5", "--identity", "0",
              "--count", "32", "--size", "256", "--seed", "2026", "--test-fraction", "0.75"]
DEBLUR_TARGETS = ("tflite-fp16", "tflite-int8")
EVAL_TARGETS = ("tflite-fp16", "tflite-int8", "onnx-int8")
REALBLUR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "realblur"  # ../shared beside a checkout


def _kd_edge(*args):
    return [sys.executable, "-m", "kd_edge", *map(str, args)]


def _shown(argv):
    """The command as a user would type it: ``kd-edge ...`` or ``python -m kd_edge.benchmarks.realdata ...``."""
    program = "kd-edge" if argv[1:3] == ["-m", "kd_edge"] else f"python -m {argv[2]}"
    return " ".join([program, *(shlex.quote(a) for a in argv[3:])])


class _Steps:
    def __init__(self, total):
        self.total = total
        self.done = []

    def run(self, title, argv):
        index = len(self.done) + 1
        click.secho(f"\n[{index}/{self.total}] {title}", bold=True)
        click.echo(f"  $ {_shown(argv)}")
        start = time.perf_counter()
        code = subprocess.call(argv)
        seconds = time.perf_counter() - start
        self.done.append({"step": title, "command": _shown(argv), "exit_code": code, "seconds": round(seconds, 1)})
        if code != 0:
            raise KdEdgeError(f"step {index} ({title}) failed with exit code {code}; the command was: {_shown(argv)}")
        click.echo(f"  done in {seconds:.1f} s")


def _artifact(artifacts_dir, stem, target):
    matches = sorted(Path(artifacts_dir).glob(f"{stem}.{target}.*"))
    matches = [m for m in matches if m.suffix not in (".json", ".npz")]  # manifest, parity probe
    if not matches:
        raise KdEdgeError(f"{artifacts_dir}: no {target} artifact of {stem} was written")
    return matches[0]


def _hd_psnr(deblurred):
    from kd_edge.images import read_image
    from kd_edge.metrics import psnr

    sharp = read_image(HD_SHARP).rgb
    return psnr(read_image(deblurred).rgb, sharp), psnr(read_image(HD_SAMPLE).rgb, sharp)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/make-run"),
              show_default=True, help="Folder for every output; a previous run's outputs in it are replaced.")
@click.option("--model", "student", type=ExistingPath(dir_okay=False, path_type=Path),
              help="Student .keras model (default: the embedded default student).")
@click.option("--teacher", type=ExistingPath(dir_okay=False, path_type=Path),
              help="Teacher .keras model for the report (default: the embedded default teacher).")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to benchmark.")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed runs per benchmark configuration.")
def run(out, student, teacher, threads, runs):
    """Convert the default student to every target (parity-gated), benchmark them here against the P100
    reference, deblur the bundled 1280x720 sample with tiling, and write the evaluation report.

    Example: kd-edge run --out runs/make-run
    """
    from kd_edge.defaults import default_model_path, default_qat_path

    qat = default_qat_path() if student is None else None  # the embedded student's QAT twin, for int8
    student = student or default_model_path("student")
    teacher = teacher or default_model_path("teacher")
    out.mkdir(parents=True, exist_ok=True)
    artifacts, bench, deblurred = out / "artifacts", out / "bench", out / "deblurred"
    report, eval_data = out / "report", out / "eval-data"
    stem = student.name[: -len(".keras")] if student.name.endswith(".keras") else student.stem
    started = time.perf_counter()
    realblur = REALBLUR if REALBLUR.is_dir() else None
    steps = _Steps(total=4 + len(DEBLUR_TARGETS) + (qat is not None) + (realblur is not None))

    steps.run("Convert the student to every target, each gated on parity with Keras",
              _kd_edge("convert", student, "--target", "all", "--input-size", 256, "--out", artifacts,
                       "--force", "--json", artifacts / "convert.json"))
    int8 = {}  # the int8 model shown: the QAT one where there is one (post-training int8 costs this student more)
    if qat is not None:
        steps.run("Convert the embedded quantization-aware-trained student to int8 TFLite (gated on parity)",
                  _kd_edge("convert", qat, "--target", "tflite-int8", "--input-size", 256, "--out",
                           artifacts / "qat", "--force", "--json", artifacts / "qat" / "convert.json"))
        int8["tflite-int8"] = _artifact(artifacts / "qat", qat.name[: -len(".keras")], "tflite-int8")
    steps.run("Benchmark every runnable artifact and the Keras models on this host (P100 reference beside)",
              _kd_edge("bench", artifacts, student, teacher, "--threads", threads, "--runs", runs, "--warmup", 5,
                       "--json", bench / "bench.json", "--report", bench / "bench.md", "--plots", bench))
    hd = {}
    for target in DEBLUR_TARGETS:
        model = int8.get(target) or _artifact(artifacts, stem, target)
        steps.run(f"Deblur the bundled 1280x720 sample with tiles of the fixed-size {target} model",
                  _kd_edge("deblur", HD_SAMPLE, "--model", model, "--out", deblurred / target, "--force",
                           "--json", deblurred / f"{target}.json"))
        hd[target] = deblurred / target / HD_SAMPLE.name
    steps.run("Synthesise the held-out evaluation set (a seed unseen in training)",
              _kd_edge("data", "synth", eval_data, *EVAL_SYNTH, "--force"))
    models = [teacher, student] + [_artifact(artifacts, stem, t) for t in EVAL_TARGETS] + list(int8.values())
    names = ["teacher", "student", *EVAL_TARGETS] + [f"qat-{t}" for t in int8]
    steps.run("Evaluate teacher, student and its converted artifacts; write the report",
              _kd_edge("eval", "--data", eval_data, *models, "--names", ",".join(names),
                       "--bench", bench / "bench.json", "--out", report, "--force"))

    if realblur is not None:
        real = [teacher, student, *int8.values()]
        steps.run("Score teacher, student and int8 student on real blurred/sharp pairs made by others (../shared)",
                  [sys.executable, "-m", "kd_edge.benchmarks.realdata", *map(str, real), "--names",
                   ",".join(["teacher", "student"] + [f"qat-{t}" for t in int8]), "--realblur", str(realblur),
                   "--json", str(out / "realdata.json")])
    else:
        click.echo(f"\n(real-data benchmark not run: {REALBLUR} not found; it needs ../shared beside the checkout)")

    summary = {"student": str(student), "teacher": str(teacher), "steps": steps.done,
               "seconds": round(time.perf_counter() - started, 1), "hd_sample": {}}
    click.secho("\nkd-edge run: done", bold=True)
    for target, path in hd.items():
        model_db, blurred_db = _hd_psnr(path)
        summary["hd_sample"][target] = {"output": str(path), "psnr_db": model_db, "blurred_psnr_db": blurred_db}
        click.echo(f"  HD sample, {target}: {model_db:.2f} dB vs sharp (blurred input {blurred_db:.2f} dB) -> {path}")
    (out / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    for label, path in (("artifacts + manifests", artifacts), ("benchmark", bench / "bench.md"),
                        ("deblurred HD sample", deblurred), ("evaluation report", report / "report.html"),
                        ("this run's summary", out / "run.json")):
        click.echo(f"  {label:<22} {path}")
    click.echo(f"  total {summary['seconds']:.0f} s")
