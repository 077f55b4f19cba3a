"""Gain by blur size: how much a model deblurs as the camera-shake kernel grows from 1 px (sharp) to large.

    python -m kd_edge.benchmarks.blur_sweep [MODEL ...] [--names a,b] [--sizes 1,5,9,15,21,27] [--json PATH]

A controlled sweep, not a data set: ``--images`` sharp crops of ``--crop`` px (the built-in sources of
``kd-edge data synth``, dead leaves and the scikit-image photographs, drawn with ``--seed``; or ``--sharp DIR``, a
folder of sharp images, centre-cropped), each blurred at every size of ``--sizes`` by one kernel of every trajectory
of ``--trajectories`` (``kd_edge.data.kernels``), in sRGB, with Gaussian noise of ``--noise`` and 8-bit
quantisation. Every model sees exactly the same blurred images. Per size the JSON holds the blurred input's mean
PSNR, each model's mean gain over it (dB, outputs clipped to [0, 1]) and the share of images made worse, plus the
same for Richardson-Lucy given the true kernel (``kd_edge.report.baselines``) as a non-blind reference.

It answers "does this model remove large blur at all, or only sharpen mild blur?", which an average over a data set
hides. Models run whole (padded to their stride); the JSON is written atomically with the host's CPU flags.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMAT = "kd-edge-blur-sweep/1"
DEFAULT_SIZES = (1, 5, 9, 15, 21, 27)
DEFAULT_TRAJECTORIES = ("linear", "random-walk")


def _int_list(text):
    values = [int(v) for v in str(text).split(",") if v.strip()]
    if not values or any(v < 1 or v % 2 == 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be odd integers >= 1, got {text!r}")
    return values


def sharp_images(*, sharp_dir=None, count=8, crop=128, seed=0):
    """``count`` float32 crops of ``crop`` px: from ``sharp_dir`` (centre crops, sorted names) or the built-in sources."""
    from kd_edge.errors import InputFileError

    if sharp_dir is not None:
        from kd_edge.images import is_image_file, read_image

        files = sorted(p for p in Path(sharp_dir).iterdir() if is_image_file(p)) if Path(sharp_dir).is_dir() else []
        if not files:
            raise InputFileError(sharp_dir, "no images found (need a folder of sharp photos)")
        out = []
        for path in files[:count]:
            img = read_image(path).rgb
            h, w = img.shape[:2]
            if min(h, w) < crop:
                raise InputFileError(path, f"{w}x{h} is smaller than --crop {crop}")
            y, x = (h - crop) // 2, (w - crop) // 2
            out.append(np.ascontiguousarray(img[y:y + crop, x:x + crop]))
        return out, [str(p) for p in files[:count]]
    from kd_edge.data.synth import builtin_crops

    return builtin_crops(count, crop, seed=seed, photo_fraction=0.5)


def blurred_set(images, sizes, trajectories, *, noise, seed):
    """{size: [(sharp, blurred, kernel), ...]}: the same kernels for every model."""
    from kd_edge.data import kernels
    from kd_edge.images import to_uint

    rng = np.random.default_rng(seed + 1)
    out = {}
    for size in sizes:
        rows = []
        for img in images:
            for kind in trajectories:
                k = kernels.sample_kernel(rng, size, kind)
                b = kernels.blur(img, k) if size > 1 else img
                b = b + rng.normal(0.0, noise, b.shape) if noise > 0 else b
                rows.append((img, to_uint(b, 8).astype(np.float32) / np.float32(255.0), k))  # clipped, 8-bit
        out[size] = rows
    return out


def _summary(gains):
    g = np.asarray(gains, dtype=np.float64)
    return {"mean_gain_db": round(float(g.mean()), 3), "worse_fraction": round(float((g < 0).mean()), 3)}


def sweep(models, blurred, *, reference=True, log=print):
    """models: [(name, runtime)]. Returns {size: {...}} with the blurred PSNR and each entry's gain."""
    from kd_edge import tiling
    from kd_edge.metrics import psnr
    from kd_edge.report import baselines

    result = {}
    for size, rows in blurred.items():
        base = [psnr(b, s) for s, b, _ in rows]
        entry = {"images": len(rows), "blurred_psnr_db": round(float(np.mean(base)), 3), "models": {}}
        for name, rt in models:
            gains = [psnr(tiling.deblur_whole(b, rt), s) - p0 for (s, b, _), p0 in zip(rows, base)]
            entry["models"][name] = _summary(gains)
        if reference and size > 1:
            gains = [psnr(np.clip(baselines.restore("richardson-lucy", b, k), 0, 1), s) - p0
                     for (s, b, k), p0 in zip(rows, base)]
            entry["richardson_lucy_true_kernel"] = _summary(gains)
        result[str(size)] = entry
        cells = "  ".join(f"{n} {entry['models'][n]['mean_gain_db']:+.2f}" for n, _ in models)
        log(f"  {size:>3} px: blurred {entry['blurred_psnr_db']:.2f} dB  {cells}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="blur_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help=".keras, .tflite or .onnx (default: embedded student)")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per MODEL")
    parser.add_argument("--sizes", type=_int_list, default=list(DEFAULT_SIZES), help="odd kernel sizes in px")
    parser.add_argument("--trajectories", default=",".join(DEFAULT_TRAJECTORIES),
                        help="comma-separated kernel trajectories (kd_edge.data.kernels.TRAJECTORIES)")
    parser.add_argument("--sharp", default=None, metavar="DIR", help="sharp images (default: the built-in sources)")
    parser.add_argument("--images", type=int, default=8, help="sharp crops")
    parser.add_argument("--crop", type=int, default=128, help="crop side in px (a multiple of the models' stride)")
    parser.add_argument("--noise", type=float, default=0.003, help="Gaussian noise sigma added after the blur")
    parser.add_argument("--seed", type=int, default=2027, help="seed of the crops, kernels and noise")
    parser.add_argument("--no-reference", action="store_true", help="skip Richardson-Lucy given the true kernel")
    parser.add_argument("--json", dest="json_path", default=None, help="output JSON (default: print only)")
    args = parser.parse_args(argv)

    from kd_edge.data.kernels import TRAJECTORIES
    from kd_edge.errors import KdEdgeError

    trajectories = [t.strip() for t in args.trajectories.split(",") if t.strip()]
    bad = [t for t in trajectories if t not in TRAJECTORIES]
    if bad or not trajectories:
        print(f"blur_sweep: error: unknown trajectory {', '.join(bad) or '(none)'}; choose from "
              f"{', '.join(TRAJECTORIES)}", file=sys.stderr)
        return 2
    from kd_edge.quiet_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        from kd_edge import runtime
        from kd_edge.defaults import default_model_path
        from kd_edge.report.evaluate import default_names, parse_names

        images, sources = sharp_images(sharp_dir=args.sharp, count=args.images, crop=args.crop, seed=args.seed)
        paths = [Path(p) for p in args.models] or [default_model_path("student")]
        names = parse_names(args.names, len(paths)) or default_names(paths)
        models = [(n, runtime.load(p)) for n, p in zip(names, paths)]
        blurred = blurred_set(images, args.sizes, trajectories, noise=args.noise, seed=args.seed)
        from kd_edge.benchmarks.host import describe, local_host_facts

        facts = local_host_facts()
        print(f"blur sweep, {len(images)} crops x {len(trajectories)} trajectories ({describe(facts)})")
        t0 = time.perf_counter()
        result = sweep(models, blurred, reference=not args.no_reference)
    except KdEdgeError as exc:
        print(f"blur_sweep: error: {exc}", file=sys.stderr)
        return 1
    if args.json_path:
        from kd_edge import __version__
        from kd_edge.atomic import write_json

        write_json(Path(args.json_path), {
            "format": FORMAT, "kd_edge_version": __version__,
            "command": " ".join(["blur_sweep"] + list(argv if argv is not None else sys.argv[1:])),
            "host": facts,
            "settings": {"sizes": args.sizes, "trajectories": trajectories, "crop": args.crop, "noise": args.noise,
                         "seed": args.seed, "sharp": args.sharp or "built-in sources", "sources": sources,
                         "scored": "outputs clipped to [0, 1]"},
            "models": [{"name": n, "path": str(p), "sha256": rt.manifest.get("sha256") if rt.manifest else None}
                       for (n, rt), p in zip(models, paths)],
            "sizes": result, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
