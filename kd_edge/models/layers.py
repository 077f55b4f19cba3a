"""Registered custom layers of the model zoo (no ``Lambda`` anywhere).

Every layer here is registered with ``tf_keras.utils.register_keras_serializable(package="kd_edge")``
so that ``.keras`` files load with ``safe_mode=True`` and tfmot can clone models that use them.
None of them has weights: they are tfmot ``PrunableLayer``s with no prunable weights (so
``prune_low_magnitude(model)`` accepts a whole zoo model) and quantization treats them as pass-through
or output-quantized (see :mod:`kd_edge.models.quantize_support`). Each lowers to TFLite built-ins:

=================  =====================================  ==========================
layer              TensorFlow op                          TFLite built-in
=================  =====================================  ==========================
SimpleGate         split channels in two halves, multiply  SPLIT (or 2x SLICE) + MUL
DepthToSpace       ``tf.nn.depth_to_space``                 DEPTH_TO_SPACE
=================  =====================================  ==========================

Channel attention is deliberately *not* a custom layer: it is built from ``GlobalAveragePooling2D``
(``keepdims=True``), a 1x1 ``Conv2D`` and ``Multiply``, all of which tfmot already knows how to
prune and quantize (see :func:`channel_attention`).
"""
import kd_edge  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer

PACKAGE = "kd_edge"


DEFAULT_GATE_CLIP = 16.0


@keras.utils.register_keras_serializable(package=PACKAGE)
class SimpleGate(keras.layers.Layer, PrunableLayer):
    """NAFNet's SimpleGate: split the channels into two halves and multiply them (C -> C/2).

    The inputs are first clipped to [-clip, clip]. Without a normalisation layer the gate is quadratic, and
    chained gates can run away on rare inputs: a trained edge-m saw gate inputs of at most 4.7 on 39 of 40
    training batches, while on the 40th the last decoder gates went 13 -> 66 -> 1.1e3 -> 5.6e5 -> 3.2e18 and the
    output overflowed (the NaN/Inf losses that stopped its training). The clip (default 16, far above the normal
    range, so ordinary outputs are unchanged) bounds every gate's output by clip^2: no overflow in float32, nor in
    fp16 on mobile GPUs. It converts to MINIMUM/MAXIMUM (TFLite), Clip (ONNX) and clip (Core ML), all int8-safe.
    ``clip=None`` turns it off.
    """

    def __init__(self, clip=DEFAULT_GATE_CLIP, **kwargs):
        super().__init__(**kwargs)
        self.clip = None if clip is None else float(clip)

    def get_prunable_weights(self):
        return []

    def call(self, inputs):
        if self.clip is not None:
            inputs = tf.clip_by_value(inputs, -self.clip, self.clip)
        a, b = tf.split(inputs, 2, axis=-1)
        return a * b

    def get_config(self):
        return {**super().get_config(), "clip": self.clip}

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % 2:
            raise ValueError(f"{self.name}: SimpleGate needs an even channel count, got {channels}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        if shape[-1] is not None:
            shape[-1] //= 2
        return tf.TensorShape(shape)


@keras.utils.register_keras_serializable(package=PACKAGE)
class DepthToSpace(keras.layers.Layer, PrunableLayer):
    """Pixel shuffle: ``tf.nn.depth_to_space`` (N, H, W, C*b*b) -> (N, H*b, W*b, C), NHWC."""

    def get_prunable_weights(self):
        return []

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)
        if self.block_size < 2:
            raise ValueError(f"DepthToSpace block_size must be >= 2, got {block_size}")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.block_size**2):
            raise ValueError(
                f"{self.name}: DepthToSpace({self.block_size}) needs channels divisible by "
                f"{self.block_size ** 2}, got {channels}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = tf.TensorShape(input_shape).as_list()
        b = self.block_size
        return tf.TensorShape(
            [n, None if h is None else h * b, None if w is None else w * b, None if c is None else c // (b * b)]
        )

    def get_config(self):
        config = super().get_config()
        config["block_size"] = self.block_size
        return config


def channel_attention(x, channels, *, name, kernel_initializer="glorot_uniform"):
    """NAFNet's simplified channel attention from built-in layers: ``x * conv1x1(mean_hw(x))``.

    Layers are named ``<name>_pool``, ``<name>_conv`` and ``<name>_mul`` (the structured pruner keys on it).
    """
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    weights = keras.layers.Conv2D(channels, 1, kernel_initializer=kernel_initializer, name=f"{name}_conv")(pooled)
    return keras.layers.Multiply(name=f"{name}_mul")([x, weights])


CUSTOM_LAYERS = (SimpleGate, DepthToSpace)


def custom_objects():
    """Name -> class for every registered kd_edge layer (both the plain and the ``kd_edge>`` names)."""
    objects = {}
    for cls in CUSTOM_LAYERS:
        objects[cls.__name__] = cls
        objects[f"{PACKAGE}>{cls.__name__}"] = cls
    return objects
