"""Quantization-aware training (tfmot) with fallbacks, pruning preservation and full-int8 TFLite export.

Every layer is looked at once (:func:`quantize_plan`, what ``kd-edge quantize --check`` prints):

* built-in layers tfmot's default 8-bit registry supports (Conv2D, DepthwiseConv2D, Dense, Add, pooling,
  BatchNormalization, ReLU...) are annotated with the default configs;
* kd_edge's custom layers get explicit QuantizeConfigs (:mod:`kd_edge.models.quantize_support`:
  SimpleGate -> output quantizer, DepthToSpace -> pass-through) and weightless element-wise layers tfmot does
  not know (``Multiply`` of the channel attention) get an output-only config;
* anything else (an unknown custom layer, a layer type without a config) is **left in float**: it is not
  annotated, ``quantize_apply`` keeps it as is, and the plan says so. Never a crash.

When the model is sparse (zero weights from ``kd-edge prune --sparsity``; detected, see :func:`is_sparse`),
QAT uses ``Default8BitPrunePreserveQuantizeScheme`` so that training keeps the zeros.
"""
import kd_edge  # noqa: F401
from kd_edge.errors import KdEdgeError

SPARSE_THRESHOLD = 0.2  # overall kernel sparsity from which a model counts as pruned

WRAPPERS = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "QuantizeAnnotate")


def _registry():
    from kd_edge.models.quantize_support import _registry as registry

    return registry()


def _decide(layer, registry):
    """(quantized: bool, QuantizeConfig or None, why) for one layer."""
    import tf_keras as keras

    from kd_edge.models import quantize_support as qs

    kind = type(layer).__name__
    if isinstance(layer, keras.layers.InputLayer):
        return True, None, "model input: quantized by quantize_apply (QuantizeLayer)"
    if kind in WRAPPERS:
        raise KdEdgeError(f"layer {layer.name} is already wrapped by tfmot ({kind}): quantize the float model "
                          "(a sparsity-pruned model must be stripped first; kd-edge prune does that)")
    if isinstance(layer, keras.Model):
        return False, None, "nested model: stays float (flatten it to quantize its layers)"
    custom = qs.QUANTIZE_CONFIGS.get(type(layer))
    if custom is not None:
        return True, custom(), f"kd_edge {custom.__name__}"
    try:
        supported = registry.supports(layer)
    except Exception:  # noqa: BLE001 - a registry that cannot judge a layer means: not supported
        supported = False
    if supported:
        return True, None, "tfmot default 8-bit registry"
    if not layer.weights and kind in qs.WEIGHTLESS_OUTPUT_QUANTIZED:
        return True, qs.OutputQuantizeConfig(), "kd_edge OutputQuantizeConfig (weightless op, output quantized)"
    if layer.weights:
        return False, None, f"no QuantizeConfig for {kind} (has weights): stays float"
    return False, None, f"no QuantizeConfig for {kind}: stays float"


def quantize_plan(model):
    """[{layer, class, quantized, why}] for every layer of ``model`` (in model order)."""
    registry = _registry()
    rows = []
    for layer in model.layers:
        quantized, _, why = _decide(layer, registry)
        rows.append({"layer": layer.name, "class": type(layer).__name__, "quantized": bool(quantized), "why": why})
    return rows


