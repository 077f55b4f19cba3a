"""The Keras model being converted: loaded once, with its hash, config, stride, params and MACs."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from kd_edge.errors import InputFileError


@dataclass
class SourceModel:
    path: Path
    model: object                  # tf_keras.Model
    manifest: dict | None          # the model's own manifest (kd_edge.models.save_model), if any
    sha256: str
    arch: str | None
    config: dict | None
    params: int
    macs_256: int | None
    stride: int
    _fixed: dict = field(default_factory=dict, repr=False)

    @property
    def stem(self) -> str:
        from kd_edge.converters.pipeline import model_stem

        return model_stem(self.path)

    def predict(self, x):
        """Keras reference output (float32 NHWC), one image at a time to mirror batch-1 artifacts."""
        import hashlib

        import numpy as np

        key = ("predict", x.shape, hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
        if key not in self._fixed:  # every target is compared on the same probes: compute Keras once
            self._fixed[key] = np.concatenate(
                [self.model(x[i : i + 1], training=False).numpy() for i in range(len(x))], axis=0)
        return self._fixed[key]

    def concrete_function(self, input_size, batch=1):
        """A tf.function concrete function with input ``[batch, H, W, 3]`` named ``input`` (None = dynamic)."""
        import tensorflow as tf

        key = (tuple(input_size) if input_size else None, batch)
        if key not in self._fixed:
            model = self.model
            h, w = input_size if input_size else (None, None)
            fn = tf.function(lambda x: model(x, training=False))
            self._fixed[key] = fn.get_concrete_function(tf.TensorSpec([batch, h, w, 3], tf.float32, name="input"))
        return self._fixed[key]

    def trackable(self):
        """A light tf.Module owning only the model's variables: exporting it does not re-trace every Keras
        layer for SavedModel serialisation (10x faster TFLite conversion than passing the Keras model)."""
        import tensorflow as tf

        if "_trackable" not in self._fixed:
            module = tf.Module()
            module.variables_list = list(self.model.variables)
            self._fixed["_trackable"] = module
        return self._fixed["_trackable"]


def _custom_objects():
    try:
        from kd_edge.models.layers import custom_objects
    except ImportError:
        return {}
    return custom_objects()


def load_keras(path):
    """(model, manifest or None) through kd_edge.models.load_model when present, else tf_keras."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir() or path.suffix != ".keras":
        raise InputFileError(path, "not a Keras model (expected a .keras file written by kd-edge or tf_keras)")
    try:
        from kd_edge.models import load_model as zoo_load
    except ImportError:
        zoo_load = None
    if zoo_load is not None:
        return zoo_load(path)
    import kd_edge  # noqa: F401  (tf_keras)
    import tf_keras

    try:
        model = tf_keras.models.load_model(path, custom_objects=_custom_objects(), compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's file
        raise InputFileError(path, f"cannot load Keras model ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
    manifest = None
    mpath = path.with_name(path.name + ".json")
    if mpath.exists():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(mpath, f"unreadable model manifest ({exc})") from exc
    return model, manifest


def _fallback_stride(model) -> int:
    stride = 1
    for layer in model.layers:
        s = getattr(layer, "strides", None)
        if s and max(s) > 1:
            stride *= max(s)
        pool = getattr(layer, "pool_size", None)
        if pool and type(layer).__name__.endswith("Pooling2D") and max(pool) > 1:
            stride *= max(pool)
    return stride


def _profiled_macs(source, h=256, w=256):
    """MACs at HxW from TensorFlow's graph profiler (FLOPs / 2) on the frozen batch-1 graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    frozen = convert_variables_to_constants_v2(source.concrete_function((h, w)))
    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    info = model_analyzer.profile(graph=frozen.graph, options=opts)
    return int(info.total_float_ops // 2)


def load_source(path) -> SourceModel:
    from kd_edge.converters.manifest import sha256_of

    path = Path(path)
    model, manifest = load_keras(path)
    manifest = manifest or {}
    try:
        from kd_edge import models as zoo
    except ImportError:
        zoo = None
    stride = manifest.get("stride")
    if stride is None and zoo is not None and hasattr(zoo, "model_stride"):
        stride = zoo.model_stride(model)
    stride = int(stride or _fallback_stride(model))
    params = manifest.get("params")
    if params is None:
        params = int(zoo.count_params(model)) if zoo is not None and hasattr(zoo, "count_params") else int(model.count_params())
    macs = manifest.get("macs_256")
    if macs is None:
        try:
            macs = int(zoo.count_macs(model, height=256, width=256)) if zoo is not None and hasattr(zoo, "count_macs") else None
        except Exception:  # noqa: BLE001 - MACs are informative only
            macs = None
    source = SourceModel(
        path=path,
        model=model,
        manifest=manifest or None,
        sha256=sha256_of(path),
        arch=manifest.get("arch"),
        config=manifest.get("config"),
        params=int(params),
        macs_256=macs,
        stride=stride,
    )
    if source.macs_256 is None:
        try:
            source.macs_256 = _profiled_macs(source)
        except Exception:  # noqa: BLE001 - MACs are informative only
            source.macs_256 = None
    return source
