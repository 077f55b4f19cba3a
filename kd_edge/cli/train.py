"""``kd-edge train-teacher`` and ``kd-edge distill``: training with checkpoints, resume, validation and export.

TensorFlow is imported inside the commands only, so ``kd-edge --help`` stays fast.
"""
import shlex
import shutil
import sys
from pathlib import Path

import click

from kd_edge.cli.model_options import model_loading_options
from kd_edge.errors import InputFileError, KdEdgeError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

DEFAULT_TEACHER_ARCH = "edge-l"
DEFAULT_STUDENT_ARCH = "edge-s"


def common_options(fn):
    """Options shared by train-teacher and distill (same names, same defaults)."""
    options = [
        click.option("--data", "data", required=True, metavar="DIR|synth",
                     help="DBlur root with train/ and test/ (or validation/), or 'synth' to generate the built-in "
                          "synthetic set into <out>/data."),
        click.option("--out", "out", required=True, type=click.Path(),  # checked by ensure_output_dir
                     help="Run folder: ckpt/, best/, tb/, train.json, model.keras (+ .json manifest)."),
        click.option("--steps", default=2000, show_default=True, type=click.IntRange(min=1),
                     help="Total optimizer steps (a resumed run continues up to this number)."),
        click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1),
                     help="Global batch size (split across replicas)."),
        click.option("--patch", default=128, show_default=True, type=click.IntRange(min=8),
                     help="Training crop size in pixels (a multiple of the model stride)."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Seed of weights init, data order, augmentation and synthesis (recorded in train.json)."),
        click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak learning rate (Adam)."),
        click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine",
                     show_default=True, help="cosine: linear warm-up then cosine decay to lr/100 at --steps."),
        click.option("--warmup", type=click.IntRange(min=0), default=None,
                     help="Warm-up steps of the cosine schedule  [default: min(100, steps/20)]"),
        click.option("--clipnorm", type=float, default=None, help="Clip the global gradient norm (off by default)."),
        click.option("--loss", "rec_type", type=click.Choice(["charbonnier", "l1"]), default="charbonnier",
                     show_default=True, help="Reconstruction loss (also used for output distillation)."),
        click.option("--w-rec", default=1.0, show_default=True, type=float, help="Weight of the reconstruction loss."),
        click.option("--w-ssim", default=0.2, show_default=True, type=float, help="Weight of the 1-SSIM loss."),
        click.option("--w-freq", default=0.05, show_default=True, type=float,
                     help="Weight of the FFT-amplitude L1 loss (texture)."),
        click.option("--val-every", type=click.IntRange(min=1), default=None,
                     help="Validate (PSNR/SSIM on the held-out split) every N steps  [default: min(500, steps/4)]"),
        click.option("--val-count", default=4, show_default=True, type=click.IntRange(min=0),
                     help="Held-out images used for validation."),
        click.option("--val-crop", default=256, show_default=True, type=click.IntRange(min=8),
                     help="Center crop of each validation image (rounded down to the model stride)."),
        click.option("--val-sharp", type=click.Path(), default=None, metavar="DIR",
                     help="A folder of sharp photos (training-side, never a measuring set): validation also scores "
                          "PSNR(model(sharp), sharp) on centre crops of them, and the best step must keep them "
                          "above --val-sharp-floor (each dB short costs a dB of held-out PSNR)."),
        click.option("--val-sharp-count", default=12, show_default=True, type=click.IntRange(min=1),
                     help="Sharp photos used by --val-sharp (spread over the folder's sorted file list)."),
        click.option("--val-sharp-floor", default=35.0, show_default=True, type=float, metavar="DB",
                     help="Do-no-harm PSNR below which --val-sharp penalises a step."),
        click.option("--ckpt-every", type=click.IntRange(min=1), default=None,
                     help="Checkpoint every N steps  [default: --val-every]"),
        click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1),
                     help="Checkpoints kept in <out>/ckpt (ckpt-<step>)."),
        click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MIN",
                     help="Stop after this many minutes of training (then validate, checkpoint and export)."),
        click.option("--log-every", default=10, show_default=True, type=click.IntRange(min=1),
                     help="TensorBoard scalars every N steps."),
        click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
                     show_default=True,
                     help="tf.distribute strategy: mirrored = all local GPUs (or --cpu-replicas logical CPUs); "
                          "multiworker reads TF_CONFIG."),
        click.option("--cpu-replicas", type=click.IntRange(min=1), default=None,
                     help="Split the CPU into N logical devices (for --strategy mirrored without GPUs)."),
        click.option("--synth-count", default=64, show_default=True, type=click.IntRange(min=2),
                     help="Images generated for --data synth (a quarter held out)."),
        click.option("--synth-size", default=256, show_default=True, type=click.IntRange(min=16),
                     help="Size of the images generated for --data synth."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="TensorFlow intra-op threads  [default: TensorFlow's choice]"),
        click.option("--precision", type=click.Choice(["float32", "bfloat16", "auto"]), default="float32",
                     show_default=True,
                     help="Arithmetic of the trained model (and an online teacher): bfloat16 = mixed bf16 (float32 "
                          "weights and output layer; 1.1x (edge-s alone) to 1.4x (edge-m, edge-s distilled from "
                          "edge-m) the steps/s measured on a CPU with avx512_bf16, slower without); auto = bfloat16 "
                          "where the CPU flags show bf16 units. "
                          "The saved model is float32 either way."),
        click.option("--force", is_flag=True,
                     help="Start over: delete the checkpoints, TensorBoard logs and train.json in --out "
                          "(without it, an interrupted run resumes)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--debug-nan-at-step", type=int, default=None, hidden=True,
                     help="Test hook: poison the batch of this step with NaN."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _prepare_out(out, force):
    from kd_edge.cli.paths import ensure_output_dir

    out = ensure_output_dir(out)  # made and probed before any model or data loads: one line if it cannot be
    if force:
        for name in ("ckpt", "best", "tb"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("train.json",):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _resumed_run_info(out):
    """The ``run`` record of the train.json in ``out`` when there is a checkpoint to resume from, else None."""
    import json

    info_path = Path(out) / "train.json"
    if not (Path(out) / "ckpt" / "checkpoint").is_file() or not info_path.is_file():
        return None
    try:
        return json.loads(info_path.read_text()).get("run", {})
    except ValueError:
        return None


def _check_resume_matches(out, what):
    """Refuse to resume a run that trained something else in the same folder."""
    previous = _resumed_run_info(out) or {}
    for key, value in what.items():
        if key in previous and previous[key] != value:
            raise KdEdgeError(f"{out}: holds checkpoints of a run with {key}={previous[key]!r}, not {value!r}; "
                              f"use --force to start over or another --out")


def _build_overrides(out, arch):
    """Overrides for building ``arch`` by name in run folder ``out``: a run resumed from a checkpoint made before
    edge-* builds bounded their channel attention (its train.json records no ``attention``) rebuilds NAFNet's linear
    attention, so its weights go back into the network they were trained in. Empty for a new run."""
    from kd_edge.models.registry import get_spec

    if arch is None or "attention" not in get_spec(arch).defaults:
        return {}
    previous = _resumed_run_info(out)
    if previous is None:
        return {}
    return {"attention": previous.get("attention", "linear")}


def _setup_tf(opts):
    from kd_edge.distill.strategies import split_cpu

    if opts["cpu_replicas"]:
        split_cpu(opts["cpu_replicas"])
    if opts["threads"]:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(opts["threads"]))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(opts["threads"])))