def annotate(model):
    """A copy of ``model`` with every quantizable layer annotated; unsupported layers stay unannotated (float)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from kd_edge.models.quantize_support import quantize_scope

    registry = _registry()
    decisions = {layer.name: _decide(layer, registry) for layer in model.layers}

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return copy
        quantized, config, _ = decisions[layer.name]
        if not quantized:
            return copy
        return tfmot.quantization.keras.quantize_annotate_layer(copy, quantize_config=config)

    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def is_sparse(model, threshold=SPARSE_THRESHOLD):
    from kd_edge.compress.sparsity import overall_sparsity

    return overall_sparsity(model) >= threshold


def quantize_model(model, *, preserve_sparsity="auto"):
    """QAT-ready copy of ``model`` (tfmot ``quantize_apply``); returns ``(qat_model, info)``.

    preserve_sparsity: True, False or "auto" (use the prune-preserving scheme when :func:`is_sparse`).
    """
    import tensorflow_model_optimization as tfmot

    from kd_edge.compress.sparsity import overall_sparsity
    from kd_edge.models.quantize_support import quantize_scope

    sparsity = overall_sparsity(model)
    preserve = sparsity >= SPARSE_THRESHOLD if preserve_sparsity == "auto" else bool(preserve_sparsity)
    plan = quantize_plan(model)
    annotated = annotate(model)
    with quantize_scope():
        if preserve:
            scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
        else:
            qat = tfmot.quantization.keras.quantize_apply(annotated)
    info = {
        "scheme": "Default8BitPrunePreserveQuantizeScheme" if preserve else "Default8BitQuantizeScheme",
        "input_sparsity": sparsity,
        "float_layers": [r["layer"] for r in plan if not r["quantized"]],
        "plan": plan,
    }
    return qat, info


def calibrate_ranges(qat_model, float_model, images):
    """Initialise the activation ranges of ``qat_model`` from the float model's outputs on ``images``.

    tfmot starts every moving-average activation range at [-6, 6] and moves it with an EMA of decay 0.999,
    so after a few hundred fine-tuning steps the ranges are still far too wide for images in [0, 1] (~4x
    coarser steps than needed): a short QAT run then loses more than post-training quantization. Setting
    each layer's output range (``post_activation``/``output`` min and max, the input ``QuantizeLayer``) to the
    range the float model really produces on calibration images starts QAT where PTQ would be; training then
    refines it. Returns the number of ranges set.
    """
    import numpy as np
    import tf_keras as keras

    images = np.asarray(images, np.float32)
    names = [layer.name for layer in float_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lows, highs = {}, {}
    for i in range(0, len(images), 4):
        outputs = probe(images[i:i + 4], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, out in zip(names, outputs):
            out = np.asarray(out)
            lows[name] = min(lows.get(name, 0.0), float(out.min()))
            highs[name] = max(highs.get(name, 0.0), float(out.max()))
    ranges = {n: (lows[n], highs[n]) for n in names}
    input_range = (min(0.0, float(images.min())), max(0.0, float(images.max())))
    count = 0
    for layer in qat_model.layers:
        kind = type(layer).__name__
        if kind == "QuantizeLayer":
            lo, hi = input_range
        elif kind.startswith("QuantizeWrapper") and layer.layer.name in ranges:
            lo, hi = ranges[layer.layer.name]
        else:
            continue
        if hi - lo < 1e-6:
            hi = lo + 1e-6
        for var in layer.weights:
            base = var.name.split("/")[-1].split(":")[0]
            if base in ("post_activation_min", "output_min") or (kind == "QuantizeLayer" and base.endswith("_min")):
                var.assign(np.full(var.shape, lo, np.float32))
                count += 1
            elif base in ("post_activation_max", "output_max") or (kind == "QuantizeLayer" and base.endswith("_max")):
                var.assign(np.full(var.shape, hi, np.float32))
                count += 1
    return count


def export_int8_tflite(model, path=None, *, calib=None, calib_count=32, input_size=256, int8_io=False,
                       allow_float_ops=True):
    """Convert a (QAT or float) Keras model to a full-integer TFLite flatbuffer; returns the bytes.

    ``model``: a tf_keras model or a ``.keras`` path (loaded with kd_edge.models.load_model). The calibration
    images (:mod:`kd_edge.compress.calibration`, ``calib`` folder or the synthetic set) set the ranges of any
    tensor without a QAT fake-quant. ``input_size``: an int or (H, W) fixing the input, None keeps it dynamic.
    When an op has no int8 kernel (a layer left in float) and ``allow_float_ops``, the converter keeps it in
    float instead of failing. Written atomically to ``path`` when given.
    """
    import tensorflow as tf

    from kd_edge.atomic import write_bytes
    from kd_edge.compress.calibration import calibration_images, representative_dataset

    if not hasattr(model, "layers"):
        from kd_edge.models import load_model

        model, _ = load_model(model)
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    shape = [1, None, None, 3] if input_size is None else [1, int(input_size[0]), int(input_size[1]), 3]
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    calib_size = input_size[0] if input_size is not None else 64
    images = calibration_images(calib, count=calib_count, size=calib_size)
    if input_size is not None and tuple(images.shape[1:3]) != tuple(input_size):
        images = tf.image.resize(images, input_size).numpy()

    def converter(ops):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(images)
        conv.target_spec.supported_ops = ops
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        return conv.convert()

    try:
        content = converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
    except Exception as exc:  # noqa: BLE001 - an op without int8 kernel: keep it in float if allowed
        if not allow_float_ops:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KdEdgeError(f"full-int8 TFLite conversion failed: {first}") from exc
        content = converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS])
    if path is not None:
        write_bytes(path, content)
    return content


def canonical_copy(qat_model, sample_shape=(1, 32, 32, 3)):
    """A copy of a QAT model rebuilt from its config, as ``load_model`` will rebuild it, with the same values.

    tfmot's ``QuantizeLayer`` gets built twice when a ``.keras`` zip file is deserialised (5 variables instead
    of the 3 of a model fresh from ``quantize_apply``), so a QAT model saved as is in that layout cannot be
    loaded back. Saving this canonical copy instead gives a file whose variables match what the loader creates.
    """
    import numpy as np
    import tf_keras as keras

    from kd_edge.models.layers import custom_objects
    from kd_edge.models.quantize_support import quantize_scope

    with quantize_scope(), keras.utils.custom_object_scope(custom_objects()):
        copy = keras.Model.from_config(qat_model.get_config())
    copy(np.zeros(sample_shape, np.float32), training=False)

    def base(var):
        return var.name.split("/")[-1]

    for layer in qat_model.layers:
        target = copy.get_layer(layer.name)
        source = {}
        for var in layer.weights:
            source.setdefault(base(var), var)
        for var in target.weights:
            if base(var) not in source:
                raise KdEdgeError(f"QAT copy: variable {var.name} of {layer.name} has no counterpart")
            var.assign(source[base(var)])
    return copy


def save_qat_model(qat_model, path, *, sample_shape=(1, 32, 32, 3), **save_kwargs):
    """Save a QAT model through :func:`kd_edge.models.save_model` and check that ``load_model`` reads it back.

    kd_edge.models saves tfmot-wrapped models in the HDF5 layout, which round-trips; should a file still not
    load (a ``.keras`` zip layout, where tfmot's ``QuantizeLayer`` is built twice on loading), the
    :func:`canonical_copy` is saved instead.
    """
    from kd_edge.models import load_model, save_model

    manifest = save_model(qat_model, path, **save_kwargs)
    try:
        load_model(path)
    except Exception:  # noqa: BLE001 - the layout problem above: save the canonical copy instead
        manifest = save_model(canonical_copy(qat_model, sample_shape), path, **save_kwargs)
        load_model(path)
    return manifest
