"""The one loader of Keras models: every command that takes a MODEL reads it through :func:`load_model`.

Accepted (all tf_keras, the Keras of kd-edge):

* ``.keras``: the Keras v3 zip (``model.save("m.keras")``), or kd-edge's HDF5 layout of tfmot-wrapped models
  under that name (see :mod:`kd_edge.models.saving`), told apart by content;
* ``.h5`` / ``.hdf5``: Keras' HDF5 format (``model.save("m.h5")``);
* a SavedModel folder written by tf_keras (``model.save("m_savedmodel")``: ``saved_model.pb`` and
  ``keras_metadata.pb``).

Refused with one line naming the file and what to do: a file saved by Keras 3 (``keras_version`` 3.x in its
metadata; tf_keras cannot read Keras 3's config), a SavedModel without Keras metadata, a ``Lambda`` layer
without ``--unsafe-lambda``, a layer class nobody registered (``--custom-objects MODULE:NAME``).
"""
import json
import re
import sys
import zipfile
from pathlib import Path

import kd_edge  # noqa: F401
from kd_edge.errors import InputFileError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_LAMBDA = re.compile(r'"class_name":\s*"Lambda",\s*"config":\s*\{\s*"name":\s*"([^"]*)"')
_ANY_LAMBDA = re.compile(r'"class_name":\s*"Lambda"')
_UNKNOWN = (re.compile(r"Unknown (?:layer|object|class)[^'\"]*['\"]([\w.>]+)['\"]"),
            re.compile(r"Could not locate (?:class|function) ['\"]([\w.>]+)['\"]"))

KERAS3_ADVICE = ("rebuild the model with tf_keras (`import tf_keras as keras`, the same layers), copy the weights "
                 "(`tfk_model.set_weights(keras3_model.get_weights())`) and save it with `tfk_model.save('model.keras')`")


def is_savedmodel(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "saved_model.pb").is_file()


def is_keras_model_path(path) -> bool:
    """True for a path kd-edge loads as a Keras model (by name or, for a folder, by its saved_model.pb)."""
    path = Path(path)
    return path.suffix.lower() in KERAS_SUFFIXES or is_savedmodel(path)


def _layout(path: Path) -> str:
    """'zip', 'h5' or 'savedmodel'; InputFileError for anything else."""
    if path.is_dir():
        if is_savedmodel(path):
            if not (path / "keras_metadata.pb").is_file():
                raise InputFileError(path, "a TensorFlow SavedModel without Keras metadata (keras_metadata.pb; "
                                           "written by tf.saved_model.save or Keras 3's model.export): kd-edge needs "
                                           "the Keras model, save it with tf_keras `model.save(...)`")
            return "savedmodel"
        raise InputFileError(path, "is a folder but not a SavedModel (no saved_model.pb): expected a .keras or .h5 "
                                   "file or a SavedModel folder")
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        what = {".tflite": "a TFLite artifact", ".onnx": "an ONNX artifact"}.get(suffix, f"a {suffix or 'suffix-less'} file")
        raise InputFileError(path, f"{what}, not a Keras model: expected .keras, .h5 or a SavedModel folder")
    if zipfile.is_zipfile(path):
        return "zip"
    import h5py

    if h5py.is_hdf5(str(path)):
        return "h5"
    raise InputFileError(path, "cannot load Keras model: neither a .keras zip nor HDF5 (truncated, or another format)")


def _metadata_and_config(path: Path, layout: str):
    """(keras_version or None, model config text) read from the file without deserialising it."""
    if layout == "zip":
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
            config = zf.read("config.json").decode("utf-8", "replace") if "config.json" in names else ""
        return meta.get("keras_version"), config
    if layout == "h5":
        import h5py

        with h5py.File(path, "r") as fh:
            def text(value):
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
            return text(fh.attrs.get("keras_version")) or None, text(fh.attrs.get("model_config"))
    metadata = (path / "keras_metadata.pb").read_bytes().decode("utf-8", "replace")
    version = re.search(r'"keras_version":\s*"([^"]+)"', metadata)
    return (version.group(1) if version else None), metadata


def _check_content(path, layout):
    """Refuse Keras 3 files and (unless allowed) Lambda layers, before anything is deserialised."""
    from kd_edge.models.user_objects import unsafe_lambda_allowed

    version, config = _metadata_and_config(path, layout)
    if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3:
        raise InputFileError(path, f"saved by Keras {version}; kd-edge runs tf_keras (Keras 2), which cannot read "
                                   f"Keras 3 files: {KERAS3_ADVICE}")
    if not _ANY_LAMBDA.search(config):
        return
    names = sorted(set(_LAMBDA.findall(config))) or ["?"]
    listed = ", ".join(names)
    if not unsafe_lambda_allowed():
        raise InputFileError(path, f"contains Lambda layer(s) {listed}, whose Python code is stored in the file and "
                                   f"would run on loading, so kd-edge refuses them: replace each with a registered "
                                   f"custom layer (load it with --custom-objects MODULE:NAME), or, for a file you "
                                   f"trust, pass --unsafe-lambda")
    print(f"kd-edge: warning: {path}: --unsafe-lambda: running the Python code of Lambda layer(s) {listed} stored "
          f"in this file; use this only for files you trust", file=sys.stderr)


