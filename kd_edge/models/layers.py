"""Registered custom layers of the model zoo (no ``Lambda`` anywhere).

Every layer here is registered with ``tf_keras.utils.register_keras_serializable(package="kd_edge")``
so that ``.keras`` files load with ``safe_mode=True`` and tfmot can clone models that use them.
None of them has weights: they are tfmot ``PrunableLayer``s with no prunable weights (so
``prune_low_magnitude(model)`` accepts a whole zoo model) and quantization treats them as pass-through
or output-quantized (see :mod:`kd_edge.models.quantize_support`). Each lowers to TFLite built-ins:

=================  =====================================  ==========================
layer              TensorFlow op                          TFLite built-in
=================  =====================================  ==========================
SimpleGate         split channels in two halves, a*sig(b)  SPLIT (or 2x SLICE) + LOGISTIC + MUL
DepthToSpace       ``tf.nn.depth_to_space``                 DEPTH_TO_SPACE
BoundedResidual    x + squashed residual (tanh)             TANH + RELU + SUB + MUL + ADD
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
    """NAFNet's gate: split the channels into two halves ``a`` and ``b`` and combine them (C -> C/2).

    ``mode="product"`` is NAFNet's SimpleGate ``a * b``; ``mode="tanh"`` is the bounded gate ``a * tanh(b)`` that
    the current zoo builds and the embedded default models use; ``mode="sigmoid"`` is the bounded gate
    ``a * sigmoid(b)`` (a GLU) of the previous default models (see :mod:`kd_edge.models.edge` for the measurements behind the choice). The inputs are first clipped to
    [-clip, clip] when ``clip`` is set.

    Why the product gate was replaced: without a normalisation layer it is quadratic, and chained gates run
    away on inputs unlike the training data. A trained edge-m saw gate inputs of at most 4.7 on 39 of 40 training
    batches, while on the 40th the last decoder gates went 13 -> 66 -> 1.1e3 -> 5.6e5 -> 3.2e18 (the NaN/Inf losses
    that stopped its training); the clip at 16 bounds each gate by 256 but not the chain, and the default student
    built that way gave raw outputs of -200..+150 on dark real photos. ``a * sigmoid(b)`` and ``a * tanh(b)`` are at
    most linear in their input (|out| <= |a|), so a chain of gates grows no faster than the convolutions around it.

    Why tanh and not sigmoid: near zero, where a network without normalisation starts and mostly stays,
    ``a * tanh(b) ~ a * b``, the product gate's multiplicative interaction, while ``a * sigmoid(b) ~ a / 2 + a * b / 4``
    is mostly linear. Overfitting 16 synthetic pairs in 800 steps (``benchmarks/gate_fit.py``,
    ``benchmarks/results/gate_fit.json``), the sigmoid-gate edge-s gained +1.3 dB, the tanh and product gates +5.2
    and +4.8 dB.

    Lowering: SPLIT + LOGISTIC or TANH + MUL (TFLite), Split/Sigmoid or Tanh/Mul (ONNX), the same in Core ML; the
    clip is MINIMUM/MAXIMUM, Clip, clip. All are int8-safe built-ins, but XNNPACK does not delegate int8
    MINIMUM/MAXIMUM, so the zoo builds bounded gates with ``clip=None`` (see :func:`kd_edge.models.edge.gate_clip`);
    the layer's own default stays +-16 (product gates, and configs without a ``clip`` key). Files saved before
    ``mode`` existed load as ``mode="product"``, their behaviour unchanged.
    """

    MODES = ("product", "sigmoid", "tanh")
    BOUNDED_MODES = ("sigmoid", "tanh")  # |out| <= |a|: need no input clip

    def __init__(self, clip=DEFAULT_GATE_CLIP, mode="product", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"SimpleGate mode must be one of {self.MODES}, got {mode!r}")
        self.clip = None if clip is None else float(clip)
        self.mode = mode

    @property
    def bounded(self):
        return self.mode in self.BOUNDED_MODES

    def get_prunable_weights(self):
        return []

    def call(self, inputs):
        if self.clip is not None:
            inputs = tf.clip_by_value(inputs, -self.clip, self.clip)
        a, b = tf.split(inputs, 2, axis=-1)
        if self.mode == "sigmoid":
            return a * tf.sigmoid(b)
        if self.mode == "tanh":
            return a * tf.tanh(b)
        return a * b

    def get_config(self):
        return {**super().get_config(), "clip": self.clip, "mode": self.mode}

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


@keras.utils.register_keras_serializable(package=PACKAGE)
class BoundedResidual(keras.layers.Layer, PrunableLayer):
    """The image output ``y = x + r`` with ``r`` squashed so that ``y`` stays in ``[low, high]`` for any ``x`` in [0, 1].

    Inputs ``[x, z]``: the input image ``x`` and the network's pre-activation ``z`` (same shape). With
    ``t = tanh(z)``::

        y = x + max(t, 0) * (high - x) + min(t, 0) * (x - low)

    so ``t = 0`` is the identity, ``t -> 1`` moves ``y`` towards ``high`` and ``t -> -1`` towards ``low``, and ``y``
    never leaves ``[low, high]`` (defaults -0.25 and 1.25) whatever ``z`` is: no input, however unlike the training
    data, can produce the -200..+150 raw outputs the unbounded global residual gave on dark photos. Near ``z = 0``
    the slope ``dy/dz`` is ``high - x`` or ``x - low`` (at least 0.25 for x in [0, 1]), so learning is not slowed.
    Lowers to TANH, RELU, SUB, MUL, ADD: TFLite built-ins, int8-safe (its output is quantized like an ``Add``).
    """

    def __init__(self, low=-0.25, high=1.25, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)
        if not self.low < 0.0 < 1.0 < self.high:
            raise ValueError(f"BoundedResidual needs low < 0 < 1 < high, got {low} and {high}")

    def get_prunable_weights(self):
        return []

    def call(self, inputs):
        x, z = inputs
        t = tf.tanh(z)
        up = tf.nn.relu(t)
        down = t - up  # min(t, 0)
        return x + up * (self.high - x) + down * (x - self.low)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


def channel_attention(x, channels, *, name, kernel_initializer="glorot_uniform", bounded=True):
    """NAFNet's simplified channel attention from built-in layers: ``x * tanh(conv1x1(mean_hw(x)))`` when
    ``bounded`` (the default), NAFNet's ``x * conv1x1(mean_hw(x))`` otherwise.

    The plain form is quadratic in ``x`` (``x`` times a linear function of its own mean), so a chain of blocks
    grows doubly exponentially on inputs unlike the training data; bounded, it is at most linear (``|out| <= |x|``;
    see :mod:`kd_edge.models.attention_bound`). The tanh is the convolution's own activation (TFLite: CONV_2D +
    TANH; tfmot quantizes it as a pre-activation quantizer). Layers are named ``<name>_pool``, ``<name>_conv`` and
    ``<name>_mul`` (the structured pruner keys on it).
    """
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    weights = keras.layers.Conv2D(channels, 1, kernel_initializer=kernel_initializer,
                                  activation="tanh" if bounded else None, name=f"{name}_conv")(pooled)
    return keras.layers.Multiply(name=f"{name}_mul")([x, weights])


CUSTOM_LAYERS = (SimpleGate, DepthToSpace, BoundedResidual)


def custom_objects():
    """Name -> class for every registered kd_edge layer (both the plain and the ``kd_edge>`` names)."""
    objects = {}
    for cls in CUSTOM_LAYERS:
        objects[cls.__name__] = cls
        objects[f"{PACKAGE}>{cls.__name__}"] = cls
    return objects
