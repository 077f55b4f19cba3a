"""``kd-edge convert``: Keras model -> TFLite / ONNX / Core ML artifacts, each with a manifest and a parity gate.

TensorFlow is imported only when the command runs (kd_edge.converters imports it lazily).
"""
import json
from pathlib import Path

import click

from kd_edge.cli.model_options import model_loading_options

from kd_edge.cli.paths import ExistingPath, ensure_output_dir

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _target_names():
    from kd_edge.converters.registry import targets

    return tuple(targets())


def _check_targets(ctx, param, values):
    valid = _target_names()
    for value in values:
        if value != "all" and value not in valid:
            raise click.BadParameter(f"unknown target {value!r}; valid targets: {', '.join(valid)}, all")
    return values


def _check_input_size(ctx, param, value):
    from kd_edge.converters import InputSizeError, parse_input_size

    try:
        return parse_input_size(value)
    except InputSizeError as exc:
        raise click.BadParameter(str(exc)) from None


def _default_model():
    """The embedded default student (kd_edge.defaults); KdEdgeError (exit 1) if this install lacks it."""
    try:
        from kd_edge.defaults import default_model_path
    except ImportError:
        return None
    return default_model_path("student")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model", required=False, metavar="[MODEL]")
@click.option("--target", "-t", "targets", multiple=True, required=True, callback=_check_targets,
              help="Target to build (repeatable) or 'all': tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, "
                   "onnx-fp32, onnx-fp16, onnx-int8, coreml-fp32, coreml-fp16.")
@click.option("--out", "out_dir", required=True, type=click.Path(),  # checked by ensure_output_dir
              help="Output folder: writes <model-stem>.<target>.<ext> and <artifact>.json.")
@click.option("--input-size", default="256", show_default=True, callback=_check_input_size,
              help="Fixed square input side in pixels (a multiple of the model stride), or 'dynamic' for H x W "
                   "chosen at run time.")
@click.option("--calib", type=ExistingPath(file_okay=False),
              help="Calibration images for int8 targets (DBlur layout or a folder of images); "
                   "default: built-in synthetic blurred images.")
@click.option("--calib-count", default=32, show_default=True, type=click.IntRange(1, 10000),
              help="Number of calibration images for int8 targets.")
@click.option("--int8-io", is_flag=True,
              help="tflite-int8: int8 input/output tensors (quantisation parameters in the manifest) instead of float.")
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for the parity runs (LiteRT / ONNX Runtime).")
@click.option("--force", is_flag=True, help="Overwrite existing artifacts and manifests.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write a JSON summary of the results here.")
@model_loading_options
def convert(model, targets, out_dir, input_size, calib, calib_count, int8_io, threads, force, json_file):
    """Convert MODEL (.keras, .h5 or a SavedModel folder; default: the embedded student) to mobile/edge formats,
    each gated on parity.

    Each artifact is run in its real runtime (LiteRT, ONNX Runtime) on probe images and compared with
    Keras; below the target's threshold (fp32 60 dB, fp16 45 dB, dynamic 35 dB, int8 30 dB) nothing
    is written and the command exits 1. Core ML packages cannot run off macOS: there they are
    validated structurally and the manifest says parity was not measured.

    \b
    Examples:
      kd-edge convert student.keras --target all --out export/
      kd-edge convert student.keras -t tflite-int8 --calib data/train --int8-io --out export/
      kd-edge convert student.keras -t onnx-fp32 -t coreml-fp16 --input-size dynamic --out export/
    """
    from kd_edge.atomic import write_json
    from kd_edge.converters import InputSizeError, ParityGateError
    from kd_edge.converters import convert as run_convert
    from kd_edge.errors import KdEdgeError

    if model is None:
        model = _default_model()
        if model is None:
            raise click.UsageError("MODEL is required (no embedded default student in this build)")
    from kd_edge.quiet_import import third_party_output_silenced

    ensure_output_dir(out_dir)  # before the model loads: a folder that cannot be made or written is one line
    results, error = [], None
    try:  # converters' and runtimes' own output (progress bars, XNNPACK INFO, quantizer lines) only with --verbose
        with third_party_output_silenced() as stderr:
            results = run_convert(model, targets, out_dir, input_size=input_size, calib=calib,
                                  calib_count=calib_count, force=force, int8_io=int8_io, threads=threads,
                                  log=lambda msg: print(msg, file=stderr, flush=True))
    except InputSizeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--input-size'") from None
    except ParityGateError as exc:
        results, error = exc.results, exc
    for r in results:
        click.echo(r.summary())
    if json_file:
        from kd_edge.converters.pipeline import cpu_facts

        write_json(json_file, {"model": str(model), "out": str(Path(out_dir)), "host": cpu_facts(), "results": [
            {"target": r.target, "artifact": str(r.artifact) if r.artifact else None, "passed": r.passed,
             "parity": r.manifest.get("parity"), "file_size": r.manifest.get("file_size"),
             "gzip_size": r.manifest.get("gzip_size"), "sha256": r.manifest.get("sha256"),
             "weights": r.manifest.get("weights"), "notes": r.manifest.get("notes"), "error": r.error}
            for r in results]})
    if error is not None:
        raise KdEdgeError(str(error))