def _run(opts, *, method, student_arch, teacher_path=None, use_teacher=True, w_kd=0.0, w_feat=0.0,
         teacher_cache=None):
    out = _prepare_out(opts["out"], opts["force"])
    _setup_tf(opts)
    from kd_edge.distill import datasets
    from kd_edge.distill.losses import LossWeights
    from kd_edge.distill.strategies import make_strategy
    from kd_edge.distill.trainer import train
    from kd_edge.models import build, load_model

    arch, student_file = resolve_student(student_arch)
    run_arch = arch or str(student_file)
    _check_resume_matches(out, {"method": method, "arch": run_arch})
    if opts["val_sharp"]:  # a wrong folder fails in one line before any model loads
        from kd_edge.distill.harm_validation import sharp_photo_files

        sharp_photo_files(opts["val_sharp"])
    root = datasets.resolve_data(opts["data"], out, synth_count=opts["synth_count"], synth_size=opts["synth_size"],
                                 seed=opts["seed"])
    try:
        weights = LossWeights(rec=opts["w_rec"], ssim=opts["w_ssim"], freq=opts["w_freq"], kd=w_kd, feat=w_feat,
                              rec_type=opts["rec_type"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    strategy = make_strategy(opts["strategy"])
    teacher, teacher_info = None, None
    import tf_keras

    tf_keras.utils.set_random_seed(int(opts["seed"]))
    lineage = None
    overrides = _build_overrides(out, arch) if student_file is None else {}
    with strategy.scope():
        if student_file is None:
            student = build(arch, **overrides)
        else:  # the user's own model: training starts from the weights in the file
            student, own = load_model(student_file)
            arch = own.get("arch")
            lineage = list(own.get("lineage") or []) + [
                {"method": "initial model", "path": str(student_file), "sha256": own.get("sha256")}]
        if use_teacher:
            teacher, manifest = load_model(teacher_path)
            teacher_info = {"path": str(teacher_path), "sha256": manifest.get("sha256"), "arch": manifest.get("arch"),
                            "params": manifest.get("params")}
    command = "kd-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        result = _train(train, student, teacher, root, out, weights, strategy, opts, method=method,
                        student_arch=arch, run_arch=run_arch, lineage=lineage, command=command,
                        teacher_info=teacher_info, teacher_cache=teacher_cache)
    except KeyboardInterrupt:
        # click would turn it into "Aborted!" (exit 1); the checkpoint is saved: exit 130 like a shell
        click.echo("kd-edge: interrupted (checkpoint saved; rerun the same command to resume)", err=True)
        raise click.exceptions.Exit(130) from None
    if result is None:
        click.echo("worker done (the chief writes the checkpoints, logs and model)")
        return 0
    click.echo(f"wrote {result} (+ {result.name}.json); training log {out / 'train.json'}, TensorBoard {out / 'tb'}")
    import json

    from kd_edge.cli.messages import heldout_line

    click.echo(heldout_line(json.loads((out / "train.json").read_text()).get("best")))
    return 0


def _run_info(method, run_arch, student):
    """What a resumed run must match, and the student's attention form (so a resume rebuilds the same network)."""
    from kd_edge.models.attention_bound import attention_form

    info = {"method": method, "arch": run_arch}
    form = attention_form(student)
    if form is not None:
        info["attention"] = form
    return info


def _train(train, student, teacher, root, out, weights, strategy, opts, *, method, student_arch, run_arch, command,
           teacher_info, lineage=None, teacher_cache=None):
    return train(
        student, teacher=teacher, data=root, data_spec=opts["data"], out=out, steps=opts["steps"],
        batch=opts["batch"], patch=opts["patch"], seed=opts["seed"], weights=weights, lr=opts["lr"],
        lr_schedule=opts["lr_schedule"], warmup=opts["warmup"], clipnorm=opts["clipnorm"],
        val_every=opts["val_every"], val_count=opts["val_count"], val_crop=opts["val_crop"],
        ckpt_every=opts["ckpt_every"], keep=opts["keep"], log_every=opts["log_every"], strategy=strategy,
        arch=student_arch, lineage=lineage, progress=not opts["no_progress"], command=command, method=method,
        teacher_info=teacher_info, teacher_cache=teacher_cache,
        debug_nan_at_step=opts["debug_nan_at_step"],
        max_seconds=opts["time_budget"] * 60.0 if opts["time_budget"] else None,
        val_sharp=opts["val_sharp"], harm_count=opts["val_sharp_count"], harm_floor=opts["val_sharp_floor"],
        run_info=_run_info(method, run_arch, student), precision=_precision(opts["precision"]),
    )


def _precision(choice):
    """The resolved --precision; a note on stderr when bfloat16 was asked for on a CPU without bf16 units."""
    from kd_edge.models import precision

    resolved = precision.resolve(choice)
    if resolved == "bfloat16" and choice == "bfloat16" and not precision.cpu_bf16_flags():
        click.echo("kd-edge: note: this CPU shows no bf16 units (avx512_bf16 / amx_bf16): --precision bfloat16 is "
                   "emulated here and usually slower than float32", err=True)
    if choice == "auto":
        click.echo(f"--precision auto: {resolved}", err=True)
    return resolved


def resolve_student(spec):
    """--student / --arch: ``(architecture, None)`` for a zoo name, ``(None, path)`` for a model file (.keras,
    .h5 or a SavedModel folder, loaded later by the one loader)."""
    from kd_edge.models import architectures
    from kd_edge.models.loading import KERAS_SUFFIXES

    if spec in architectures():
        return spec, None
    path = Path(spec)
    if path.exists():
        return None, path
    if path.suffix.lower() in KERAS_SUFFIXES or "/" in str(spec):
        raise InputFileError(path, "no such model file")
    raise KdEdgeError(f"{spec!r} is neither an architecture ({', '.join(architectures())}; `kd-edge models` "
                      f"describes them) nor a model file (.keras, .h5 or a SavedModel folder)")


def resolve_teacher(path):
    """--teacher: a model file (.keras, .h5), a SavedModel folder, or a run folder holding model.keras."""
    from kd_edge.models.loading import is_savedmodel

    path = Path(path)
    if path.is_dir() and not is_savedmodel(path):
        candidate = path / "model.keras"
        if not candidate.is_file():
            raise InputFileError(path, "no model.keras in this folder (is the teacher run finished?)")
        return candidate
    if not path.exists():
        raise InputFileError(path, "no such teacher model or run folder")
    return path


@click.command("train-teacher", context_settings=CONTEXT)
@click.option("--arch", default=DEFAULT_TEACHER_ARCH, show_default=True,
              help="Architecture to train (`kd-edge models` lists them), or your own model file (.keras, .h5 or "
                   "a SavedModel folder; training starts from its weights).")
@common_options
@model_loading_options
def train_teacher(arch, **opts):
    """Train a teacher (or any zoo model) on DBlur-layout or synthetic data.

    Resumes automatically from <out>/ckpt; Ctrl-C saves a checkpoint; exports the best-by-validation model
    to <out>/model.keras with its manifest.

    Example: kd-edge train-teacher --arch edge-l --data synth --steps 3000 --out runs/teacher
    """
    return _run(opts, method="train-teacher", student_arch=arch, use_teacher=False)


@click.command("distill", context_settings=CONTEXT)
@click.option("--teacher", "teacher", type=click.Path(), default=None,
              help="Teacher run folder (its model.keras), a model file (.keras, .h5) or a SavedModel folder.")
@click.option("--student", default=DEFAULT_STUDENT_ARCH, show_default=True,
              help="Student architecture, or your own model file (.keras, .h5 or a SavedModel folder; training "
                   "starts from its weights).")
@click.option("--no-teacher", is_flag=True,
              help="Train the student alone (same budget and losses minus the teacher terms): the ablation.")
@click.option("--w-kd", default=0.5, show_default=True, type=float,
              help="Weight of output distillation (student vs teacher output).")
@click.option("--w-feat", default=0.0, show_default=True, type=float,
              help="Weight of feature distillation through 1x1 adapters (0 = off).")
@click.option("--teacher-cache", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Offline distillation: run the teacher once over the training images into DIR (reused while "
                   "the teacher and the data are unchanged) and train from its stored outputs, so a step costs "
                   "what a step alone costs. Not with --w-feat or --strategy multiworker.")
@common_options
@model_loading_options
def distill(teacher, student, no_teacher, w_kd, w_feat, teacher_cache, **opts):
    """Distil a frozen teacher into a small student (or, with --no-teacher, train the student alone).

    Example: kd-edge distill --teacher runs/teacher --student edge-s --data synth --steps 3000 --out runs/student

    Offline (teacher outputs computed once): add --teacher-cache runs/teacher-cache
    """
    if teacher_cache is not None and (no_teacher or w_feat > 0):
        raise click.UsageError("--teacher-cache needs a teacher and output distillation only (not --no-teacher, "
                               "not --w-feat)")
    if no_teacher:
        if teacher:
            raise click.UsageError("--teacher and --no-teacher exclude each other")
        return _run(opts, method="student-alone", student_arch=student, use_teacher=False)
    if not teacher:
        raise click.UsageError("--teacher is required (or --no-teacher for the student-alone ablation)")
    teacher_path = resolve_teacher(teacher)
    return _run(opts, method="distill", student_arch=student, teacher_path=teacher_path, w_kd=w_kd, w_feat=w_feat,
                teacher_cache=teacher_cache)


@click.command("export-step", context_settings=CONTEXT)
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--step", type=click.IntRange(min=0), default=None,
              help="The checkpoint to export (ckpt/ckpt-<step>); without it, list the kept steps.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The .keras file to write.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@model_loading_options
def export_step(run_dir, step, out, force):
    """Export the model of any kept checkpoint of a train-teacher / distill run, with the run's lineage.

    A run's model.keras holds its best-by-validation step; on a flat validation curve another step may be the
    better model. Without --step, lists the kept steps and their validation scores.

    Example: kd-edge export-step runs/teacher --step 14000 --out runs/teacher-step14000.keras
    """
    from kd_edge.distill.export_step import export_step as export, kept_steps, validation_at

    if not run_dir.is_dir():
        raise InputFileError(run_dir, "no such run folder")
    if step is None:
        steps = kept_steps(run_dir)
        if not steps:
            raise InputFileError(run_dir / "ckpt", "no kept checkpoints")
        for s in steps:
            v = validation_at(run_dir, s)
            click.echo(f"step {s}" + (f": validation {v['psnr']:.2f} dB" if v and v.get("psnr") is not None else ""))
        return
    if out is None:
        raise click.UsageError("--out is required with --step")
    if out.suffix != ".keras":
        raise click.UsageError(f"--out {out}: a model file must end in .keras")
    if out.exists() and not force:
        raise InputFileError(out, "already exists (use --force to replace it)")
    from kd_edge.quiet_import import import_tensorflow_quietly, is_quiet

    if is_quiet():  # only exporting needs TensorFlow; listing the steps answers without it
        import_tensorflow_quietly()
    manifest = export(run_dir, step, out)
    click.echo(f"wrote {out} (+ {out.name}.json): step {step} of {run_dir}, sha256 {manifest['sha256'][:12]}")
