"""The Keras model being converted: loaded once, with its hash, config, stride, params and MACs."""
from dataclasses import dataclass, field
from pathlib import Path



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
    """The model file at ``path`` (.keras, .h5 or SavedModel, through the one loader) as a SourceModel."""
    from kd_edge.models import load_model

    model, manifest = load_model(path)
    return source_of(model, path, manifest)


def source_of(model, path, manifest=None) -> SourceModel:
    """A SourceModel for an in-memory Keras ``model`` saved at ``path`` (its file gives the sha256)."""
    from kd_edge.converters.manifest import sha256_of

    path = Path(path)
    manifest = manifest or {}
    from kd_edge import models as zoo

    # computed, not read from the manifest: manifests written before the stride rule was fixed hold wrong values
    stride = int(zoo.model_stride(model))
    params = manifest.get("params")
    if params is None:
        params = int(zoo.count_params(model))
    macs = manifest.get("macs_256")
    if macs is None and 256 % stride == 0:
        try:
            macs = int(zoo.count_macs(model, height=256, width=256))
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
