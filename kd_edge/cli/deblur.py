"""``kd-edge deblur``: deblur images of any size with any model or artifact, by tiles."""
import sys
import time
import warnings
from pathlib import Path

import click

from kd_edge.cli.model_options import model_loading_options
from kd_edge.cli.paths import ExistingPath, ensure_output_dir
from kd_edge.errors import KdEdgeError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
BLENDS = ("hann", "gaussian", "linear", "none")  # == kd_edge.tiling.BLENDS (not imported: keeps --help light)


def _echo(msg):
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def collect_jobs(inputs, out_dir):
    """``(input, output)`` pairs: files as given, the image files directly inside directories (sorted).

    Returns ``(jobs, problems)``; a problem is ``(input, message)`` for an input that cannot be processed
    (two inputs that would write the same output)."""
    from kd_edge.images import is_image_file

    out_dir = Path(out_dir)
    jobs, problems, claimed = [], [], {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith("."))
            if not files:
                _echo(f"kd-edge: warning: {item}: no image files ({', '.join(_suffixes())})")
        else:
            files = [item]
        for src in files:
            dst = out_dir / src.name
            key = str(dst.resolve())
            if key in claimed:
                if Path(claimed[key]).resolve() != src.resolve():
                    problems.append((src, f"same output name as {claimed[key]} ({dst}); rename one of them"))
                continue  # the same file given twice: once is enough
            claimed[key] = src
            jobs.append((src, dst))
    return jobs, problems


