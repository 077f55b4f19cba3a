"""Where training data comes from: a DBlur root (``train/`` + ``test/`` or ``validation/``) or ``synth``."""
from pathlib import Path

from kd_edge.errors import InputFileError, KdEdgeError

SYNTH = "synth"
SYNTH_SUMMARY_KEYS = ("format", "version", "count", "size", "seed", "test_fraction", "kernel_min", "kernel_max",
                      "defocus", "noise", "photo_fraction", "pairs", "train", "test", "psnr_blur_vs_sharp")


def center_crop(img, size, stride):
    """The centre ``size`` x ``size`` of ``img`` (less for a smaller image), sides rounded down to multiples of
    ``stride``; None when a side would be 0. Validation crops: held-out pairs and do-no-harm photos."""
    h, w = img.shape[:2]
    ch = min(size, h) // stride * stride
    cw = min(size, w) // stride * stride
    if ch == 0 or cw == 0:
        return None
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top:top + ch, left:left + cw]


def resolve_data(spec, out_dir, *, synth_count=64, synth_size=256, seed=0):
    """Return the dataset root for ``--data``: the folder itself, or ``<out>/data`` synthesised for ``synth``.

    A synthetic set already in ``<out>/data`` with the same parameters is reused (so resuming is cheap).
    """
    if str(spec) == SYNTH:
        import json

        root = Path(out_dir) / "data"
        wanted = {"count": int(synth_count), "size": int(synth_size), "seed": int(seed)}
        meta = root / "synth.json"
        if meta.is_file():
            try:
                found = json.loads(meta.read_text())
            except (OSError, ValueError):
                found = {}
            if all(found.get(k) == v for k, v in wanted.items()) and (root / "train").is_dir():
                return root
        from kd_edge.data.synth import synthesize

        print(f"synthesising {synth_count} blurred/sharp pairs of {synth_size} px into {root}")
        synthesize(root, count=int(synth_count), size=int(synth_size), seed=int(seed), force=True)
        return root
    root = Path(spec)
    if not root.is_dir():
        raise InputFileError(root, f"not a directory (expected a DBlur root with train/ and test/, or '{SYNTH}')")
    return root


def train_split(root):
    split = Path(root) / "train"
    if not (split / "blur").is_dir() or not (split / "sharp").is_dir():
        raise InputFileError(root, "no train/blur and train/sharp folders (DBlur layout expected)")
    return split


def heldout_split(root, *, required=False):
    """The held-out split (``kd_edge.data.pipeline.heldout_split``: test/, else validation/, val/ or valid/,
    never train/); None when there is none and it is not ``required``."""
    from kd_edge.data.pipeline import heldout_split as find_heldout

    try:
        return find_heldout(root)
    except InputFileError:
        if required:
            raise
        return None


def describe(root, spec):
    """A short JSON-able description of the data, for train.json and the model lineage."""
    root = Path(root)
    info = {"spec": str(spec), "root": str(root.resolve())}
    meta = root / "synth.json"
    if meta.is_file():
        import json

        try:
            synth = json.loads(meta.read_text())
            info["synth"] = {k: synth[k] for k in SYNTH_SUMMARY_KEYS if k in synth}
        except (OSError, ValueError) as exc:
            raise KdEdgeError(f"{meta}: unreadable synth.json ({exc})") from exc
    return info
