"""Effective receptive field: how far from a pixel a Keras model actually looks when it restores that pixel.

    python -m kd_edge.benchmarks.receptive_field [MODEL ...] [--names a,b] [--size 256] [--images 4] [--blur PX]
        [--json PATH]

A model can only undo blur it can see across: a 27-px shake kernel spreads a point over 27 px, and inverting it
needs input from at least that far. The architecture's theoretical receptive field says what is possible; this
measures what a trained model uses. For each probe image (``--images`` crops of the built-in sources of
``kd-edge data synth``, ``--size`` px; with ``--blur PX`` blurred first by a linear shake kernel of that size, as
a deblurring model meets them) it takes the gradient of the centre output pixel (summed over channels)
with respect to the input, |d y(c) / d x| summed over input channels, and splits it in two:

* the **global share**: the part spread evenly over the whole image (the mean sensitivity of pixels at
  least 3/8 of the image away from the centre, times the image area, over the total). Channel attention's global
  average pooling makes every pixel count a little; it carries image-wide statistics, not deconvolution;
* the **local part** (what rises above that floor) and the Chebyshev radii holding 50 / 90 / 99% of it
  (``r50``, ``r90``, ``r99``, px).

Medians over the probes are reported per model. Keras models only (it needs gradients); the JSON is written
atomically with the host's CPU flags. The measure is linear around each probe, so it describes the model near
natural images, not every input.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMAT = "kd-edge-receptive-field/1"
QUANTILES = (0.5, 0.9, 0.99)
FAR_FRACTION = 3 / 8  # pixels at least this share of the side away from the centre make the global floor


def centre_gradient(model, image):
    """|d sum_c y[h/2, w/2, c] / d x| summed over input channels: an HxW float64 map."""
    import tensorflow as tf

    x = tf.constant(np.asarray(image, np.float32)[None])
    h, w = image.shape[:2]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
        target = tf.reduce_sum(y[0, h // 2, w // 2, :])
    grad = tape.gradient(target, x)
    if grad is None:
        raise ValueError("the output does not depend on the input (no gradient)")
    return np.abs(grad.numpy()[0]).sum(axis=-1).astype(np.float64)


def chebyshev_radius(height, width):
    yy, xx = np.mgrid[:height, :width]
    return np.maximum(np.abs(yy - height // 2), np.abs(xx - width // 2))


def split_gradient(grad):
    """{'global_share', 'r50', 'r90', 'r99'} of one gradient map (see the module docstring).

    The floor is the mean sensitivity of the far field; the local part's mass within radius r is what lies there
    above that floor (``sum(grad) - floor * pixels``, not clipped, so the far field's fluctuations cancel instead
    of piling up over its large area)."""
    h, w = grad.shape
    r = chebyshev_radius(h, w)
    far = r >= int(round(FAR_FRACTION * min(h, w)))
    total = float(grad.sum())
    if total <= 0:
        raise ValueError("zero gradient")
    floor = float(grad[far].mean()) if far.any() else 0.0
    out = {"global_share": round(min(1.0, floor * h * w / total), 4)}
    local_total = total - floor * h * w
    if local_total <= 1e-9 * total:
        return {**out, **{f"r{round(q * 100)}": None for q in QUANTILES}}
    excess = np.bincount(r.ravel(), weights=grad.ravel()) - floor * np.bincount(r.ravel())
    cumulative = np.cumsum(excess) / local_total
    for q in QUANTILES:
        out[f"r{round(q * 100)}"] = int(np.argmax(cumulative >= q - 1e-12))
    return out


def measure(model, images):
    """Per probe and median over probes of :func:`split_gradient`."""
    probes = [split_gradient(centre_gradient(model, img)) for img in images]
    keys = probes[0].keys()
    median = {k: (None if any(p[k] is None for p in probes) else float(np.median([p[k] for p in probes])))
              for k in keys}
    return {"median": median, "probes": probes}


def blurred_probes(images, size, *, seed=0):
    """The probes blurred by one linear shake kernel of ``size`` px each (``kd_edge.data.kernels``), as a deblurring
    model meets them; unchanged for ``size`` <= 1."""
    if size <= 1:
        return list(images)
    from kd_edge.data import kernels

    rng = np.random.default_rng(seed + 1)
    return [np.clip(kernels.blur(img, kernels.sample_kernel(rng, size, "linear")), 0.0, 1.0).astype(np.float32)
            for img in images]


def _load_keras(path):
    from kd_edge.errors import InputFileError
    from kd_edge.models.loading import is_keras_model_path, load_model

    if not is_keras_model_path(path):
        raise InputFileError(path, "the receptive field needs gradients: give the Keras model (.keras, .h5 or a "
                                   "SavedModel folder) the artifact was converted from")
    return load_model(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="receptive_field", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help="Keras models (default: the embedded student)")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per MODEL")
    parser.add_argument("--size", type=int, default=256, help="probe side in px (a multiple of the models' stride)")
    parser.add_argument("--images", type=int, default=4, help="probe crops of the built-in sources")
    parser.add_argument("--seed", type=int, default=2027, help="seed of the probe crops")
    parser.add_argument("--blur", type=int, default=0, metavar="PX",
                        help="blur the probes first by a linear camera-shake kernel of this odd size (0: sharp probes)")
    parser.add_argument("--json", dest="json_path", default=None, help="output JSON (default: print only)")
    args = parser.parse_args(argv)
    if args.size < 16 or args.images < 1 or args.blur < 0 or (args.blur and args.blur % 2 == 0):
        print("receptive_field: error: --size must be >= 16, --images >= 1 and --blur 0 or an odd size",
              file=sys.stderr)
        return 2

    from kd_edge.quiet_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    from kd_edge.benchmarks.host import describe, local_host_facts
    from kd_edge.data.synth import builtin_crops
    from kd_edge.defaults import default_model_path
    from kd_edge.errors import KdEdgeError
    from kd_edge.report.evaluate import default_names, parse_names
    from kd_edge.models.registry import check_input_size
    from kd_edge.tiling import as_runtime, model_stride

    paths = [Path(p) for p in args.models] or [default_model_path("student")]
    facts = local_host_facts()
    blur = f", blurred by {args.blur}-px linear kernels" if args.blur else ""
    print(f"effective receptive field, {args.images} probes of {args.size} px{blur} ({describe(facts)})")
    t0 = time.perf_counter()
    try:
        names = parse_names(args.names, len(paths)) or default_names(paths)
        images, sources = builtin_crops(args.images, args.size, seed=args.seed, photo_fraction=0.5)
        images = blurred_probes(images, args.blur, seed=args.seed)
        rows = []
        for name, path in zip(names, paths):
            model, manifest = _load_keras(path)
            check_input_size(args.size, args.size, model_stride(as_runtime(model)), what=f"{path}: --size")
            try:
                result = measure(model, images)
            except ValueError as exc:
                raise KdEdgeError(f"{path}: {exc}") from exc
            m = result["median"]
            radii = " / ".join("-" if m[k] is None else f"{m[k]:.0f}" for k in ("r50", "r90", "r99"))
            print(f"  {name}: global share {m['global_share']:.2f}; local part within r50 / r90 / r99 {radii} px")
            rows.append({"name": name, "path": str(path), "sha256": manifest.get("sha256"),
                         "arch": manifest.get("arch"), "params": int(model.count_params()), **result})
    except KdEdgeError as exc:
        print(f"receptive_field: error: {exc}", file=sys.stderr)
        return 1
    if args.json_path:
        from kd_edge import __version__
        from kd_edge.atomic import write_json

        write_json(Path(args.json_path), {
            "format": FORMAT, "kd_edge_version": __version__,
            "command": " ".join(["receptive_field"] + list(argv if argv is not None else sys.argv[1:])),
            "host": facts,
            "settings": {"size": args.size, "images": args.images, "seed": args.seed, "sources": sources,
                         "blur_px": args.blur,
                         "far_fraction": FAR_FRACTION,
                         "definition": "gradient of the centre output pixel w.r.t. the input; global share = "
                                       "mean far-field sensitivity x area / total; r50/r90/r99 = Chebyshev "
                                       "radius holding that share of the sensitivity above the far-field floor"},
            "models": rows, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
