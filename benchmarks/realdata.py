"""Real-data benchmark (issue 13): score models on real blurred/sharp pairs made by others, and check they do no harm.

    python -m kd_edge.benchmarks.realdata [MODEL ...] [--names a,b] [--realblur DIR] [--json PATH]
    python benchmarks/realdata.py kd_edge/weights/default-student.keras --json benchmarks/results/realdata_x.json

MODEL: any .keras, .tflite or .onnx (default: the embedded student), loaded through ``kd_edge.runtime.load`` with
its sha256/manifest check. ``--realblur`` (default ``../shared/data/realblur`` beside the checkout) holds set folders
in the DBlur layout (``<set>/blur``, ``<set>/sharp``) and photos without ground truth (``general_noGT/``). For each
model the JSON records:

* per set and per image: PSNR/SSIM of the blurred input and of the output against the sharp image, the gain
  (output - input, dB) and the share of images where the output is worse than the input. Sets in
  ``kd_edge.data.realblur.SHIFT_SEARCH_PX`` (levin09_gray: +-7 px, as its README says) are scored shift-tolerantly:
  for the blurred input and for the output alike, the integer shift (dy, dx) in [-7, 7]^2 (a 15x15 window) with the
  lowest MSE against the sharp image is used, with 7 px cropped from every border of both (``--align SET=N``
  changes it; the unshifted scores are kept beside them);
* blurred and unblurred regions (``regions``, ``kd_edge.report.regions``): the gain split by where the blur changed
  the photo (smoothed |blurred - sharp| above about 5 grey levels) and the rest (a static background behind a moving
  head, flat areas). A negative gain in the unblurred region is damage done where there was nothing to undo; the
  per-set summary averages each region's gain over the images where it covers >= 1% of the pixels;
* do no harm: PSNR(model(sharp), sharp) on the distinct sharp halves of all pairs (mean, min, per image);
* raw output range (before any clip) on the adversarial inputs of ``kd_edge.stress_inputs`` and on every real
  photo run here (blurred and sharp halves, photos without ground truth);
* grid artefacts: the stride-locked lattice the model adds (``kd_edge.grid_artifacts``, 8-bit levels) on the
  noisy saturated fields of ``kd_edge.stress_inputs``, on 16 blurred synthetic scenes and on every real photo, worst
  and per input, ``clean`` when below 4 levels everywhere (a check beside the targets: PSNR and do no harm did not
  see the lattice);
* timing (load, inference, MPix/s), the model's sha256, whether it was verified, and the host's CPU flags;
* the issue's targets as booleans: gain >= +1.0 dB on every set, worse than the input on <= 10% of all images,
  do no harm >= 35 dB on every sharp photo (min), raw output within [-0.25, 1.25] on every input.

Images run whole (padded to the model's stride, as ``kd-edge deblur --tile 0``) when the model takes any size and
the image has at most ``--whole-max-pixels``; otherwise, and always for fixed-size artifacts, through
``kd_edge.tiling.deblur`` (``--tile`` for dynamic models, 256 by default). Outputs are clipped to [0, 1] before
scoring (what a saved image holds). The JSON is written atomically; a compact table is printed.

Without the data folder: prints "skipped: <dir> not found", writes no JSON, exits 0. The pairs are for measuring
only: never train or tune hyper-parameters on them.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the other benchmark scripts: no C++ start-up lines

FORMAT = "kd-edge-realdata/1"
GAIN_TARGET_DB = 1.0
WORSE_MAX_FRACTION = 0.10
DO_NO_HARM_TARGET_DB = 35.0
RAW_RANGE = (-0.25, 1.25)
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
WHOLE_MAX_PIXELS = 1280 * 720
STRESS_SIZE = 64
FIELD_SIZE = 128
PROBE_SCENES = 16
TARGET_TEXT = {
    "gain_ge_1db_every_set": f"mean gain over the blurred input >= +{GAIN_TARGET_DB} dB on every paired set",
    "worse_le_10pct_of_images": f"output PSNR below the blurred input's on <= {WORSE_MAX_FRACTION:.0%} of all images",
    "do_no_harm_ge_35db": f"PSNR(model(sharp), sharp) >= {DO_NO_HARM_TARGET_DB} dB on every distinct sharp photo",
    "raw_output_within_range": f"raw output within [{RAW_RANGE[0]}, {RAW_RANGE[1]}] on every stress input and photo",
}


def _checkout() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here if (here / "setup.cfg").is_file() else Path.cwd()


def default_json_path(name: str) -> Path:
    return _checkout() / "benchmarks" / "results" / f"realdata_{name}.json"


# ------------------------------------------------------------------------------------------------ scoring
def shift_tolerant(image, sharp, radius: int):
    """(image crop, sharp crop) at the integer shift within +-radius px with the lowest MSE, radius px cropped from
    every border (``kd_edge.report.evaluate.align_to``, the protocol of ``kd-edge eval --align``)."""
    from kd_edge.report.evaluate import align_to

    return align_to(image, sharp, radius)


def shift_tolerant_psnr(image, sharp, radius: int) -> float:
    from kd_edge.metrics import psnr

    return psnr(*shift_tolerant(image, sharp, radius))


def _scores(image, sharp):
    from kd_edge.metrics import psnr, ssim

    return {"psnr": psnr(image, sharp), "ssim": ssim(image, sharp)}


class ModelRunner:
    """Runs one loaded runtime on whole images (or tiles) and keeps the raw-output range and the timing."""

    def __init__(self, runtime, *, tile=DEFAULT_TILE, whole_max_pixels=WHOLE_MAX_PIXELS):
        from kd_edge import tiling

        self.runtime = runtime
        self.stride = tiling.model_stride(runtime)
        self.tile = int(tile)
        self.whole_max_pixels = int(whole_max_pixels)
        self.seconds = 0.0
        self.pixels = 0
        self.modes = set()

    def raw(self, image):
        """The model's unclipped float32 output for an HxWx3 image in [0, 1]."""
        from kd_edge import tiling
        from kd_edge.errors import KdEdgeError

        h, w = image.shape[:2]
        fixed = self.runtime.input_size
        if fixed is None and h * w <= self.whole_max_pixels:
            tile, overlap, mode = 0, DEFAULT_OVERLAP, "whole image padded to the stride"
        else:
            size = (int(fixed[0]), int(fixed[1])) if fixed is not None else (self.tile, self.tile)
            tile = None if fixed is not None else size
            overlap = min(DEFAULT_OVERLAP, min(size) // 4)
            mode = f"tiles {size[0]}x{size[1]}, overlap {overlap}"
        t0 = time.perf_counter()
        out = tiling.deblur(image, self.runtime, tile=tile, overlap=overlap, clip=False)
        self.seconds += time.perf_counter() - t0
        self.pixels += h * w
        self.modes.add(mode)
        if not np.all(np.isfinite(out)):
            raise KdEdgeError(f"{self.runtime.path.name}: NaN or infinite output on a {w}x{h} image")
        return out

    @property
    def grid_period(self) -> int:
        """The period a lattice of this model would have: its stride (8 when it reports none)."""
        from kd_edge.grid_artifacts import period_for

        return period_for(self.stride)

    def added_grid(self, image, output) -> float:
        """kd_edge.grid_artifacts.added_grid in 8-bit levels, at this model's period."""
        from kd_edge.grid_artifacts import added_grid

        return round(added_grid(image, output, self.grid_period)["levels"], 3)


def _range(values):
    return {"min": float(min(v[0] for v in values)), "max": float(max(v[1] for v in values))} if values else None


def _within(rng):
    return rng is not None and RAW_RANGE[0] <= rng["min"] and rng["max"] <= RAW_RANGE[1]


def score_sets(runner, root, *, align, limit=None, log=print):
    """Per-set and per-image scores of ``runner`` on every paired set of ``root``; also returns the distinct sharp
    images seen ({sha256: (label, array)}) for the do-no-harm run."""
    from kd_edge.data import realblur
    from kd_edge.data.dblur import find_pairs
    from kd_edge.images import read_image
    from kd_edge.metrics import psnr
    from kd_edge.report.regions import region_gains

    manifest = realblur.read_manifest(root)
    sets, sharp_seen = {}, {}
    for set_dir in realblur.paired_sets(root):
        radius = int(align.get(set_dir.name, 0))
        pairs = find_pairs(set_dir)[: limit or None]
        records = []
        for pair in pairs:
            blur = read_image(pair.blur).rgb.astype(np.float32)
            sharp = read_image(pair.sharp).rgb.astype(np.float32)
            digest = hashlib.sha256(pair.sharp.read_bytes()).hexdigest()
            sharp_seen.setdefault(digest, (f"{set_dir.name}/{pair.name}", sharp))
            t0 = time.perf_counter()
            raw = runner.raw(blur)
            seconds = time.perf_counter() - t0
            out = np.clip(raw, 0.0, 1.0)
            blur_aligned, sharp_ref = shift_tolerant(blur, sharp, radius)
            out_aligned, _ = shift_tolerant(out, sharp, radius)
            before, after = _scores(blur_aligned, sharp_ref), _scores(out_aligned, sharp_ref)
            record = {"file": pair.name, "height": int(blur.shape[0]), "width": int(blur.shape[1]),
                      "blurred": before, "output": after, "gain_db": after["psnr"] - before["psnr"],
                      "worse": bool(after["psnr"] < before["psnr"]),
                      "regions": region_gains(blur_aligned, out_aligned, sharp_ref),
                      "added_grid_levels": runner.added_grid(blur, out),
                      "raw_min": float(raw.min()), "raw_max": float(raw.max()), "seconds": round(seconds, 4)}
            if radius:
                record["unshifted"] = {"blurred_psnr": psnr(blur, sharp), "output_psnr": psnr(out, sharp)}
            row = manifest.get((set_dir.name, pair.name))
            if row and row.get("psnr_blur_vs_sharp_dB"):
                record["manifest_psnr_blur_vs_sharp_db"] = float(row["psnr_blur_vs_sharp_dB"])
            records.append(record)
        if not records:
            continue
        sets[set_dir.name] = _set_summary(records, radius, manifest.get((set_dir.name, pairs[0].name)))
        sets[set_dir.name]["manifest_rows"] = sum(1 for key in manifest if key[0] == set_dir.name)
        s = sets[set_dir.name]
        log(f"  {set_dir.name}: {s['blurred_psnr_mean']:.2f} -> {s['output_psnr_mean']:.2f} dB "
            f"({s['gain_db_mean']:+.2f}), worse on {s['worse_count']}/{s['images']}")
    return sets, sharp_seen


def _set_summary(records, radius, manifest_row):
    from kd_edge.report.regions import NAMES

    def mean(key, sub):
        return float(np.mean([r[key][sub] for r in records]))

    gains = [r["gain_db"] for r in records]
    summary = {
        "images": len(records),
        "shift_search_px": radius,
        "shift_search": (f"best integer shift in [-{radius}, {radius}]^2 ({2 * radius + 1}x{2 * radius + 1} window, "
                         f"min MSE), {radius} px borders cropped, same for input and output") if radius else None,
        "blurred_psnr_mean": mean("blurred", "psnr"), "output_psnr_mean": mean("output", "psnr"),
        "blurred_ssim_mean": mean("blurred", "ssim"), "output_ssim_mean": mean("output", "ssim"),
        "gain_db_mean": float(np.mean(gains)), "gain_db_min": float(np.min(gains)), "gain_db_max": float(np.max(gains)),
        "worse_count": int(sum(r["worse"] for r in records)),
        "worse_fraction": float(np.mean([r["worse"] for r in records])),
        "raw_min": float(min(r["raw_min"] for r in records)), "raw_max": float(max(r["raw_max"] for r in records)),
        "regions": {name: _region_summary([r["regions"][name] for r in records]) for name in NAMES},
        "licence": (manifest_row or {}).get("license_if_known"),
        "per_image": records,
    }
    if radius:
        summary["unshifted_blurred_psnr_mean"] = float(np.mean([r["unshifted"]["blurred_psnr"] for r in records]))
        summary["unshifted_output_psnr_mean"] = float(np.mean([r["unshifted"]["output_psnr"] for r in records]))
    return summary


def _region_summary(per_image):
    gains = [r["gain_db"] for r in per_image if r["gain_db"] is not None]
    return {"share_mean": float(np.mean([r["share"] for r in per_image])), "images": len(gains),
            "gain_db_mean": float(np.mean(gains)) if gains else None,
            "gain_db_min": float(np.min(gains)) if gains else None}


def do_no_harm(runner, sharp_seen):
    """PSNR(model(sharp), sharp) on each distinct sharp photo (output clipped to [0, 1])."""
    from kd_edge.metrics import psnr

    records = []
    for digest, (label, sharp) in sharp_seen.items():
        raw = runner.raw(sharp)
        records.append({"image": label, "sha256": digest, "psnr": psnr(np.clip(raw, 0.0, 1.0), sharp),
                        "added_grid_levels": runner.added_grid(sharp, raw),
                        "raw_min": float(raw.min()), "raw_max": float(raw.max())})
    if not records:
        return None
    values = [r["psnr"] for r in records]
    worst = records[int(np.argmin(values))]["image"]
    return {"images": len(records), "mean_db": float(np.mean(values)), "min_db": float(np.min(values)),
            "worst_image": worst, "per_image": records,
            "definition": "PSNR(model(sharp), sharp) on the distinct sharp halves of all pairs (by file sha256)"}


def raw_ranges(runner, root, stress_size, sets, harm):
    """Raw-output ranges on the synthetic stress inputs (per input) and on every real photo run here."""
    from kd_edge.data import realblur
    from kd_edge.images import read_image
    from kd_edge.stress_inputs import stress_inputs

    fixed = runner.runtime.input_size
    multiple = math.lcm(8, runner.stride)
    size = -(-int(stress_size) // multiple) * multiple  # fixed-size artifacts: at their own size when legal, else tiled
    if fixed is not None and fixed[0] == fixed[1] and int(fixed[0]) % multiple == 0:
        size = int(fixed[0])
    synthetic = {}
    for name, image in stress_inputs(size, runner.stride):
        raw = runner.raw(image)
        synthetic[name] = {"min": float(raw.min()), "max": float(raw.max())}
    unpaired = []
    for path in realblur.unpaired_photos(root):
        raw = runner.raw(read_image(path).rgb.astype(np.float32))
        unpaired.append((float(raw.min()), float(raw.max())))
    real = [(r["raw_min"], r["raw_max"]) for s in sets.values() for r in s["per_image"]]
    real += [(r["raw_min"], r["raw_max"]) for r in (harm or {}).get("per_image", [])]
    real += unpaired
    synth_range = _range([(v["min"], v["max"]) for v in synthetic.values()])
    real_range = _range(real)
    both = _range([(r["min"], r["max"]) for r in (synth_range, real_range) if r])
    return {"allowed": list(RAW_RANGE), "stress_size": size, "synthetic": synthetic, "synthetic_range": synth_range,
            "real_photos": {"count": len(real), "unpaired_count": len(unpaired), "range": real_range},
            "range": both, "within_allowed": _within(both)}


def grid_artifacts(runner, sets, harm, field_size=FIELD_SIZE):
    """The stride-locked lattice a model adds (``kd_edge.grid_artifacts``, 8-bit levels): on the noisy saturated
    fields of ``kd_edge.stress_inputs``, on blurred synthetic scenes (flat shapes with noise, as the converters'
    parity probes) and on every real photo scored here (blurred inputs and sharp halves)."""
    from kd_edge.grid_artifacts import VISIBLE_LEVELS, summarize
    from kd_edge.stress_inputs import noisy_saturated_fields

    fixed = runner.runtime.input_size
    multiple = math.lcm(8, runner.stride, 2 * runner.grid_period)
    size = -(-int(field_size) // multiple) * multiple
    if fixed is not None and fixed[0] == fixed[1] and int(fixed[0]) % multiple == 0:
        size = int(fixed[0])
    fields = {}
    for name, image in noisy_saturated_fields(size, runner.stride):
        fields[name] = runner.added_grid(image, runner.raw(image))
    from kd_edge.converters.parity import PROBE_SEED, synthetic_blurred

    scenes = [runner.added_grid(image, runner.raw(image))  # the seed of the parity probes: their scenes come first
              for image in synthetic_blurred(PROBE_SCENES, 2 * size, seed=PROBE_SEED)]
    photos = [r["added_grid_levels"] for s in sets.values() for r in s["per_image"]]
    photos += [r["added_grid_levels"] for r in (harm or {}).get("per_image", [])]
    field_summary, scene_summary, photo_summary = summarize(fields.values()), summarize(scenes), summarize(photos)
    worst = max(s.get("worst_levels", 0.0) for s in (field_summary, scene_summary, photo_summary))
    return {"period": runner.grid_period, "field_size": size, "visible_threshold_levels": VISIBLE_LEVELS,
            "saturated_fields": {**field_summary, "per_input": fields},
            "synthetic_scenes": {**scene_summary, "per_input": scenes, "size": 2 * size, "seed": PROBE_SEED,
                                 "generator": "kd_edge.converters.parity.synthetic_blurred (the parity probes' kind)"},
            "real_photos": photo_summary, "worst_levels": worst, "clean": bool(worst < VISIBLE_LEVELS),
            "definition": "largest increase, input to output, of the pattern repeating every <period> px, over "
                          "64-px tiles and channels, in 8-bit levels (kd_edge.grid_artifacts.added_grid)"}


def targets(sets, harm, raw):
    total = sum(s["images"] for s in sets.values())
    worse = sum(s["worse_count"] for s in sets.values())
    result = {
        "gain_ge_1db_every_set": bool(sets) and all(s["gain_db_mean"] >= GAIN_TARGET_DB for s in sets.values()),
        "worse_le_10pct_of_images": bool(total) and worse / total <= WORSE_MAX_FRACTION,
        "do_no_harm_ge_35db": harm is not None and harm["min_db"] >= DO_NO_HARM_TARGET_DB,
        "raw_output_within_range": bool(raw["within_allowed"]),
    }
    result["all"] = all(result.values())
    return result


# ------------------------------------------------------------------------------------------------ models
def load_runtime(path, threads=None):
    """(runtime, sha256, verified) through kd_edge.runtime.load (sha256 checked against the manifest)."""
    from kd_edge.converters.manifest import sha256_of
    from kd_edge.runtime import UnverifiedArtifactWarning, load

    if Path(path).suffix.lower() == ".keras" and "tensorflow" not in sys.modules:
        from kd_edge.quiet_import import import_tensorflow_quietly

        import_tensorflow_quietly()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedArtifactWarning)
        runtime = load(path, threads=threads)
    for w in caught:
        if issubclass(w.category, UnverifiedArtifactWarning):
            print(f"realdata: warning: {w.message}", file=sys.stderr)
    sha = (runtime.manifest or {}).get("sha256") if runtime.verified else sha256_of(path)
    return runtime, sha, bool(runtime.verified)


def benchmark_model(path, name, root, *, align, threads=None, tile=DEFAULT_TILE, whole_max_pixels=WHOLE_MAX_PIXELS,
                    stress_size=STRESS_SIZE, limit=None, log=print):
    """Everything the JSON records for one model."""
    t0 = time.perf_counter()
    runtime, sha, verified = load_runtime(path, threads)
    load_s = time.perf_counter() - t0
    log(f"{name}: {Path(path).name} [{runtime.kind}, sha256 {sha[:12]}{'' if verified else ', unverified'}]")
    runner = ModelRunner(runtime, tile=tile, whole_max_pixels=whole_max_pixels)
    sets, sharp_seen = score_sets(runner, root, align=align, limit=limit, log=log)
    harm = do_no_harm(runner, sharp_seen)
    raw = raw_ranges(runner, root, stress_size, sets, harm)
    grid = grid_artifacts(runner, sets, harm)
    manifest = runtime.manifest or {}
    return {
        "name": name, "path": str(path), "kind": runtime.kind, "target": manifest.get("target"),
        "arch": manifest.get("arch") or (manifest.get("source_model") or {}).get("arch"),
        "sha256": sha, "verified": verified, "input_size": list(runtime.input_size) if runtime.input_size else None,
        "stride": runner.stride, "run_mode": sorted(runner.modes),
        "sets": sets, "do_no_harm": harm, "raw_output": raw, "grid_artifacts": grid,
        "targets": targets(sets, harm, raw),
        "timing": {"load_s": round(load_s, 3), "inference_s": round(runner.seconds, 3),
                   "megapixels": round(runner.pixels / 1e6, 3),
                   "mpix_per_s": round(runner.pixels / 1e6 / runner.seconds, 3) if runner.seconds else None,
                   "threads": threads},
    }


def compare_roles(models):
    """teacher-vs-student check when models named 'teacher' and 'student' were both scored."""
    by_name = {m["name"].lower(): m for m in models}
    teacher, student = by_name.get("teacher"), by_name.get("student")
    if not teacher or not student:
        return None
    per_set = {k: teacher["sets"][k]["gain_db_mean"] > student["sets"][k]["gain_db_mean"]
               for k in student["sets"] if k in teacher["sets"]}
    return {"teacher_gains_more_every_set": bool(per_set) and all(per_set.values()), "per_set": per_set}


# ------------------------------------------------------------------------------------------------ output
def table(models) -> str:
    lines = []
    for m in models:
        lines.append(f"\n{m['name']} ({Path(m['path']).name}, {m['kind']}, sha256 {m['sha256'][:12]})")
        lines.append(f"  {'set':<26} {'n':>3} {'blurred':>8} {'output':>8} {'gain':>7} {'worse':>6} "
                     f"{'SSIM in->out':>13} {'raw range':>17} {'gain blurred/unblurred region':>30}")
        for set_name, s in m["sets"].items():
            label = set_name + (f" (+-{s['shift_search_px']}px)" if s["shift_search_px"] else "")
            regions = s.get("regions", {})
            split = "/".join(f"{r['gain_db_mean']:+.2f}" if r.get("gain_db_mean") is not None else "-"
                             for r in (regions.get("blurred", {}), regions.get("unblurred", {})))
            lines.append(f"  {label:<26} {s['images']:>3} {s['blurred_psnr_mean']:>8.2f} {s['output_psnr_mean']:>8.2f} "
                         f"{s['gain_db_mean']:>+7.2f} {s['worse_fraction']:>6.0%} "
                         f"{s['blurred_ssim_mean']:>6.3f}->{s['output_ssim_mean']:.3f} "
                         f"{s['raw_min']:>8.2f}..{s['raw_max']:.2f} {split:>30}")
        h = m["do_no_harm"]
        if h:
            lines.append(f"  do no harm: mean {h['mean_db']:.2f} dB, min {h['min_db']:.2f} dB "
                         f"({h['images']} sharp photos; worst {h['worst_image']})")
        r = m["raw_output"]
        synth, real = r["synthetic_range"], r["real_photos"]["range"]
        lines.append(f"  raw output: stress inputs {synth['min']:.3f}..{synth['max']:.3f}, "
                     f"real photos {real['min']:.3f}..{real['max']:.3f} (allowed {RAW_RANGE[0]}..{RAW_RANGE[1]})"
                     if real else f"  raw output: stress inputs {synth['min']:.3f}..{synth['max']:.3f}")
        g = m.get("grid_artifacts")
        if g:
            f, p = g["saturated_fields"], g["real_photos"]
            worst_field = max(f["per_input"], key=f["per_input"].get) if f.get("per_input") else "-"
            lines.append(f"  grid artefacts ({g['period']}-px lattice added, 8-bit levels): noisy saturated fields "
                         f"worst {f.get('worst_levels', 0):.1f} ({worst_field}), synthetic scenes worst "
                         f"{g['synthetic_scenes'].get('worst_levels', 0):.1f}, real photos worst "
                         f"{p.get('worst_levels', 0):.1f}; {'clean' if g['clean'] else 'VISIBLE'} "
                         f"(threshold {g['visible_threshold_levels']:g})")
        t = m["timing"]
        lines.append(f"  time: {t['inference_s']:.1f} s inference for {t['megapixels']:.1f} MPix "
                     f"({t['mpix_per_s']} MPix/s), load {t['load_s']:.1f} s")
        lines.append("  targets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in m["targets"].items()))
    return "\n".join(lines)


def parse_align(values):
    from kd_edge.data.realblur import SHIFT_SEARCH_PX

    align = dict(SHIFT_SEARCH_PX)
    for value in values or []:
        set_name, sep, radius = value.partition("=")
        if not sep or not set_name or not radius.isdigit():
            raise SystemExit(f"realdata: error: --align {value!r}: expected SET=RADIUS, e.g. levin09_gray=7")
        align[set_name] = int(radius)
    return align


def main(argv=None) -> int:
    """The command line; the process-wide quiet mode it sets is restored on return (tests call this in-process)."""
    from kd_edge.quiet_import import is_quiet, set_quiet

    previous = is_quiet()
    try:
        return _main(argv)
    finally:
        set_quiet(previous)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="realdata", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help=".keras, .tflite or .onnx (default: embedded student)")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per MODEL")
    parser.add_argument("--realblur", default=None, help="the real pairs (default: ../shared/data/realblur of the checkout)")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="output JSON (default: benchmarks/results/realdata_<first name>.json)")
    parser.add_argument("--align", action="append", metavar="SET=RADIUS",
                        help="shift search radius for a set (default: levin09_gray=7; 0 turns it off)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each set")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size for dynamic models on big images")
    parser.add_argument("--whole-max-pixels", type=int, default=WHOLE_MAX_PIXELS,
                        help="dynamic models run images up to this many pixels whole (default 1280x720)")
    parser.add_argument("--stress-size", type=int, default=STRESS_SIZE, help="side of the synthetic stress inputs")
    parser.add_argument("--threads", type=int, default=None, help="threads for LiteRT / ONNX Runtime")
    parser.add_argument("--note", default="", help="what the models are (recorded in the JSON)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow and LiteRT start-up lines")
    args = parser.parse_args(argv)

    from kd_edge.data import realblur
    from kd_edge.errors import KdEdgeError

    root = Path(args.realblur) if args.realblur else realblur.default_dir()
    if not root.is_dir():
        print(f"skipped: {args.realblur or '../shared/data/realblur'} not found ({root}); nothing measured, no JSON "
              "written")
        return 0
    from kd_edge.quiet_import import import_tensorflow_quietly, set_quiet

    set_quiet(not args.verbose)  # as the CLI: no "Created TensorFlow Lite XNNPACK delegate" line per model
    import_tensorflow_quietly()  # Keras models and the report helpers need it; without its start-up noise
    try:
        if args.models:
            paths = [Path(p) for p in args.models]
        else:
            from kd_edge.defaults import default_model_path

            paths = [default_model_path("student")]
        from kd_edge.report.evaluate import default_names, parse_names

        names = parse_names(args.names, len(paths)) or default_names(paths)
        align = parse_align(args.align)
        from kd_edge import __version__
        from kd_edge.atomic import write_json
        from kd_edge.benchmarks.host import describe, local_host_facts

        facts = local_host_facts()
        print(f"real-data benchmark on {root} ({describe(facts)})")
        t0 = time.perf_counter()
        models = [benchmark_model(p, n, root, align=align, threads=args.threads, tile=args.tile,
                                  whole_max_pixels=args.whole_max_pixels, stress_size=args.stress_size,
                                  limit=args.limit) for p, n in zip(paths, names)]
        doc = {
            "format": FORMAT, "kd_edge_version": __version__,
            "command": " ".join(["realdata"] + list(argv if argv is not None else sys.argv[1:])),
            "note": args.note, "host": facts,
            "realblur": {"dir": str(root), "sets": sorted(models[0]["sets"]), "limit_per_set": args.limit,
                         "unpaired_photos": len(realblur.unpaired_photos(root)),
                         "use": "measuring only: never train or tune on these pairs"},
            "settings": {"align": align, "tile": args.tile, "overlap": DEFAULT_OVERLAP,
                         "whole_max_pixels": args.whole_max_pixels, "scored": "outputs clipped to [0, 1]"},
            "target_definitions": TARGET_TEXT,
            "models": models, "roles": compare_roles(models),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        out = Path(args.json_path) if args.json_path else default_json_path(names[0])
        write_json(out, doc)
    except KdEdgeError as exc:
        print(f"realdata: error: {exc}", file=sys.stderr)
        return 1
    print(table(models))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
