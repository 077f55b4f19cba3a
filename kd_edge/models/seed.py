"""The seed report's reference networks: ``seed-teacher`` (~21.4M params) and ``seed-student`` (~15.7M).

The report describes "residual blocks" and a "bottleneck design" in an encoder-decoder; these builders
follow that description with standard Keras layers only (Conv2D, BatchNormalization, ReLU, Add) plus the
registered :class:`~kd_edge.models.layers.DepthToSpace` for up-sampling:

* stem: 3x3 conv + BN + ReLU at ``base_width`` channels;
* encoder level ``i`` (``base_width * 2**i`` channels): ResNet bottleneck blocks
  (1x1 reduce /4, 3x3, 1x1 expand, BN after each conv, identity shortcut, ReLU after the add), then a
  3x3 stride-2 conv + BN + ReLU that doubles the channels;
* middle: bottleneck blocks at the deepest width;
* decoder level ``i``: 1x1 conv to ``4 * C/2`` + DepthToSpace(2) (pixel shuffle), add the encoder skip,
  bottleneck blocks;
* a 3x3 conv to 3 channels and a global residual ``Add`` with the input.

Parameter counts are fitted to the report (21.4M and 15.7M within 0.5%); the networks are reference
points meant for GPU training, not for phones. Stride ``2 ** len(enc_blocks)`` (16 by default).
Layer names follow the edge models: ``enc{i}_out``, ``bottleneck_out``, ``dec{i}_out``, ``global_residual``.
"""
import kd_edge  # noqa: F401

import tf_keras as keras

from kd_edge.models.layers import DepthToSpace

SEED_TEACHER = {
    "base_width": 64,
    "enc_blocks": [2, 2, 2, 2],
    "middle_blocks": 5,
    "dec_blocks": [1, 1, 2, 4],
    "bottleneck_ratio": 4,
}
SEED_STUDENT = {
    "base_width": 64,
    "enc_blocks": [1, 1, 1, 1],
    "middle_blocks": 1,
    "dec_blocks": [1, 1, 1, 1],
    "bottleneck_ratio": 4,
}


def conv_bn(x, filters, kernel, *, name, strides=1, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def bottleneck_block(x, channels, *, name, ratio=4, out_name=None):
    """ResNet bottleneck with an identity shortcut: 1x1 (C -> C/ratio), 3x3, 1x1 (-> C), add, ReLU."""
    inner = max(1, channels // ratio)
    y = conv_bn(x, inner, 1, name=f"{name}_reduce")
    y = conv_bn(y, inner, 3, name=f"{name}_conv3")
    y = conv_bn(y, channels, 1, name=f"{name}_expand", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=out_name or f"{name}_relu")(y)


def build_seed(*, input_size=None, name="seed", base_width, enc_blocks, middle_blocks, dec_blocks,
               bottleneck_ratio=4):
    enc_blocks = [int(n) for n in enc_blocks]
    dec_blocks = [int(n) for n in dec_blocks]
    if len(enc_blocks) != len(dec_blocks):
        raise ValueError(f"enc_blocks and dec_blocks need the same length, got {enc_blocks} and {dec_blocks}")
    if any(n < 1 for n in enc_blocks + dec_blocks) or int(middle_blocks) < 1:
        raise ValueError("every level needs at least one block (enc_blocks, dec_blocks, middle_blocks >= 1)")
    ratio = int(bottleneck_ratio)
    h, w = (None, None) if input_size is None else input_size
    inputs = keras.Input((h, w, 3), name="input")
    ch = int(base_width)
    x = conv_bn(inputs, ch, 3, name="stem")
    skips = []
    for i, n in enumerate(enc_blocks):
        for j in range(n):
            x = bottleneck_block(x, ch, name=f"enc{i}_b{j}", ratio=ratio, out_name=f"enc{i}_out" if j == n - 1 else None)
        skips.append(x)
        x = conv_bn(x, ch * 2, 3, strides=2, name=f"down{i}")
        ch *= 2
    middle_blocks = int(middle_blocks)
    for j in range(middle_blocks):
        x = bottleneck_block(x, ch, name=f"middle_b{j}", ratio=ratio,
                             out_name="bottleneck_out" if j == middle_blocks - 1 else None)
    for i in reversed(range(len(dec_blocks))):
        x = keras.layers.Conv2D(ch * 2, 1, name=f"up{i}_conv")(x)
        x = DepthToSpace(2, name=f"up{i}_shuffle")(x)
        ch //= 2
        x = keras.layers.Add(name=f"up{i}_skip")([x, skips[i]])
        n = dec_blocks[i]
        for j in range(n):
            x = bottleneck_block(x, ch, name=f"dec{i}_b{j}", ratio=ratio, out_name=f"dec{i}_out" if j == n - 1 else None)
    residual = keras.layers.Conv2D(3, 3, padding="same", name="ending")(x)
    outputs = keras.layers.Add(name="global_residual")([inputs, residual])
    return keras.Model(inputs, outputs, name=name)
