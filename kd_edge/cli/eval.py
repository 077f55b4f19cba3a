"""`kd-edge eval`: PSNR/SSIM of any mix of Keras models and converted artifacts, with a report like the original.

TensorFlow and the runtimes are imported inside the command only, so `kd-edge --help` stays fast.
"""
from pathlib import Path

import click

from kd_edge.cli.messages import one_line_warnings
from kd_edge.cli.model_options import model_loading_options
from kd_edge.cli.paths import ExistingPath, ensure_output_dir
from kd_edge.errors import KdEdgeError


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, metavar="[MODEL]...", type=ExistingPath(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="DBlur-layout folder: DIR/blur + DIR/sharp, or a dataset root with test/.")
@click.option("--names", default=None, help="Comma-separated display names, one per MODEL (e.g. teacher,student). "
                                            "A model named 'teacher' (else the first) is the retention reference.")
@click.option("--bench", "bench_path", default=None, type=click.Path(path_type=Path),
              help="A `kd-edge bench` JSON: latency and memory for the cost table (rows matched by artifact path).")
@click.option("--out", "out_dir", default=Path("report"), show_default=True, type=click.Path(path_type=Path),
              help="Folder for report.md, report.html, per_image.csv, summary.json and the PNG figures.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed that picks the qualitative samples and crops.")
@click.option("--samples", default=2, show_default=True, type=click.IntRange(0, 12),
              help="Number of qualitative figures (blurred / models / sharp with zoomed centre crops).")
@click.option("--limit", default=None, type=click.IntRange(1), help="Evaluate the first N image pairs only (sorted by name).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Wiener and Richardson-Lucy with the true kernel, where <split>/kernels/<name>.npy exists.")
@click.option("--tile", default=None, type=click.IntRange(0),
              help="Tile size for dynamic models (0 or unset: whole image padded to the stride). Fixed-size "
                   "artifacts are always tiled at their own size.")
@click.option("--align", default=0, show_default=True, type=click.IntRange(0, 16),
              help="Score each output at its best integer shift within +-N px, N-px borders cropped (the Levin et al. "
                   "protocol for off-centre kernels, e.g. N=7 for levin09_gray).")
@click.option("--do-no-harm/--no-do-no-harm", "do_no_harm", default=True, show_default=True,
              help="Also run each model on the sharp images and report PSNR(model(sharp), sharp).")
@click.option("--threads", default=None, type=click.IntRange(1), help="Threads for LiteRT / ONNX Runtime.")
@click.option("--no-reference", is_flag=True, help="Leave out the P100/Helen reference section.")
@click.option("--force", is_flag=True, help="Replace a report already in --out.")
@model_loading_options
def evaluate(models, data_dir, names, bench_path, out_dir, seed, samples, limit, baselines, tile, align, do_no_harm,
             threads, no_reference, force):
    """Evaluate MODEL... (Keras .keras, .tflite, .onnx, .mlpackage) on the test pairs of --data and write a report.

    With no MODEL, the embedded default student is evaluated.

    \b
    Example:
      kd-edge eval --data data/synth teacher.keras student.keras \\
          export/student.tflite-int8.tflite --names teacher,student,student-int8 \\
          --bench bench.json --out report/
    """
    from kd_edge.report.evaluate import evaluate as run_evaluation
    from kd_edge.data.pipeline import heldout_split
    from kd_edge.report.evaluate import parse_names

    if not models:
        from kd_edge.defaults import default_model_path

        models = (default_model_path("student"),)
    name_list = parse_names(names, len(models))
    heldout_split(data_dir)  # a bad data directory fails before any model is loaded
    if bench_path is not None and not Path(bench_path).is_file():
        raise KdEdgeError(f"{bench_path}: bench JSON does not exist")
    existing = [name for name in ("report.md", "report.html") if (Path(out_dir) / name).exists()]
    if existing and not force:
        raise KdEdgeError(f"{out_dir}: already holds a report ({', '.join(existing)}); pass --force to replace it")
    ensure_output_dir(out_dir)  # before any model loads

    from kd_edge.report.build import write_report

    with one_line_warnings():  # e.g. an artifact without a manifest loads unverified
        result = run_evaluation(data_dir, [str(m) for m in models], names=name_list, limit=limit,
                                baselines=baselines, tile=tile or None, seed=seed, samples=samples, threads=threads,
                                progress=True, align=align, do_no_harm=do_no_harm)
        written = write_report(result, out_dir, bench_path=bench_path, reference=not no_reference)
    _print_summary(result, out_dir, written)


def _print_summary(result, out_dir, written):
    from kd_edge.report import stats

    click.echo(f"Evaluated {len(result.images)} image(s) from {result.split_dir}")
    width = max(len(c) for c in result.columns)
    below = stats.below_blurred_input(result)
    for column in result.columns:
        s = stats.column_summary(result, column)
        flag = "  BELOW the blurred input" if column in below else ""
        click.echo(f"  {column:<{width}}  PSNR {s['psnr']['mean']:7.2f} dB  SSIM {s['ssim']['mean']:.4f}{flag}")
    for name, values in stats.do_no_harm(result).items():
        click.echo(f"  {name:<{width}}  do no harm: PSNR(model(sharp), sharp) mean {values['mean']:.2f} dB, "
                   f"min {values['min']:.2f} dB")
    for name, g in stats.grid_artifacts(result).items():
        click.echo(f"  {name:<{width}}  grid artefacts: worst {g['worst']:.1f} levels added "
                   f"({g['period']}-px lattice; {g['visible']} of {g['n']} images at or above the visible line)")
    models = {m.name for m in result.models}
    for name, split in stats.region_gains(result).items():
        if name in models:
            click.echo(f"  {name:<{width}}  gain where blurred {_signed(split['blurred'])}, where not blurred "
                       f"{_signed(split['unblurred'])} (kd_edge.report.regions)")
    click.echo(f"Report: {Path(out_dir) / 'report.html'} (and report.md, per_image.csv, summary.json, "
               f"{sum(1 for n in written if n.endswith('.png'))} PNG figures)")


def _signed(aggregate):
    """'+0.42 dB (8 images)', or '-' when the region covered under 1% of every image."""
    return f"{aggregate['mean']:+.2f} dB ({aggregate['n']} images)" if aggregate["n"] else "-"
