"""NAFNet-style edge students (``edge-tiny``, ``edge-s``, ``edge-m``, ``edge-l``).

A U-Net of NAFNet blocks made only of ops that every mobile runtime has as a built-in:

* block = ``1x1 conv (C->2C)`` -> ``3x3 depthwise conv`` -> :class:`SimpleGate` (2C->C) ->
  simplified channel attention (global average pool, 1x1 conv, multiply) -> ``1x1 conv`` -> residual add,
  then a feed-forward half: ``1x1 conv (C->2C)`` -> SimpleGate -> ``1x1 conv`` -> residual add;
* down-sampling: a 2x2 convolution with stride 2 (channels doubled);
* up-sampling: a 1x1 convolution (channels x2) followed by :class:`DepthToSpace` (block 2), i.e. a
  pixel shuffle that halves the channels; the encoder skip is added (``Add``), never concatenated;
* global residual: ``output = input + predicted residual``, bounded (:class:`BoundedResidual`, named
  ``global_residual``): the residual is squashed with tanh so the output stays in [-0.25, 1.25] for any input.

No ``Conv2DTranspose``, no ``UpSampling2D``, no ``Lambda``: everything lowers to TFLite built-ins
(CONV_2D, DEPTHWISE_CONV_2D, MUL, ADD, MEAN, SPLIT, DEPTH_TO_SPACE), ONNX and Core ML ops.

Numerical safety for any input (``gate="tanh"``, ``output="bounded"``, the defaults of every fresh build):

* the first default student (product gates ``a * b``, plain ``Add`` global residual) gave raw outputs of
  -200..+150 on a real 271x311 face frame with a black microphone (input in [0, 1]): chained quadratic gates
  amplify whatever lies outside the training distribution, and nothing bounded the sum at the end. Clipping each
  gate's inputs at +-16 bounded each gate by 256, not the chain.
* the gate is now ``a * tanh(b)``: at most linear in its input (``|out| <= |a|``), so depth no longer compounds
  the growth, yet ``~ a * b`` near zero, so it keeps the product gate's multiplicative interaction; it costs one
  TANH per gate (a built-in with int8 kernels everywhere). The gate before it, ``a * sigmoid(b)`` (``gate="sigmoid"``,
  equally bounded), is mostly linear near zero and could hardly overfit 16 pairs: +1.3 dB where the tanh and
  product gates reached +5.2 and +4.8 dB in the same 800 steps (``benchmarks/results/gate_fit.json``). The
  embedded default models use tanh gates. A tanh-gate teacher trained on the first camera-model set gained 2.7x
  more on synthetic blur than the sigmoid one but no more on real photos
  (``benchmarks/results/realdata_tanh_defaults.json``); once the data was fixed (no defocus, soft targets; see
  ``kd_edge/weights/MODEL_CARD.md``) the tanh models gained on every real set. No input clip:
  the first sigmoid builds kept the product gates' clip at +-16, which lowers to int8 MINIMUM/MAXIMUM that
  LiteRT's XNNPACK delegate does not take, so the default student's full-int8 graph ran as 18 delegate partitions
  instead of 2; without the
  clip it is 13.6% faster at 2 threads (``benchmarks/int8_gate_clip.py``), with identical Keras outputs on every
  stress input. The sigmoid defaults were rewritten without it, weights untouched
  (:func:`kd_edge.models.gate_clip.rewrite_gate_clip`), and today's tanh defaults were trained without it; models
  saved with a clip keep it until rewritten.
* the channel attention is ``x * tanh(conv1x1(mean(x)))`` (``attention="tanh"``), not NAFNet's
  ``x * conv1x1(mean(x))`` (``attention="linear"``, every model trained before this option). The plain form is
  ``x`` times a linear function of its own mean: quadratic, so it compounds over depth as the product gates did,
  only later. On a 4-px checkerboard every embedded model of the linear form grew inside (v15 teacher 6.5e7; the
  v22 student 7.1e19 and its teacher 3.7e14, far past fp16's 65504) while its raw output stayed bounded by the
  output squash, and a student distilled 6,000 steps further gave NaN there (inf - inf). With the tanh every
  layer is at most linear in its input, so activations are bounded for any input in [0, 1] by the product of the
  layers' gains. Trained models of the linear form are rewritten by :mod:`kd_edge.models.attention_bound`
  (``kd-edge bound-attention``): ``x * c tanh(w / c)`` per layer, ``c`` a margin over the largest attention
  weight seen on calibration images, folded into the convolutions, so their outputs on photos barely change.
* the output is ``BoundedResidual``: ``x + tanh``-squashed residual that cannot leave [-0.25, 1.25]. This is a
  guarantee by construction, in float and (up to the output scale) in int8, not a property of the training data.
* measured on the adversarial list of :mod:`kd_edge.stress_inputs` (black, white, saturated colours, hard edges,
  noise, checkerboards, real photos): ``benchmarks/results/realdata_*.json`` holds the raw output ranges of the
  old and new defaults in Keras, tflite-fp16 and tflite-int8.
* ``gate="product"``, ``output="residual"`` rebuild the first design, ``gate="sigmoid"`` the second,
  ``attention="linear"`` NAFNet's attention of every design before this one (old ``.keras`` files load unchanged).

Normalisation: none. NAFNet uses LayerNorm; we drop it on purpose:

* LayerNorm (and instance norm) computes a variance over large activations, which overflows or loses
  precision in fp16 on mobile GPU delegates, and tfmot has no quantized LayerNorm, so it blocks QAT and
  leaves a float island in an int8 model.
* BatchNorm would fold into the convolutions at conversion, but NAFNet blocks have a depthwise conv and a
  gate between their convolutions, and small-batch patch training makes its statistics noisy.
* Instead each residual branch ends in a 1x1 convolution whose kernel starts small
  (``VarianceScaling(scale=residual_init_scale)``, 0.1 by default: the "SkipInit/Fixup" idea), so every
  block starts close to the identity and the network trains stably without normalisation. The branch
  scale is learnt through that convolution itself: no extra per-channel scale layer that the converters,
  pruning or QAT would have to special-case.

Input size: fully convolutional, any ``H x W`` that is a multiple of the stride ``2 ** levels``
(``levels = len(enc_blocks)``: 4 for edge-s/m/l, 2 for edge-tiny). With a fixed ``input_size`` the
builder checks this and raises :class:`kd_edge.errors.KdEdgeError`; at run time pad to a multiple
(:func:`kd_edge.models.registry.check_input_size`) or tile.

Predictable layer names (for feature distillation and pruning): ``intro``, ``enc{i}_b{j}_*``,
``enc{i}_out`` (the last block's final ``Add`` at encoder level ``i``), ``down{i}``, ``middle_b{j}_*``, ``bottleneck_out``,
``up{i}_conv`` / ``up{i}_shuffle`` / ``up{i}_skip``, ``dec{i}_b{j}_*``, ``dec{i}_out``, ``ending``,
``global_residual``.
"""
import kd_edge  # noqa: F401

