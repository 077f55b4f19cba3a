"""``kd-edge prune`` (tfmot sparsity or real filter removal), ``kd-edge quantize`` (QAT, PTQ, --check) and
``kd-edge bound-attention`` (rewrite a trained model's channel attention to be bounded).

TensorFlow is imported only when a command runs.
"""
from pathlib import Path

import click

from kd_edge.cli.model_options import model_loading_options

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _kb(n):
    return f"{n / 1024:.1f} KiB"


def _print_sparsity(report):
    from kd_edge.compress.sparsity import format_table

    click.echo(format_table(report["layers"]))
    s = report["size"]
    sp = report["sparsity"]
    click.echo(f"sparsity of the pruned kernels {sp['pruned_kernels'] * 100:.1f}% (target {sp['target'] * 100:.0f}%), "
               f"of all kernels {sp['overall'] * 100:.1f}% (depthwise kernels stay dense: tfmot does not prune them)")
    click.echo(f"weights float32: parent {_kb(s['parent_weights']['raw_bytes'])} raw, "
               f"{_kb(s['parent_weights']['gzip_bytes'])} gzip -> pruned {_kb(s['pruned_weights']['raw_bytes'])} raw, "
               f"{_kb(s['pruned_weights']['gzip_bytes'])} gzip")
    click.echo(f".keras file:     parent {_kb(s['parent_file']['raw_bytes'])} raw, "
               f"{_kb(s['parent_file']['gzip_bytes'])} gzip -> pruned {_kb(s['pruned_file']['raw_bytes'])} raw, "
               f"{_kb(s['pruned_file']['gzip_bytes'])} gzip")
    click.echo(f"NOTE: {report['speed_note']}")


def _print_filters(report):
    click.echo(f"{'layer':<34} {'class':<16} {'before':>7} {'after':>7}")
    for row in report["layers"]:
        click.echo(f"{row['layer']:<34} {row['class']:<16} {row['before']:>7d} {row['after']:>7d}")
    c = report["complexity"]
    click.echo(f"params {c['parent']['params']:,} -> {c['pruned']['params']:,} (-{c['params_drop'] * 100:.1f}%), "
               f"MACs@256 {c['parent']['macs_256'] / 1e9:.3f} G -> {c['pruned']['macs_256'] / 1e9:.3f} G "
               f"(-{c['macs_drop'] * 100:.1f}%)")


def _validation(report):
    from kd_edge.cli.messages import heldout_line

    tuned = report.get("fine_tune")
    if tuned and tuned.get("validation"):
        return "; " + heldout_line(tuned["validation"], what="held-out PSNR after fine-tuning")
    return ""


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path())
@click.option("--sparsity", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="tfmot magnitude pruning to this fraction of zero weights (e.g. 0.5).")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True,
              help="Sparsity schedule: polynomial ramps 0 -> target over the first 70% of steps; constant prunes "
                   "to the target at once.")
@click.option("--filters", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Really remove this fraction of the lowest-L1 filters (e.g. 0.2) and rebuild a narrower model.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(0),
              help="Distillation fine-tuning steps (0 with --filters: no fine-tuning).")
@click.option("--out", "out", required=True, type=click.Path(),  # checked by ensure_output_dir
              help="Output folder: model.keras (+ manifest), prune_report.json, finetune/.")
@click.option("--teacher", type=click.Path(),
              help="Teacher for distillation fine-tuning (default: the unpruned model itself).")
