"""Saving and loading zoo models: a ``.keras`` file plus a JSON manifest ``<path>.json``.

The ``.keras`` file is written atomically (temporary file in the same folder, then renamed) and is
loaded with ``safe_mode=True`` (there are no ``Lambda`` layers; the custom layers are registered). The
manifest records everything needed to rebuild and trust the model::

    {"format": "keras", "arch": "edge-s", "config": {...}, "params": 316979, "macs_256": ...,
     "stride": 8, "input_size": null, "sha256": "...", "lineage": [...], "kd_edge_version": "0.1.0",
     "tool_versions": {...}, "created": "2026-...Z", ...extra}

``layout`` is ``"zip"`` (the Keras v3 ``.keras`` zip) for plain models. Models that contain tfmot
wrappers (``prune_low_magnitude`` or QAT ``quantize_apply``) do not round-trip through the zip format in
tf_keras 2.21 / tfmot 0.8 (their variables are created twice on load and the weight counts no longer
match), so they are stored in Keras' HDF5 layout under the same ``.keras`` name (``layout: "h5"``) and
loaded inside tfmot's ``prune_scope``/``quantize_scope``; :func:`load_model` tells them apart by content.

``extra`` keys are merged at the top level (they may not replace the keys above). Loading (any ``.keras``,
``.h5`` or SavedModel) is :mod:`kd_edge.models.loading`: it checks the sha256 recorded in the manifest when
there is one, so a truncated or replaced file is refused.
"""
import datetime
import hashlib
import json
from pathlib import Path

import kd_edge  # noqa: F401
from kd_edge.atomic import atomic_path, write_json
from kd_edge.errors import InputFileError, KdEdgeError

CORE_KEYS = ("format", "layout", "arch", "config", "params", "macs_256", "stride", "input_size", "sha256", "lineage",
             "kd_edge_version", "tool_versions", "created", "file")


def manifest_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tool_versions():
    import tensorflow as tf
    import tf_keras

    versions = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}
    try:
        import tensorflow_model_optimization as tfmot

        versions["tensorflow_model_optimization"] = tfmot.__version__
    except Exception:  # noqa: BLE001 - optional in a manifest
        pass
    return versions


def save_model(model, path, *, arch=None, config=None, lineage=None, extra=None):
    """Write ``model`` to ``path`` (must end in ``.keras``) atomically, then its manifest ``path + '.json'``.

    ``arch`` and ``config`` default to what :func:`kd_edge.models.build` attached to the model. ``lineage``
    is a list of steps (or one dict) describing where the model comes from (parent hash, method, settings).
    Returns the manifest dict.
    """
    from kd_edge.models.complexity import count_macs, count_params, model_stride

    path = Path(path)
    if path.suffix != ".keras":
        raise KdEdgeError(f"{path}: a model file must end in .keras")
    from kd_edge.models.registry import attach_config, plain

    arch = arch if arch is not None else getattr(model, "kd_edge_arch", None)
    config = plain(config if config is not None else getattr(model, "kd_edge_config", None))
    if lineage is None:
        lineage = []
    elif isinstance(lineage, dict):
        lineage = [lineage]
    lineage = plain(lineage)
    extra = plain(dict(extra or {}))
    clash = sorted(set(extra) & set(CORE_KEYS))
    if clash:
        raise KdEdgeError(f"save_model: extra may not replace manifest keys {', '.join(clash)}")

    stride = model_stride(model)
    fixed = model.inputs[0].shape[1:3]
    input_size = [int(d) for d in fixed] if all(d is not None for d in fixed) else None
    try:
        macs = count_macs(model, 256, 256) if 256 % stride == 0 else None
    except Exception:  # noqa: BLE001 - a model we cannot trace still saves; the manifest says so
        macs = None

    layout = "h5" if is_tfmot_wrapped(model) else "zip"
    with atomic_path(path) as tmp:
        if layout == "h5":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model.save(tmp, save_format="h5")
        else:
            model.save(tmp, save_format="keras")
        digest = sha256_file(tmp)
    manifest = {
        "format": "keras",
        "layout": layout,
        "file": path.name,
        "arch": arch,
        "config": config,
        "params": int(count_params(model)),
        "macs_256": macs,
        "stride": int(stride),
        "input_size": input_size,
        "sha256": digest,
        "lineage": lineage,
        "kd_edge_version": kd_edge.__version__,
        "tool_versions": _tool_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    manifest.update(extra)
    write_json(manifest_path(path), manifest)
    attach_config(model, arch, config)
    return manifest


def read_manifest(path):
    """The manifest of ``path`` (a dict), or None when there is none. InputFileError if it is unreadable."""
    mpath = manifest_path(path)
    if not mpath.exists():
        return None
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(mpath, f"unreadable model manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise InputFileError(mpath, "model manifest is not a JSON object")
    return manifest


TFMOT_WRAPPERS = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "QuantizeAnnotate")


def is_tfmot_wrapped(model) -> bool:
    """True if ``model`` contains tfmot pruning or quantization wrappers."""
    return any(type(layer).__name__ in TFMOT_WRAPPERS for layer in model.layers)