def _class_names(node, found):
    if isinstance(node, dict):
        name = node.get("class_name")
        if isinstance(name, str) and isinstance(node.get("config"), (dict, type(None))):
            found.add(node.get("registered_name") or name)
        for value in node.values():
            _class_names(value, found)
    elif isinstance(node, list):
        for value in node:
            _class_names(value, found)
    return found


def _unknown_classes(config_text):
    """Class names in a model config that neither tf_keras, tfmot, kd-edge nor --custom-objects provide."""
    import tf_keras

    from kd_edge.models.layers import custom_objects

    try:
        found = _class_names(json.loads(config_text), set())
    except ValueError:
        return []
    known = {**tf_keras.utils.get_custom_objects(), **custom_objects()}
    spaces = (tf_keras.layers, tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints,
              tf_keras.activations, tf_keras.losses, tf_keras.metrics, tf_keras.optimizers, tf_keras.mixed_precision)
    builtin = {"Functional", "Sequential", "Model", "Policy", "DTypePolicy", "__tuple__", "__tensor__",
               "__keras_tensor__", "__lambda__", "__typespec__", "__numpy__", "TensorShape", "function"}
    unknown = []
    for name in sorted(found):
        short = name.split(">")[-1]
        if name in known or short in known or name in builtin or short.startswith("Quantize") \
                or short in ("PruneLowMagnitude",) or any(hasattr(space, short) for space in spaces):
            continue
        unknown.append(short)
    return unknown


def _explain(path, layout, exc):
    text = str(exc).strip()
    try:
        unknown = _unknown_classes(_metadata_and_config(path, layout)[1]) if layout != "savedmodel" else []
    except (OSError, KeyError, ValueError):
        unknown = []
    if not unknown:
        for pattern in _UNKNOWN:
            match = pattern.search(text)
            if match:
                unknown = [match.group(1).split(">")[-1]]
                break
    if unknown:
        listed = ", ".join(unknown)
        return (f"uses class(es) tf_keras does not know ({listed}): register each with "
                f"--custom-objects MODULE:{unknown[0]} (MODULE: the Python module or .py file that defines it)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"cannot load Keras model ({type(exc).__name__}: {first})"


def _deserialise(path: Path, layout: str):
    import tf_keras

    from kd_edge.models.layers import custom_objects
    from kd_edge.models.user_objects import unsafe_lambda_allowed

    objects = custom_objects()
    if layout == "zip":
        return tf_keras.models.load_model(str(path), custom_objects=objects, compile=False,
                                          safe_mode=not unsafe_lambda_allowed())
    # HDF5 (kd-edge's layout of tfmot-wrapped models, or a user's .h5) and SavedModel: inside tfmot's scopes,
    # so pruning / QAT wrappers deserialise too
    import tensorflow_model_optimization as tfmot

    from kd_edge.models.quantize_support import quantize_scope

    with tfmot.sparsity.keras.prune_scope(), quantize_scope():
        model = tf_keras.models.load_model(str(path), custom_objects=objects, compile=False)
    if not isinstance(model, tf_keras.Model):
        raise InputFileError(path, "holds no Keras model (a SavedModel of a plain tf.Module?)")
    return model


def _derived_manifest(path, model, digest):
    from kd_edge.models.complexity import count_params, model_stride

    fixed = model.inputs[0].shape[1:3]
    return {
        "format": "keras",
        "file": path.name,
        "arch": None,
        "config": None,
        "params": count_params(model),
        "stride": model_stride(model),
        "input_size": [int(d) for d in fixed] if all(d is not None for d in fixed) else None,
        "sha256": digest,
        "lineage": [],
    }


def load_model(path, *, verify=True):
    """Load a Keras model (``.keras``, ``.h5`` or a SavedModel folder) and its manifest: ``(model, manifest)``.

    Raises :class:`InputFileError` naming the file if it is missing, unreadable, not a tf_keras model, saved
    by Keras 3, holds a Lambda layer (without ``--unsafe-lambda``) or an unregistered class, or does not match
    the sha256 of its manifest (``verify=False`` skips that check). Without a manifest, a minimal one is
    derived from the model itself (``arch`` None).
    """
    from kd_edge.converters.manifest import sha256_of
    from kd_edge.models.registry import attach_config
    from kd_edge.models.saving import read_manifest

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such model file")
    manifest = read_manifest(path)
    digest = sha256_of(path)
    if verify and manifest and manifest.get("sha256") and digest != manifest["sha256"]:
        raise InputFileError(path, f"sha256 {digest[:12]}... does not match its manifest "
                                   f"({manifest['sha256'][:12]}...): the file was modified or truncated")
    layout = _layout(path)
    try:
        _check_content(path, layout)
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(path, f"unreadable model file ({type(exc).__name__}: {exc})") from exc
    try:
        model = _deserialise(path, layout)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the file
        raise InputFileError(path, _explain(path, layout, exc)) from exc
    if manifest is None:
        manifest = _derived_manifest(path, model, digest)
    attach_config(model, manifest.get("arch"), manifest.get("config"))
    return model, manifest