def _suffixes():
    from kd_edge.images import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def same_file(a, b) -> bool:
    """True if ``a`` and ``b`` are the same file (symlinks resolved, hard links detected)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and a.exists() and a.samefile(b)
    except OSError:
        return False


def _default_model(tile, seam_check):
    """The embedded student: its cached, parity-gated tflite-fp32 artifact (kd_edge.default_artifact) when the run
    can use a fixed 256x256 model, else the Keras model (--tile 0 or another size, --seam-check)."""
    from kd_edge import default_artifact
    from kd_edge.defaults import default_model_path

    if not seam_check and tile in (None, default_artifact.DEFAULT_SIZE):
        artifact = default_artifact.default_artifact(log=_echo)
        if artifact is not None:
            return artifact
    return default_model_path("student")


def _load_model(model, threads, *, tile=None, seam_check=False):
    from kd_edge.runtime import load

    if model is None:
        model = _default_model(tile, seam_check)
    from kd_edge.runtime import kind_of

    if kind_of(model) == "keras" and "tensorflow" not in sys.modules:  # .keras, .h5 or a SavedModel folder
        try:  # a Keras model needs TensorFlow: import it without its C++ start-up noise
            from kd_edge.quiet_import import import_tensorflow_quietly

            import_tensorflow_quietly()
        except ImportError:
            pass
    from kd_edge.quiet_import import third_party_output_silenced

    with third_party_output_silenced(), warnings.catch_warnings(record=True) as caught:  # no XNNPACK INFO line
        warnings.simplefilter("always")
        runtime = load(model, threads=threads)
    for w in caught:
        if "unverified" in str(w.message) or "manifest" in str(w.message):
            _echo(f"kd-edge: warning: {w.message}")
    return runtime


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=ExistingPath(path_type=Path))
@click.option("--model", "model", type=ExistingPath(path_type=Path), default=None,
              help="Model or artifact: .keras, .tflite, .onnx, .mlpackage (default: the embedded student, run as "
                   "its tflite-fp32 artifact, converted once and cached; as Keras with --tile 0/N or --seam-check).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),  # checked by ensure_output_dir
              help="Output folder; each output keeps its input's file name and format.")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Tile size in pixels. Default: the model's fixed input size, else 256. "
                   "0 = the whole image at once (dynamic-shape models only).")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True,
              help="Minimum pixels shared by neighbouring tiles.")
@click.option("--blend", type=click.Choice(BLENDS), default="hann", show_default=True,
              help="Window that cross-fades overlapping tiles (none: nearest tile wins).")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tiles per inference call (fixed batch-1 artifacts run one at a time).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs (inputs are never overwritten).")
@click.option("--seam-check", is_flag=True,
              help="Also run each image whole (dynamic-shape model) and print the tiled-vs-whole PSNR.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for LiteRT / ONNX Runtime (default: the runtime's choice).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a JSON summary (per image: size, time, MPix/s, status) to FILE.")
@model_loading_options
@click.pass_context
def deblur(ctx, inputs, model, out_dir, tile, overlap, blend, batch, force, seam_check, threads, json_path):
    """Deblur images of any size: files or folders of PNG, JPEG, TIFF, BMP, WebP (8/16-bit, grey, RGBA).

    Large images are cut into overlapping tiles of the model's input size, run (batched where the
    runtime allows) and blended back seamlessly with bounded memory. Outputs keep the input's format,
    bit depth, grayscale and alpha. A file that cannot be read is reported and skipped, and the exit
    code is then 1.

    \b
    Examples:
      kd-edge deblur photo.jpg --model student.tflite-int8.tflite --out deblurred/
      kd-edge deblur shots/ scan.tiff --model student.keras --out out/ --blend gaussian --force
      kd-edge deblur big.png --model student.keras --out out/ --seam-check
    """
    from tqdm import tqdm

    from kd_edge import tiling
    from kd_edge.atomic import write_json
    from kd_edge.images import read_image, write_image
    from kd_edge.metrics import psnr

    if seam_check and tile == 0:
        raise click.UsageError("--seam-check compares tiles with the whole image: give a tile size, not --tile 0")
    ensure_output_dir(out_dir)  # before the model loads: a folder that cannot be made or written is one line
    t_start = time.perf_counter()
    jobs, problems = collect_jobs(inputs, out_dir)
    records, todo, failed, kept = [], [], 0, 0
    for src, message in problems:
        _echo(f"kd-edge: skipped {src}: {message}")
        records.append({"input": str(src), "status": "failed", "error": message})
        failed += 1
    for src, dst in jobs:  # refusals and kept outputs first: no model load when there is nothing to do
        record = {"input": str(src), "output": str(dst)}
        records.append(record)
        if same_file(src, dst):
            failed += 1
            record.update(status="failed", error="the output would overwrite the input")
            _echo(f"kd-edge: skipped {src}: the output {dst} would overwrite the input (choose another --out)")
        elif dst.exists() and not force:
            kept += 1
            record["status"] = "kept"
            _echo(f"kd-edge: kept existing {dst} (use --force to overwrite)")
        else:
            todo.append((src, dst, record))

    runtime, sizes, mode = None, None, "nothing to do"
    if todo:
        runtime = _load_model(model, threads, tile=tile, seam_check=seam_check)
        sizes = tiling.resolve_tile(runtime, tile)  # fails on a tile size that the model cannot take
        if seam_check and runtime.input_size is not None:
            raise KdEdgeError(f"--seam-check needs a dynamic-shape model (.keras, dynamic ONNX); {runtime.path.name} "
                              f"has a fixed input size {runtime.input_size[0]}x{runtime.input_size[1]}")
        if sizes is not None and overlap >= min(sizes):
            raise KdEdgeError(f"--overlap {overlap} must be smaller than the tile ({sizes[0]}x{sizes[1]})")
        mode = "whole image" if sizes is None else f"tile {sizes[0]}x{sizes[1]}, overlap {overlap}, {blend}"

    pixels, infer_s, seams = 0, 0.0, []
    bar = tqdm(todo, unit="img", desc="deblur", disable=None if len(todo) > 1 else True, file=sys.stderr)
    for src, dst, record in bar:
        try:
            image = read_image(src)
            h, w = image.height, image.width
            record.update(height=h, width=w, bit_depth=image.bit_depth, mode=image.mode)
            tile_bar = None
            if len(todo) == 1 and sizes is not None:  # one (large) image: show the tiles instead
                count = tiling.plan_tiles(h, w, sizes, overlap, blend=blend, align=tiling.model_stride(runtime)).count
                tile_bar = tqdm(total=count, unit="tile", desc=src.name, disable=None if count > 1 else True,
                                file=sys.stderr)
            t0 = time.perf_counter()
            # without the seam check the float image is its own output buffer (one full-size array in all)
            try:
                result = tiling.deblur(image.rgb, runtime, tile=sizes if sizes is not None else 0, overlap=overlap,
                                       blend=blend, batch=batch, out=None if seam_check else image.rgb,
                                       progress=tile_bar.update if tile_bar is not None else None)
            finally:
                if tile_bar is not None:
                    tile_bar.close()
            seconds = time.perf_counter() - t0
            if seam_check:
                db = psnr(result, tiling.deblur_whole(image.rgb, runtime))
            if same_file(src, dst):  # checked again right before writing
                raise KdEdgeError(f"{dst}: would overwrite the input")
            write_image(dst, result, bit_depth=image.bit_depth, alpha=image.alpha,
                        grayscale=image.mode in ("L", "LA"))
        except (KdEdgeError, MemoryError, OSError, ValueError) as exc:
            failed += 1
            if isinstance(exc, KdEdgeError):
                text = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
            else:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                text = f"{src}: {type(exc).__name__}: {detail}"
            record.update(status="failed", error=text)
            _echo(f"kd-edge: skipped {text}")
            continue
        pixels += h * w
        infer_s += seconds
        record.update(status="ok", seconds=round(seconds, 4), mpix_per_s=round(h * w / 1e6 / max(seconds, 1e-9), 4))
        if seam_check:
            record["seam_psnr_db"] = round(float(db), 3)
            seams.append(db)
            _echo(f"seam check {src.name}: tiled vs whole image {db:.2f} dB PSNR")
        bar.set_postfix_str(f"{pixels / 1e6 / max(infer_s, 1e-9):.2f} MPix/s")
    bar.close()

    total_s = time.perf_counter() - t_start
    done = sum(1 for r in records if r.get("status") == "ok")
    rate = pixels / 1e6 / infer_s if infer_s > 0 else 0.0
    model_name = runtime.path.name if runtime is not None else (model.name if model else "default student")
    kind = runtime.kind if runtime is not None else "not loaded"
    line = (f"deblurred {done} image(s), {pixels / 1e6:.2f} MPix in {infer_s:.2f} s ({rate:.2f} MPix/s; "
            f"{total_s:.2f} s with I/O) with {model_name} [{kind}, {mode}] -> {out_dir}")
    if seams:
        line += f"; seam PSNR min {min(seams):.2f} dB"
    if kept:
        line += f"; {kept} kept (existing, use --force)"
    if failed:
        line += f"; {failed} failed"
    click.echo(line)
    if json_path is not None:
        write_json(json_path, {
            "model": str(runtime.path) if runtime is not None else (str(model) if model else None),
            "kind": kind, "input_size": runtime.input_size if runtime is not None else None,
            "tile": (list(sizes) if sizes else 0) if runtime is not None else tile, "overlap": overlap,
            "blend": blend, "batch": batch, "threads": threads, "images": records,
            "summary": {"ok": done, "kept": kept, "failed": failed, "megapixels": round(pixels / 1e6, 4),
                        "inference_s": round(infer_s, 4), "total_s": round(total_s, 4),
                        "mpix_per_s": round(rate, 4), "seam_psnr_min_db": round(min(seams), 3) if seams else None},
        })
    if failed:
        ctx.exit(1)
    return 0