@click.option("--data", default="synth", show_default=True,
              help="Fine-tuning data: a DBlur root (train/ + test/) or 'synth' (generated into OUT/data).")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--patch", default=64, show_default=True, type=click.IntRange(8))
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Fine-tuning learning rate (cosine decay).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace OUT/model.keras if it exists.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report here.")
@model_loading_options
def prune(model, sparsity, schedule, filters, steps, out, teacher, data, batch, patch, lr, seed, force, json_path):
    """Prune MODEL: tfmot sparsity (--sparsity) or real filter removal (--filters), with distillation fine-tuning.

    \b
    Examples:
      kd-edge prune runs/student/model.keras --sparsity 0.5 --schedule polynomial --steps 500 --out runs/sparse
      kd-edge prune runs/student/model.keras --filters 0.2 --steps 500 --out runs/pruned20 --teacher runs/teacher/model.keras

    Sparsity shrinks the compressed (gzip) size but does not make dense kernels faster; --filters removes
    channels, so parameters, MACs and latency drop. Either way the output runs at any input size that is a
    multiple of the model's stride.
    """
    if (sparsity is None) == (filters is None):
        raise click.UsageError("choose exactly one of --sparsity FRACTION or --filters FRACTION")
    from kd_edge.cli.paths import ensure_output_dir

    ensure_output_dir(out)  # before the model loads: a folder that cannot be made or written is one line
    from kd_edge.atomic import write_json
    from kd_edge.compress import runs

    if sparsity is not None:
        if steps < 1:
            raise click.UsageError("--sparsity needs --steps >= 1 (the masks are applied while training)")
        report = runs.run_sparsity(model, out, sparsity=sparsity, schedule=schedule, steps=steps, teacher=teacher,
                                   data=data, batch=batch, patch=patch, seed=seed, lr=lr, force=force)
        _print_sparsity(report)
    else:
        report = runs.run_filters(model, out, ratio=filters, steps=steps, teacher=teacher, data=data, batch=batch,
                                  patch=patch, seed=seed, lr=lr, force=force)
        _print_filters(report)
    if json_path:
        write_json(json_path, report)
    click.echo(f"wrote {report['model']} and {Path(out) / 'prune_report.json'}{_validation(report)}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path())
@click.option("--check", "check_only", is_flag=True, help="List every layer and whether QAT will quantize it, and why.")
@click.option("--qat", is_flag=True, help="Quantization-aware training with distillation (tfmot).")
@click.option("--ptq", is_flag=True, help="Post-training full-int8 TFLite calibrated on --calib images.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(1), help="QAT fine-tuning steps.")
@click.option("--out", "out", type=click.Path(),  # checked by ensure_output_dir
              help="Output folder: model.keras (QAT), <model>.tflite-int8.tflite + manifest (the same converter and "
                   "parity gate as kd-edge convert), quantize_report.json.")
@click.option("--teacher", type=click.Path(),
              help="Teacher for distillation (default: the float model itself).")
@click.option("--data", default="synth", show_default=True, help="Training data: a DBlur root or 'synth'.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--patch", default=64, show_default=True, type=click.IntRange(8))
@click.option("--lr", default=1e-4, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--preserve-sparsity", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Prune-preserving QAT: auto = when the model is sparse (>= 20% zero kernel weights).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False),
              help="Calibration images (DBlur root or image folder); default: built-in synthetic blurred set.")
@click.option("--calib-count", default=32, show_default=True, type=click.IntRange(1, 10000))
@click.option("--input-size", default=256, show_default=True, type=click.IntRange(8),
              help="Input side of the int8 TFLite (a multiple of the model stride).")
@click.option("--no-tflite", is_flag=True, help="With --qat: do not export the int8 TFLite.")
@click.option("--force", is_flag=True, help="Replace existing outputs.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report (or check) here.")
@model_loading_options
def quantize(model, check_only, qat, ptq, steps, out, teacher, data, batch, patch, lr, seed, preserve_sparsity,
             calib, calib_count, input_size, no_tflite, force, json_path):
    """Quantize MODEL: --check (which layers quantize), --qat (training) or --ptq (post-training int8).

    \b
    Examples:
      kd-edge quantize --check runs/student/model.keras
      kd-edge quantize runs/student/model.keras --qat --steps 300 --out runs/qat
      kd-edge quantize runs/student/model.keras --ptq --calib data/train --calib-count 64 --out runs/ptq
      kd-edge convert runs/qat/model.keras --target tflite-int8 --out artifacts

    Layers tfmot cannot quantize stay in float (listed by --check), never a crash. The int8 TFLite is made by
    convert's tflite-int8 target with its parity gate (30 dB vs the Keras model): below it nothing is written
    and the command exits 1 (a QAT model.keras is kept).
    """
    if sum([check_only, qat, ptq]) != 1:
        raise click.UsageError("choose exactly one of --check, --qat or --ptq")
    if out is not None and not check_only:
        from kd_edge.cli.paths import ensure_output_dir

        ensure_output_dir(out)  # before the model loads
    from kd_edge.atomic import write_json

    if check_only:
        from kd_edge.compress.quantize_check import check, format_check
        from kd_edge.compress.runs import model_file
        from kd_edge.models import load_model

        loaded, _ = load_model(model_file(model))
        result = check(loaded)
        click.echo(format_check(result))
        if json_path:
            write_json(json_path, result)
        return
    if not out:
        raise click.UsageError("--out DIR is required with --qat and --ptq")
    from kd_edge.compress import runs

    if qat:
        preserve = {"auto": "auto", "yes": True, "no": False}[preserve_sparsity]
        report = runs.run_qat(model, out, steps=steps, teacher=teacher, data=data, batch=batch, patch=patch,
                              seed=seed, lr=lr, force=force, preserve_sparsity=preserve, calib=calib,
                              calib_count=calib_count, tflite=not no_tflite, input_size=input_size)
        floats = report["settings"]["float_layers"]
        click.echo(f"QAT ({report['settings']['scheme']}): {len(report['plan']) - len(floats)} layers quantized, "
                   f"{len(floats)} float{(' (' + ', '.join(floats) + ')') if floats else ''}")
        click.echo(f"wrote {report['model']}{_validation(report)}")
    else:
        report = runs.run_ptq(model, out, calib=calib, calib_count=calib_count, input_size=input_size, force=force)
    if report.get("tflite"):
        t = report["tflite"]
        p = t["parity"]
        click.echo(f"wrote {t['path']} ({_kb(t['bytes'])}, full int8, float I/O): parity {p['psnr_db']:.1f} dB vs "
                   f"the Keras model (gate {p['threshold_db']:.0f} dB, the number `kd-edge convert` gives)")
        for note in t.get("notes") or ():
            click.echo(f"  note: {note}")
    if json_path:
        write_json(json_path, report)
    click.echo(f"report: {Path(out) / 'quantize_report.json'}")


@click.command("bound-attention", context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .keras file to write.")
@click.option("--calib", type=click.Path(exists=True, file_okay=False),
              help="Calibration images (DBlur root: its blurred images, or an image folder); default: the built-in "
                   "synthetic blurred set. Training-like images, never the photos you evaluate on.")
@click.option("--calib-count", default=32, show_default=True, type=click.IntRange(1, 10000))
@click.option("--calib-size", default=256, show_default=True, type=click.IntRange(8),
              help="Side of the calibration crops (rounded down to the model's stride).")
@click.option("--margin", default=1.5, show_default=True, type=click.FloatRange(min=1.0),
              help="c = margin x the largest attention weight seen: larger keeps the outputs closer, smaller "
                   "bounds the activations tighter.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@model_loading_options
def bound_attention(model, out, calib, calib_count, calib_size, margin, force):
    """Bound the channel attention of a trained edge-* model (x * w -> x * c tanh(w / c), folded into its
    convolutions), so no input can make its activations run away; the output on photos barely changes.

    Models trained before kd-edge's bounded attention have NAFNet's x * conv(mean(x)), quadratic in x: on a
    checkerboard their activations can pass fp16's range or become NaN. Fresh builds are bounded already.

    Example: kd-edge bound-attention runs/student/model.keras --calib runs/data --out runs/student-bounded.keras
    """
    from kd_edge.errors import InputFileError
    from kd_edge.models.attention_bound import bound_attention_file

    if out.suffix != ".keras":
        raise click.UsageError(f"--out {out}: a model file must end in .keras")
    if not Path(model).is_file():
        raise InputFileError(model, "no such model file")
    if out.exists() and not force:
        raise InputFileError(out, "already exists (use --force to replace it)")
    from kd_edge.models.saving import read_manifest

    if read_manifest(model) is None:
        click.echo(f"note: {model} has no manifest (.keras.json): the new model's lineage starts at this step")
    manifest = bound_attention_file(model, out, calib=calib, calib_count=calib_count, calib_size=calib_size,
                                    margin=margin)
    step = manifest["lineage"][-1]
    change, peak = step["output_change_on_calibration_psnr_db"], step["largest_activation_on_stress_inputs"]
    scales = [row["scale"] for row in step["layers"].values()]
    click.echo(f"bounded {len(scales)} channel attention layers (margin {step['margin']}; scales "
               f"{min(scales):.2f}..{max(scales):.2f})")
    click.echo(f"output change on {step['calibration']['images']} calibration images: {change['min']} dB at worst, "
               f"{change['mean']} dB mean (PSNR of the new output against the old)")
    click.echo(f"largest activation on the stress inputs: {peak['before']} -> {peak['after']}")
    click.echo(f"wrote {out} (+ {out.name}.json), sha256 {manifest['sha256'][:12]}")
