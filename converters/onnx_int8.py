"""The onnx-int8 recipe: which ONNX Runtime quantization settings, and why (measured, see README "Convert").

Settings (``SETTINGS``), chosen by measurement on the default student (edge-s, 256x256, 2 threads,
``benchmarks/onnx_int8_speed.py``):

- **QDQ, uint8 activations, int8 per-channel weights (u8s8).** With int8 activations ONNX Runtime 1.32's CPU EP
  fuses only 1 of 20 residual Adds and 8 of 24 Muls into QLinearAdd/QLinearMul, so the 20 convolutions fed by
  them stay float Conv between DequantizeLinear/QuantizeLinear (56 QLinearConv with uint8, 36 with int8), which
  made int8 slower than fp32. u8u8 fuses as much but is slower; QOperator is no faster than QDQ.
- **reduce_range: 7-bit weights** ([-64, 64]). ONNX Runtime executes u8s8 on x86 without VNNI (AVX2, AVX-512F)
  with ``vpmaddubsw``, which adds pairs of uint8 x int8 products into a saturating int16: with 8-bit weights a
  pair can reach 2 x 255 x 127 = 64770 and is clipped to 32767 (issue 14: 27.4 dB instead of 37 dB on a Zen 3).
  With 7-bit weights the worst pair is 2 x 255 x 64 = 32640 <= 32767 for any input, so the integer result is the
  same on AVX2, AVX-512, VNNI and ARM (``int8_saturation.pair_bounds`` proves it per weight tensor; int8 (s8)
  activations are shifted to uint8 by ONNX Runtime's QDQS8ToU8 transformer on x86, so they would not escape it).
  Measured cost of the 8th bit on a VNNI host: none (37.65 vs 37.54 dB parity on edge-s): one setting is
  accurate everywhere, so there is no per-ISA option.
- **Clip instead of Min/Max.** tf2onnx writes ``tf.clip_by_value`` (the SimpleGate clip) as Min then Max;
  quantize_static keeps those in float between DequantizeLinear/QuantizeLinear. As one Clip the quantizer
  removes it (the QuantizeLinear after it saturates at the calibrated range, inside the clip bounds): same
  function, 32 float ops and 16 DQ/Q pairs fewer.
"""
import logging

import numpy as np

SETTINGS = {
    "format": "QDQ",
    "activation_type": "uint8",
    "weight_type": "int8",
    "per_channel": True,
    "reduce_range": True,
    "weight_bits": 7,
    "calibration_method": "MinMax",
}

ASSUMES = ("integer kernels of any ISA (x86 AVX2/AVX-512 with or without VNNI, ARM): 7-bit weights keep the "
           "u8s8 pairwise int16 sums of vpmaddubsw (x86 without VNNI) below 32767, so no saturation")


def _constant(proto, name):
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def fold_min_max_to_clip(proto) -> int:
    """Rewrite each Min(x, hi) -> Max(., lo) (or Max then Min) with one-element constants into Clip(x, lo, hi),
    in place. Only where the first op's output feeds the second alone and the constants do not broadcast x to
    a higher rank. Returns how many pairs were folded."""
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    graph = proto.graph
    nodes = list(graph.node)
    reader_of = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            reader_of.setdefault(name, []).append(index)
    outputs = {o.name for o in graph.output}
    folded, drop, replace = 0, set(), {}
    for index, first in enumerate(nodes):
        if first.op_type not in ("Min", "Max") or len(first.input) != 2 or index in drop:
            continue
        after = reader_of.get(first.output[0], [])
        if len(after) != 1 or first.output[0] in outputs:
            continue
        second = nodes[after[0]]
        if {first.op_type, second.op_type} != {"Min", "Max"} or len(second.input) != 2 \
                or second.input[0] != first.output[0]:
            continue
        c1, c2 = _constant(proto, first.input[1]), _constant(proto, second.input[1])
        x = first.input[0]
        if c1 is None or c2 is None or c1.size != 1 or c2.size != 1 or x not in ranks \
                or max(c1.ndim, c2.ndim) > ranks[x]:
            continue
        hi, lo = (c1, c2) if first.op_type == "Min" else (c2, c1)
        lo, hi = float(lo.reshape(())), float(hi.reshape(()))
        if lo > hi:
            continue
        base = second.name or second.output[0]
        lo_name, hi_name = f"{base}/clip_min", f"{base}/clip_max"
        graph.initializer.extend([numpy_helper.from_array(np.array(lo, np.float32), lo_name),
                                  numpy_helper.from_array(np.array(hi, np.float32), hi_name)])
        # the Clip takes the second op's place: everything reading its output comes after it
        replace[after[0]] = helper.make_node("Clip", [x, lo_name, hi_name], [second.output[0]], name=f"{base}/Clip")
        drop.add(index)
        folded += 1
    if folded:
        kept = [replace.get(i, n) for i, n in enumerate(nodes) if i not in drop]
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused_initializers(graph)
    return folded


def _drop_unused_initializers(graph):
    used = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def quantize(fp32_path, out_path, images):
    """Static QDQ quantization of the fp32 ONNX file at ``fp32_path`` into ``out_path`` with ``SETTINGS``,
    calibrated on ``images`` (N x H x W x 3 float32)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"input": np.asarray(img[None], np.float32)} for img in images])

        def get_next(self):
            return next(self._it, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static logs a generic "consider pre-processing" hint on root
    try:
        quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=SETTINGS["per_channel"], reduce_range=SETTINGS["reduce_range"])
    finally:
        root.setLevel(level)