import tf_keras as keras

from kd_edge.models.layers import DEFAULT_GATE_CLIP, BoundedResidual, DepthToSpace, SimpleGate, channel_attention
from kd_edge.models.registry import EDGE_BLOCK_DEFAULTS

EDGE_DEFAULTS = {
    "width": 16,
    "enc_blocks": [1, 1, 1, 2],
    "middle_blocks": 2,
    "dec_blocks": [1, 1, 1, 1],
    **EDGE_BLOCK_DEFAULTS,
}
GATES = SimpleGate.MODES
ATTENTIONS = ("tanh", "linear")
OUTPUTS = ("bounded", "residual")


def gate_clip(gate):
    """The gates' input clip: none for the bounded tanh and sigmoid gates (int8 MINIMUM/MAXIMUM split the XNNPACK
    graph), +-16 for the product gates of the first design (unchanged, so it rebuilds as it was)."""
    return None if gate in SimpleGate.BOUNDED_MODES else DEFAULT_GATE_CLIP


def _init(scale):
    return keras.initializers.VarianceScaling(scale=scale, mode="fan_in", distribution="truncated_normal")


def naf_block(x, channels, *, name, dw_expand=EDGE_DEFAULTS["dw_expand"], dw_kernel=EDGE_DEFAULTS["dw_kernel"],
              ffn_expand=EDGE_DEFAULTS["ffn_expand"], residual_init_scale=EDGE_DEFAULTS["residual_init_scale"],
              gate=EDGE_DEFAULTS["gate"], attention=EDGE_DEFAULTS["attention"], out_name=None):
    """One NAFNet block without normalisation (see the module docstring); returns a tensor of ``channels``.

    ``out_name`` renames the block's final ``Add`` (used for ``enc{i}_out``, ``bottleneck_out``, ``dec{i}_out``).
    """
    dw_ch = channels * dw_expand
    y = keras.layers.Conv2D(dw_ch, 1, name=f"{name}_pw1")(x)
    y = keras.layers.DepthwiseConv2D(dw_kernel, padding="same", name=f"{name}_dw")(y)
    y = SimpleGate(mode=gate, clip=gate_clip(gate), name=f"{name}_gate1")(y)
    y = channel_attention(y, dw_ch // 2, name=f"{name}_sca", bounded=attention == "tanh")
    y = keras.layers.Conv2D(channels, 1, kernel_initializer=_init(residual_init_scale), name=f"{name}_pw2")(y)
    x = keras.layers.Add(name=f"{name}_add1")([x, y])

    ffn_ch = channels * ffn_expand
    y = keras.layers.Conv2D(ffn_ch, 1, name=f"{name}_ffn1")(x)
    y = SimpleGate(mode=gate, clip=gate_clip(gate), name=f"{name}_gate2")(y)
    y = keras.layers.Conv2D(channels, 1, kernel_initializer=_init(residual_init_scale), name=f"{name}_ffn2")(y)
    return keras.layers.Add(name=out_name or f"{name}_add2")([x, y])


def build_edge(*, input_size=None, name="edge", width, enc_blocks, middle_blocks, dec_blocks,
               dw_expand=EDGE_DEFAULTS["dw_expand"], dw_kernel=EDGE_DEFAULTS["dw_kernel"],
               ffn_expand=EDGE_DEFAULTS["ffn_expand"], residual_init_scale=EDGE_DEFAULTS["residual_init_scale"],
               gate=EDGE_DEFAULTS["gate"], attention=EDGE_DEFAULTS["attention"], output=EDGE_DEFAULTS["output"]):
    """Build a NAFNet-style edge U-Net. ``input_size`` None -> (None, None, 3), else (H, W) already checked."""
    enc_blocks = [int(n) for n in enc_blocks]
    dec_blocks = [int(n) for n in dec_blocks]
    if len(enc_blocks) != len(dec_blocks):
        raise ValueError(f"enc_blocks and dec_blocks need the same length, got {enc_blocks} and {dec_blocks}")
    if any(n < 1 for n in enc_blocks + dec_blocks) or int(middle_blocks) < 1:
        raise ValueError("every level needs at least one block (enc_blocks, dec_blocks, middle_blocks >= 1)")
    if int(width) < 2 or int(width) % 2:
        raise ValueError(f"width must be an even number >= 2, got {width}")
    if int(dw_expand) < 1 or int(ffn_expand) < 1:
        raise ValueError("dw_expand and ffn_expand must be >= 1")
    if int(dw_kernel) < 1 or int(dw_kernel) % 2 == 0:
        raise ValueError(f"dw_kernel must be an odd number >= 1, got {dw_kernel}")
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    kw = {"dw_expand": int(dw_expand), "dw_kernel": int(dw_kernel), "ffn_expand": int(ffn_expand),
          "residual_init_scale": float(residual_init_scale), "gate": gate, "attention": attention}

    h, w = (None, None) if input_size is None else input_size
    inputs = keras.Input((h, w, 3), name="input")
    x = keras.layers.Conv2D(width, 3, padding="same", name="intro")(inputs)
    ch = int(width)
    skips = []
    for i, n in enumerate(enc_blocks):
        for j in range(n):
            x = naf_block(x, ch, name=f"enc{i}_b{j}", out_name=f"enc{i}_out" if j == n - 1 else None, **kw)
        skips.append(x)
        x = keras.layers.Conv2D(ch * 2, 2, strides=2, name=f"down{i}")(x)
        ch *= 2
    middle_blocks = int(middle_blocks)
    for j in range(middle_blocks):
        x = naf_block(x, ch, name=f"middle_b{j}", out_name="bottleneck_out" if j == middle_blocks - 1 else None, **kw)
    for i in reversed(range(len(dec_blocks))):
        x = keras.layers.Conv2D(ch * 2, 1, use_bias=False, name=f"up{i}_conv")(x)
        x = DepthToSpace(2, name=f"up{i}_shuffle")(x)
        ch //= 2
        x = keras.layers.Add(name=f"up{i}_skip")([x, skips[i]])
        n = dec_blocks[i]
        for j in range(n):
            x = naf_block(x, ch, name=f"dec{i}_b{j}", out_name=f"dec{i}_out" if j == n - 1 else None, **kw)
    residual = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=_init(residual_init_scale),
                                   name="ending")(x)
    if output == "bounded":
        outputs = BoundedResidual(name="global_residual")([inputs, residual])
    else:
        outputs = keras.layers.Add(name="global_residual")([inputs, residual])
    return keras.Model(inputs, outputs, name=name)
