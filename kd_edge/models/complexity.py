"""Model complexity: parameters, multiply-accumulates (MACs), stride and feature layers.

``count_macs`` counts the multiply-accumulates of conv-like ops only: Conv2D, DepthwiseConv2D,
Conv2DTranspose and Dense/MatMul, per image (batch 1), computed analytically from the static
shapes of the model traced at ``height x width`` (``MACs = H_out * W_out * C_out * k_h * k_w * C_in``
for a convolution, ``H_out * W_out * C * k_h * k_w * multiplier`` for a depthwise one). Element-wise
ops (adds, gates, attention multiplies, activations), pooling and depth_to_space are not counted;
they are a few percent of the total for the zoo's networks. Works on wrapped models too (tfmot
pruning/QAT wrappers) because it reads the traced graph, not the layer types.
"""
import kd_edge  # noqa: F401

import numpy as np

_CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMul",
             "BatchMatMulV3", "_FusedConv2D", "_FusedMatMul")


def count_params(model) -> int:
    """Total number of parameters (trainable and not, e.g. BatchNorm statistics)."""
    return int(model.count_params())


def trainable_params(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def _wrapped(layer):
    """The layer inside tfmot wrappers (PruneLowMagnitude, QuantizeWrapper) or the layer itself."""
    while hasattr(layer, "layer") and layer.__class__.__name__ in (
        "PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeAnnotate"
    ):
        layer = layer.layer
    return layer


# A side with many small factors: every stride product up to 1024 of 2s (and 3, 5) divides it exactly, so each
# feature map's side over this side is the exact scale of that map.
_PROBE_SIDE = 2 ** 10 * 3 * 5
_MIN_SIDE = 8       # smaller maps are global (pooling to 1x1, attention), not a down-sampling level
_MAX_STRIDE = 1024


def _traced_scales(model, side):
    """Scales (Fractions) of every 4-D feature map computed from the input, the model traced at side x side."""
    from fractions import Fraction

    import tensorflow as tf

    channels = model.inputs[0].shape[-1] or 3
    fixed = model.inputs[0].shape[1:3]
    if all(d is not None for d in fixed):
        model = _with_input_size(model, side, side, channels)

    @tf.function
    def forward(x):
        return model(x, training=False)

    graph = forward.get_concrete_function(tf.TensorSpec([1, side, side, channels], tf.float32)).graph
    reached, frontier = set(), [graph.inputs[0]]
    consumers = {}
    for op in graph.get_operations():
        for tensor in op.inputs:
            consumers.setdefault(tensor.ref(), []).append(op)
    scales = set()
    while frontier:
        tensor = frontier.pop()
        for op in consumers.get(tensor.ref(), []):
            if op.name in reached:
                continue
            reached.add(op.name)
            for out in op.outputs:
                frontier.append(out)
                shape = out.shape
                # a feature map of the square probe is square; other 4-D tensors (a LayerNorm's reshape to
                # [1, H*W, C, 1], ...) are not feature maps, nor are sides that are no exact fraction of the input
                if shape.rank == 4 and shape[0] == 1 and shape[1] is not None and shape[1] == shape[2] \
                        and shape[1] >= _MIN_SIDE:
                    scale = Fraction(int(shape[1]), side)
                    if scale.denominator <= _MAX_STRIDE and scale <= _MAX_STRIDE:
                        scales.add(scale)
    return scales


def _layer_stride(model) -> int:
    """Fallback when the graph has no static shapes: the product of the down-sampling layers' strides."""
    stride = 1
    for layer in model.layers:
        inner = _wrapped(layer)
        name = inner.__class__.__name__
        if name.startswith("Global") or "Transpose" in name or name.startswith("UpSampling"):
            continue
        strides = getattr(inner, "strides", None)
        if strides is None:
            continue
        strides = tuple(strides) if isinstance(strides, (tuple, list)) else (strides, strides)
        stride *= max(int(s) for s in strides)
    return stride


def model_stride(model) -> int:
    """The down-sampling factor an input side must be a multiple of: the least common multiple of the
    denominators of every feature map's scale relative to the input.

    Traced, not read from layer types, so up-sampling (Conv2DTranspose, UpSampling2D, depth_to_space) counts
    as up, and any custom layer counts as it really behaves: a 2-level U-Net with stride-2 convs down and
    Conv2DTranspose up has stride 4 (its deepest map is 1/4), not the 16 the product of all strides gives.
    Recorded in each manifest as ``stride``.
    """
    import math

    try:
        scales = _traced_scales(model, _PROBE_SIDE)
    except Exception:  # noqa: BLE001 - a model that cannot trace at the probe side: count its layers
        scales = set()
    if not scales:
        return _layer_stride(model)
    stride = 1
    for scale in scales:
        if scale > 0:
            stride = math.lcm(stride, scale.denominator)
    return int(stride)


def _graph_macs(graph):
    total = 0
    for op in graph.get_operations():
        if op.type not in _CONV_OPS:
            continue
        out = op.outputs[0].shape
        if op.type in ("MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, b = op.inputs[0].shape, op.inputs[1].shape
            if not (a.is_fully_defined() and b.is_fully_defined()):
                continue
            transpose_a = op.get_attr("transpose_a") if "transpose_a" in op.node_def.attr else False
            inner = a[-2] if transpose_a else a[-1]
            total += int(np.prod(out.as_list())) * int(inner)
            continue
        filt = op.inputs[1].shape
        if op.type == "Conv2DBackpropInput":
            filt = op.inputs[1].shape
            x = op.inputs[2].shape  # gradient input: the small tensor
            if not (filt.is_fully_defined() and x.is_fully_defined()):
                continue
            kh, kw, _, cin = filt.as_list()
            total += int(np.prod(x.as_list()[:-1])) * kh * kw * cin * filt[2]
            continue
        if not (filt.is_fully_defined() and out.is_fully_defined()):
            continue
        kh, kw, cin, cout = filt.as_list()
        n, ho, wo, c = out.as_list()
        if op.type == "DepthwiseConv2dNative":
            total += n * ho * wo * c * kh * kw  # c == cin * multiplier
        else:
            total += n * ho * wo * cout * kh * kw * cin
    return total


def _with_input_size(model, height, width, channels):
    """The same architecture (fresh weights) with a (height, width) input: a fixed-size model at another size."""
    import tf_keras as keras

    from kd_edge.models.layers import custom_objects

    config = model.get_config()
    for layer in config.get("layers", []):
        if layer.get("class_name") == "InputLayer":
            layer["config"]["batch_input_shape"] = [None, height, width, channels]
    try:
        return keras.Model.from_config(config, custom_objects=custom_objects())
    except Exception:  # noqa: BLE001 - tfmot-wrapped models deserialise only in their scopes
        import tensorflow_model_optimization as tfmot

        from kd_edge.models.quantize_support import quantize_scope

        with tfmot.sparsity.keras.prune_scope(), quantize_scope():
            return keras.Model.from_config(config, custom_objects=custom_objects())


def count_macs(model, height=256, width=256) -> int:
    """Multiply-accumulates of the conv-like layers for one ``height x width`` image (see module doc)."""
    import tensorflow as tf

    channels = model.inputs[0].shape[-1] or 3
    fixed = model.inputs[0].shape[1:3]
    if all(d is not None for d in fixed) and tuple(fixed) != (height, width):
        model = _with_input_size(model, height, width, channels)

    @tf.function
    def forward(x):
        return model(x, training=False)

    graph = forward.get_concrete_function(tf.TensorSpec([1, height, width, channels], tf.float32)).graph
    return int(_graph_macs(graph))


FEATURE_LAYER_PATTERNS = ("enc{i}_out", "bottleneck_out", "dec{i}_out")


def feature_layer_names(model, *, decoder=False):
    """Names of the intermediate feature layers for feature distillation, shallow to deep.

    The end of every encoder level (``enc0_out``, ``enc1_out``, ...) and the bottleneck
    (``bottleneck_out``); with ``decoder=True`` also the end of every decoder level (``dec{i}_out``).
    tfmot-wrapped names (``quant_enc0_out``, ``prune_low_magnitude_...``) are matched too. Empty list for a
    model that does not follow the zoo's naming.
    """
    names = [layer.name for layer in model.layers]

    def find(base):
        for name in names:
            if name == base or name.endswith("_" + base) and name[: -len(base) - 1] in ("quant", "prune_low_magnitude"):
                return name
        return None

    found = []
    i = 0
    while (name := find(f"enc{i}_out")) is not None:
        found.append(name)
        i += 1
    bottleneck = find("bottleneck_out")
    if bottleneck:
        found.append(bottleneck)
    if decoder:
        for j in reversed(range(i)):
            name = find(f"dec{j}_out")
            if name:
                found.append(name)
    return found
