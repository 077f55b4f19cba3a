"""Per-image PSNR/SSIM of any set of models (Keras models and converted artifacts) on a DBlur-layout folder.

The blurred input itself is scored as the floor, and classical baselines (Wiener, Richardson-Lucy with the true
kernel) are scored where the synthetic set recorded the kernel. Model outputs are clipped to [0, 1] before scoring
(what a saved image would hold). A few images, picked with the seed, are kept for the qualitative figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kd_edge import metrics
from kd_edge.data.pipeline import heldout_split
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.grid_artifacts import added_grid, period_for

BLURRED = "blurred"
DEFAULT_SAMPLES = 2
CROP_RANGE = (128, 196)      # zoomed centre crops of the original report, for 256 px images


@dataclass
class ModelEntry:
    """One evaluated model: its display name, the artifact it came from and the loaded runtime."""

    name: str
    path: str
    runtime: object
    kind: str
    manifest: dict
    params: int | None = None
    file_bytes: int | None = None
    target: str | None = None    # converter target (fp32, fp16, int8, onnx...) from the manifest, else the kind


@dataclass
class Sample:
    """An image kept for the qualitative figure: every restored version and the centre crop to zoom on."""

    name: str
    blur: np.ndarray
    sharp: np.ndarray
    outputs: dict                # column name -> float32 HxWx3
    crop: tuple                  # (top, left, size)


@dataclass
class EvalResult:
    data_dir: str
    split_dir: str
    seed: int
    tile: int | None
    images: list                 # image file names, in evaluation order
    sizes: list                  # (height, width) per image
    models: list                 # ModelEntry (runtime dropped after evaluation)
    baselines: list              # baseline column names that were scored
    psnr: dict                   # column -> float64 array, one value per image (NaN where not scored)
    ssim: dict
    samples: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    align: int = 0               # shift search radius used for scoring (0: none)
    do_no_harm: dict = field(default_factory=dict)  # model -> PSNR(model(sharp), sharp) per image (NaN: not run)
    grid: dict = field(default_factory=dict)  # model -> stride-locked lattice added per image, 8-bit levels
    grid_period: dict = field(default_factory=dict)  # model -> the period measured (its stride; 8 when unknown)
    # column (baselines, models) -> {"blurred": gains, "unblurred": gains}, dB per image (NaN: region under 1% of the
    # pixels), kd_edge.report.regions: where the blur changed the image and where it did not
    regions: dict = field(default_factory=dict)

    @property
    def columns(self):
        """Scored columns: the blurred floor, the baselines, then the models in the given order."""
        return [BLURRED, *self.baselines, *(m.name for m in self.models)]


# --------------------------------------------------------------------------------------------- data
def list_pairs(split_dir: Path):
    """[(name, blur_path, sharp_path)] sorted by name, via kd_edge.data.dblur.find_pairs."""
    from kd_edge.data.dblur import find_pairs

    pairs = [(p.name, Path(p.blur), Path(p.sharp)) for p in find_pairs(split_dir)]
    if not pairs:
        raise InputFileError(split_dir, "no blurred/sharp image pairs with matching names")
    return sorted(pairs, key=lambda p: p[0])


def kernel_path(split_dir: Path, name: str):
    """<split>/kernels/<stem>.npy (or <name>.npy) if the synthetic set recorded the blur kernel, else None."""
    folder = Path(split_dir) / "kernels"
    for candidate in (folder / f"{Path(name).stem}.npy", folder / f"{name}.npy"):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(blur_path, sharp_path):
    from kd_edge.images import read_image

    blur = read_image(blur_path).rgb.astype(np.float32)
    sharp = read_image(sharp_path).rgb.astype(np.float32)
    if blur.shape != sharp.shape:
        raise InputFileError(blur_path, f"size {blur.shape[1]}x{blur.shape[0]} differs from its sharp image "
                                        f"{sharp_path} ({sharp.shape[1]}x{sharp.shape[0]})")
    return blur, sharp


# --------------------------------------------------------------------------------------------- models
def default_names(paths):
    """Display names from the file names (stem without the .keras/.tflite suffix), made unique."""
    names, seen = [], {}
    for path in paths:
        name = Path(str(path).rstrip("/")).name
        for suffix in (".keras", ".tflite", ".onnx", ".mlpackage", ".h5"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        else:
            seen[name] = 1
        names.append(name)
    return names


def parse_names(text, count):
    """--names 'teacher,student' -> list of `count` names (None -> None)."""
    if text is None:
        return None
    names = [n.strip() for n in str(text).split(",")]
    if len(names) != count or any(not n for n in names):
        raise KdEdgeError(f"--names gives {len(names)} name(s) ({text!r}) for {count} model(s); give one non-empty name per model")
    if len(set(names)) != len(names):
        raise KdEdgeError(f"--names has duplicates ({text!r}); each model needs its own name")
    reserved = {BLURRED, "wiener", "richardson-lucy", "file"}
    clash = sorted(reserved.intersection(n.lower() for n in names))
    if clash:
        raise KdEdgeError(f"--names uses reserved column name(s) {', '.join(clash)}")
    return names


def load_models(paths, names=None, *, threads=None):
    """Load every model through kd_edge.runtime.load; returns [ModelEntry]."""
    from kd_edge.quiet_import import third_party_output_silenced
    from kd_edge.runtime import load

    paths = [str(p) for p in paths]
    names = names or default_names(paths)
    entries = []
    for name, path in zip(names, paths):
        if not Path(path).exists():
            raise InputFileError(path, f"model {name!r} does not exist")
        with third_party_output_silenced():  # no runtime log lines (XNNPACK INFO) unless --verbose
            runtime = load(path, threads=threads)
        manifest = dict(getattr(runtime, "manifest", None) or {})
        entries.append(ModelEntry(name=name, path=path, runtime=runtime, kind=getattr(runtime, "kind", "?"),
                                  manifest=manifest, params=_params(runtime, manifest), file_bytes=_file_bytes(path),
                                  target=str(manifest.get("target") or getattr(runtime, "kind", "?"))))
    return entries


def _params(runtime, manifest):
    value = manifest.get("params")
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    model = getattr(runtime, "model", None)
    if model is not None and hasattr(model, "count_params"):
        try:
            return int(model.count_params())
        except Exception:  # noqa: BLE001 - an unbuilt model simply has no count
            return None
    return None


def _file_bytes(path):
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.is_file() else None


def restore_image(entry: ModelEntry, blur: np.ndarray, *, tile=None, overlap=32) -> np.ndarray:
    """Run one model on one whole image through kd_edge.tiling; float32 HxWx3 clipped to [0, 1].

    Fixed-size artifacts are tiled at their own size; a dynamic model is tiled at ``tile`` when given, else it
    sees the whole image, padded to its stride and cropped back.
    """
    from kd_edge.tiling import deblur

    runtime = entry.runtime
    input_size = getattr(runtime, "input_size", None)
    if input_size is not None:
        size, tile_arg = int(min(input_size)), None
    elif tile:
        size, tile_arg = int(tile), int(tile)
    else:
        size, tile_arg = None, 0
    overlap = min(int(overlap), size // 4) if size else overlap
    out = np.asarray(deblur(blur, runtime, tile=tile_arg, overlap=overlap, clip=False), dtype=np.float32)
    if out.shape != blur.shape:
        raise KdEdgeError(f"returned shape {out.shape} for an input of shape {blur.shape}")
    if not np.all(np.isfinite(out)):
        raise KdEdgeError("returned NaN or infinite values")
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------- evaluation
def pick_samples(count, total, seed):
    """Indices of the images shown in the qualitative figures and their crop sizes: recorded seed, sorted."""
    rng = np.random.default_rng(seed)
    count = max(0, min(int(count), total))
    indices = sorted(int(i) for i in rng.choice(total, size=count, replace=False)) if count else []
    crops = [int(rng.integers(CROP_RANGE[0], CROP_RANGE[1] + 1)) for _ in indices]
    return dict(zip(indices, crops))


def centre_crop_box(height, width, crop):
    """(top, left, size) of a centred square crop; the 128-196 px range is scaled for images under 256 px."""
    short = min(height, width)
    size = crop if short >= 256 else max(8, int(round(crop * short / 256.0)))
    size = min(size, short)
    return (height - size) // 2, (width - size) // 2, size


def align_to(image, sharp, radius):
    """(image crop, sharp crop) at the integer shift within +-``radius`` px that minimises the MSE; both crops
    drop ``radius`` px on every side. radius 0 returns the arrays unchanged. The protocol of the Levin et al.
    benchmark, whose kernels are off-centre."""
    radius = int(radius or 0)
    if radius <= 0:
        return image, sharp
    height, width = sharp.shape[:2]
    if height <= 2 * radius or width <= 2 * radius:
        raise KdEdgeError(f"--align {radius} needs images larger than {2 * radius} px (got {width}x{height})")
    ref = sharp[radius: height - radius, radius: width - radius]
    best, best_mse = None, np.inf
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            crop = image[radius + dy: height - radius + dy, radius + dx: width - radius + dx]
            mse = float(np.mean((crop.astype(np.float64) - ref) ** 2))
            if mse < best_mse:
                best, best_mse = crop, mse
    return best, ref


def evaluate(data_dir, model_paths, *, names=None, limit=None, baselines=True, tile=None, seed=0,
             samples=DEFAULT_SAMPLES, threads=None, progress=True, models=None, align=0, do_no_harm=True) -> EvalResult:
    """Score every model (and the blurred floor, and the baselines where kernels exist) on every image.

    ``models`` may pass already loaded ModelEntry objects instead of ``model_paths``. ``align`` > 0 scores each
    output at its best integer alignment within +-align px (see align_to). ``do_no_harm``: also run every model
    on the sharp image and record PSNR(model(sharp), sharp), unaligned (a model must leave a sharp photo as it is).
    """
    from tqdm import tqdm

    from kd_edge.report import baselines as classical
    from kd_edge.report import regions

    split_dir = heldout_split(data_dir)
    pairs = list_pairs(split_dir)
    if limit is not None:
        if int(limit) < 1:
            raise KdEdgeError(f"--limit must be at least 1 (got {limit})")
        pairs = pairs[: int(limit)]
    entries = models if models is not None else load_models(model_paths, names, threads=threads)
    if not entries:
        raise KdEdgeError("no model to evaluate")
    if tile:  # a tile the model cannot take fails here, once, before any image is read
        from kd_edge.tiling import check_tile_stride

        for entry in entries:
            if getattr(entry.runtime, "input_size", None) is None:
                check_tile_stride(entry.runtime, int(tile), int(tile))

    kernels = {name: kernel_path(split_dir, name) for name, _, _ in pairs} if baselines else {}
    baseline_names = list(classical.BASELINES) if any(kernels.values()) else []
    notes = []
    if baselines and not baseline_names:
        notes.append(f"No classical baselines: {split_dir}/kernels/ records no blur kernel for these images "
                     "(only sets made by `kd-edge data synth` have them).")
    elif baseline_names and not all(kernels.values()):
        missing = sum(1 for v in kernels.values() if v is None)
        notes.append(f"Baselines skipped on {missing} image(s) without a recorded kernel.")

    chosen = pick_samples(samples, len(pairs), seed)
    columns = [BLURRED, *baseline_names, *(e.name for e in entries)]
    psnr = {c: np.full(len(pairs), np.nan) for c in columns}
    ssim = {c: np.full(len(pairs), np.nan) for c in columns}
    harm = {e.name: np.full(len(pairs), np.nan) for e in entries} if do_no_harm else {}
    grid = {e.name: np.full(len(pairs), np.nan) for e in entries}
    region_gain = {c: {r: np.full(len(pairs), np.nan) for r in regions.NAMES} for c in columns if c != BLURRED}
    from kd_edge.tiling import model_stride

    periods = {e.name: period_for(model_stride(e.runtime)) for e in entries}
    kept, sizes = [], []

    bar = tqdm(pairs, desc="eval", unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        for i, (name, blur_path, sharp_path) in enumerate(bar):
            bar.set_postfix_str(name, refresh=False)
            blur, sharp = _read_pair(blur_path, sharp_path)
            sizes.append(blur.shape[:2])
            outputs = {BLURRED: blur}
            kernel_file = kernels.get(name)
            if baseline_names and kernel_file is not None:
                kernel = classical.load_kernel(kernel_file)
                for bname in baseline_names:
                    outputs[bname] = classical.restore(bname, blur, kernel)
            for entry in entries:
                try:
                    outputs[entry.name] = restore_image(entry, blur, tile=tile)
                    grid[entry.name][i] = added_grid(blur, outputs[entry.name], periods[entry.name])["levels"]
                    if do_no_harm:
                        harm[entry.name][i] = metrics.psnr(restore_image(entry, sharp, tile=tile), sharp)
                except KdEdgeError as exc:
                    raise KdEdgeError(f"model {entry.name!r} ({entry.path}) failed on {blur_path}: {exc}") from exc
                except Exception as exc:  # noqa: BLE001 - any runtime failure becomes one line naming model and image
                    raise KdEdgeError(f"model {entry.name!r} ({entry.path}) failed on {blur_path}: "
                                      f"{type(exc).__name__}: {_first_line(exc)}") from exc
            aligned = {column: align_to(image, sharp, align) for column, image in outputs.items()}
            blurred_scored, reference = aligned[BLURRED]  # the reference crop is the same for every column
            mask = regions.blurred_region(blurred_scored, reference)
            for column, (scored, _) in aligned.items():
                psnr[column][i] = metrics.psnr(scored, reference)
                ssim[column][i] = metrics.ssim(scored, reference)
                if column != BLURRED:
                    for region, r in regions.region_gains(blurred_scored, scored, reference, mask).items():
                        region_gain[column][region][i] = np.nan if r["gain_db"] is None else r["gain_db"]
            if i in chosen:
                crop = centre_crop_box(blur.shape[0], blur.shape[1], chosen[i])
                kept.append(Sample(name=name, blur=blur, sharp=sharp,
                                   outputs={k: v for k, v in outputs.items() if k != BLURRED}, crop=crop))
    finally:
        bar.close()  # clears the bar, also when a model fails, so the error is a line of its own

    for entry in entries:
        entry.runtime = None  # release the models; the result keeps only what the report shows
    return EvalResult(data_dir=str(data_dir), split_dir=str(split_dir), seed=int(seed), tile=tile,
                      images=[p[0] for p in pairs], sizes=sizes, models=list(entries), baselines=baseline_names,
                      psnr=psnr, ssim=ssim, samples=kept, notes=notes, align=int(align or 0), do_no_harm=harm,
                      grid=grid, grid_period=periods, regions=region_gain)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


# --------------------------------------------------------------------------------------------- CSV
def csv_rows(result: EvalResult):
    """Header and rows of the per-image CSV: file, then <column>_psnr and <column>_ssim for every column, then
    <model>_do_no_harm_psnr (PSNR(model(sharp), sharp)) for every model when it was measured, then
    <model>_added_grid_levels (kd_edge.grid_artifacts.added_grid of its output against the blurred input), then
    <column>_blurred_region_gain_db and <column>_unblurred_region_gain_db (kd_edge.report.regions)."""
    header = ["file"]
    for column in result.columns:
        header += [f"{column}_psnr", f"{column}_ssim"]
    header += [f"{name}_do_no_harm_psnr" for name in result.do_no_harm]
    header += [f"{name}_added_grid_levels" for name in result.grid]
    header += [f"{column}_{region}_region_gain_db" for column, split in result.regions.items() for region in split]
    rows = []
    for i, name in enumerate(result.images):
        row = [name]
        for column in result.columns:
            row += [_num(result.psnr[column][i]), _num(result.ssim[column][i])]
        row += [_num(values[i]) for values in result.do_no_harm.values()]
        row += [_num(values[i]) for values in result.grid.values()]
        row += [_num(values[i]) for split in result.regions.values() for values in split.values()]
        rows.append(row)
    return header, rows


def _num(value):
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def write_csv(result: EvalResult, path):
    import csv
    import io

    from kd_edge.atomic import write_text

    header, rows = csv_rows(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
    return Path(path)

