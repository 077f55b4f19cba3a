"""Does an int8 ONNX graph saturate ONNX Runtime's u8s8 kernels on x86 without VNNI? A numpy emulation.

On AVX2 / AVX-512F without VNNI, ONNX Runtime (MLAS) multiplies uint8 activations by int8 weights with
``vpmaddubsw``: each pair of adjacent products along the reduction axis K is summed into an int16 **with
saturation** (then widened to int32). int8 activations are first shifted to uint8 (+128) by ONNX Runtime's
QDQS8ToU8 transformer, so the same applies to them. On VNNI (``vpdpbusd``), ARM and in XNNPACK the sums are
exact int32. Depthwise convolutions use a separate widening kernel and are not affected.

Three checks, all on the QDQ graph that ``quantize_static`` writes (before ONNX Runtime's fusions):

* :func:`pair_bounds` - static worst case over *any* input: for every dense Conv weight tensor, the largest
  pair sum 255 x (sum of the two largest same-signed weights of an output channel). Below 32767 means no
  input can saturate (holds by construction for 7-bit weights: 2 x 255 x 64 = 32640).
* :func:`probe_saturation` - what real inputs do: runs the graph on ``images`` with ONNX Runtime (fusions off,
  so every QuantizeLinear's uint8/int8 output is observable), rebuilds each dense Conv's im2col matrix in
  MLAS's NHWC order (kh, kw, cin; padding = the zero point), pairs K as (0,1), (2,3), ... and counts the pair
  sums outside int16.

* :func:`emulate_without_vnni` - the whole graph's output as such a CPU computes it: every dense Conv by
  saturating pair sums (then exact int32 accumulation, zero-point correction, requantisation scale and bias), every
  other op in ONNX Runtime. Without saturation it matches ONNX Runtime here (57 dB on edge-s, identical on edge-tiny).

This is an emulation of one documented kernel behaviour (pairing assumed in MLAS's NHWC im2col order), not a run on
a non-VNNI CPU.
"""
import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767


def _model(model):
    import onnx

    return onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model


def _attrs(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _quantized_convs(proto):
    """Yield (conv node, int8 weight array [M, C/g, kh, kw], activation Q node or None, attrs) for every Conv
    whose weight is DequantizeLinear(int8/uint8 initializer)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        wdq = producer.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        weight = numpy_helper.to_array(inits[wdq.input[0]])
        if weight.dtype not in (np.int8, np.uint8):
            continue
        adq = producer.get(node.input[0])
        aq = producer.get(adq.input[0]) if adq is not None and adq.op_type == "DequantizeLinear" else None
        if aq is not None and aq.op_type != "QuantizeLinear":
            aq = None
        yield node, weight, adq, aq, _attrs(node)


def _is_depthwise(weight, attrs):
    group = int(attrs.get("group", 1))
    return group > 1 and weight.shape[1] == 1


def _k_major(weight):
    """[M, C, kh, kw] -> [M, K] with K ordered (kh, kw, c), MLAS's NHWC im2col order."""
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1).astype(np.int32)


def _pad_even(mat, axis, value=0):
    if mat.shape[axis] % 2 == 0:
        return mat
    pad = [(0, 0)] * mat.ndim
    pad[axis] = (0, 1)
    return np.pad(mat, pad, constant_values=value)


def pair_bounds(model) -> dict:
    """Worst-case int16 pair sums over any uint8 input for every dense quantized Conv (weights only)."""
    proto = _model(model)
    layers = []
    for node, weight, _adq, _aq, attrs in _quantized_convs(proto):
        if _is_depthwise(weight, attrs):
            continue
        w = weight.astype(np.int32)
        if weight.dtype == np.uint8:  # u8u8 path widens to 16 bits (vpmaddwd): no int16 pair sums
            layers.append({"node": node.name, "kernel": "u8u8", "max_pair": None, "min_pair": None, "safe": True})
            continue
        flat = w.reshape(w.shape[0], -1)
        top2 = np.sort(np.clip(flat, 0, None), axis=1)[:, -2:].sum(axis=1)
        bottom2 = np.sort(np.clip(flat, None, 0), axis=1)[:, :2].sum(axis=1)
        hi, lo = int(255 * top2.max()), int(255 * bottom2.min())
        layers.append({"node": node.name, "kernel": "u8s8", "weight_range": [int(w.min()), int(w.max())],
                       "max_pair": hi, "min_pair": lo, "safe": bool(hi <= INT16_MAX and lo >= INT16_MIN)})
    pairs = [layer for layer in layers if layer["max_pair"] is not None]
    return {"method": "255 x the two largest same-signed int8 weights of each output channel (any input)",
            "max_pair": max((layer["max_pair"] for layer in pairs), default=0),
            "min_pair": min((layer["min_pair"] for layer in pairs), default=0),
            "dense_convs": len(layers), "unsafe_convs": sum(not layer["safe"] for layer in layers),
            "safe": all(layer["safe"] for layer in layers), "layers": layers}


def _im2col_u8(a, weight_shape, attrs, zero_point):
    """uint8 activations [N, C, H, W] -> [N*Ho*Wo, K] int32 in (kh, kw, c) order, padded with the zero point."""
    n, c, h, w = a.shape
    kh, kw = weight_shape[2], weight_shape[3]
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pads = attrs.get("pads", [0, 0, 0, 0])
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("auto_pad convolutions are not emulated")
    x = np.pad(a.transpose(0, 2, 3, 1), ((0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)),
               constant_values=zero_point)
    ho = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    cols = [x[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw, :]
            for i in range(kh) for j in range(kw)]
    return np.concatenate(cols, axis=-1).reshape(n * ho * wo, kh * kw * c).astype(np.int32)


def probe_saturation(model, images, input_name="input") -> dict:
    """Count int16 pair-sum saturations of every dense quantized Conv on ``images`` (see module doc)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    proto = _model(model)
    convs = [c for c in _quantized_convs(proto) if not _is_depthwise(c[1], c[4]) and c[3] is not None]
    watched = onnx.ModelProto()
    watched.CopyFrom(proto)
    have = {o.name for o in watched.graph.output}
    for _node, _w, _adq, aq, _attrs in convs:
        if aq.output[0] not in have:
            watched.graph.output.append(onnx.ValueInfoProto(name=aq.output[0]))
            have.add(aq.output[0])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(watched.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    totals = {"pairs": 0, "saturated": 0}
    layers = {}
    for image in np.asarray(images, np.float32):
        values = dict(zip(names, session.run(names, {input_name: image[None]})))
        for node, weight, _adq, aq, attrs in convs:
            q = values[aq.output[0]]
            zp = inits.get(aq.input[2]) if len(aq.input) > 2 else None
            zero = int(np.asarray(zp).reshape(-1)[0]) if zp is not None else 0
            if q.dtype == np.int8:  # QDQS8ToU8: s8 activations run as u8 (+128, zero point +128)
                q = (q.astype(np.int16) + 128).astype(np.uint8)
                zero += 128
            if weight.dtype == np.uint8:
                continue  # u8u8: 16-bit widening, no int16 pair sums
            group = int(attrs.get("group", 1))
            cin = q.shape[1] // group
            m_per = weight.shape[0] // group
            rec = layers.setdefault(node.name, {"node": node.name, "pairs": 0, "saturated": 0,
                                                "max_pair": INT16_MIN, "min_pair": INT16_MAX})
            for g in range(group):
                cols = _pad_even(_im2col_u8(q[:, g * cin : (g + 1) * cin], weight.shape, attrs, zero), axis=1)
                w = _pad_even(_k_major(weight[g * m_per : (g + 1) * m_per]), axis=1)
                for j in range(0, cols.shape[1], 2):
                    sums = cols[:, j : j + 2] @ w[:, j : j + 2].T
                    rec["pairs"] += sums.size
                    rec["saturated"] += int(np.count_nonzero((sums > INT16_MAX) | (sums < INT16_MIN)))
                    rec["max_pair"] = max(rec["max_pair"], int(sums.max()))
                    rec["min_pair"] = min(rec["min_pair"], int(sums.min()))
    for rec in layers.values():
        totals["pairs"] += rec["pairs"]
        totals["saturated"] += rec["saturated"]
    return {"method": "u8 x s8 pair sums (K order kh, kw, cin) of every dense Conv on the given images, emulated "
                      "in numpy; counts those outside int16 (vpmaddubsw saturation on x86 without VNNI)",
            "images": int(len(images)), "dense_convs": len(layers), **totals,
            "saturated_convs": sum(r["saturated"] > 0 for r in layers.values()),
            "saturation_free": totals["saturated"] == 0, "layers": list(layers.values())}


# ------------------------------------------------------------------------------ end-to-end emulation without VNNI
def _bias(proto, node, inits):
    """The float bias of a QDQ Conv (DequantizeLinear of an int32 initializer), or None."""
    if len(node.input) < 3 or not node.input[2]:
        return None
    producer = {o: n for n in proto.graph.node for o in n.output}
    dq = producer.get(node.input[2])
    if dq is None:
        return inits[node.input[2]].astype(np.float64)
    q, scale = inits[dq.input[0]].astype(np.float64), inits[dq.input[1]].astype(np.float64)
    zero = inits[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    return (q - zero) * scale


def _saturating_conv(q, zero, scale_a, weight, scale_w, bias, attrs):
    """A dense Conv as ONNX Runtime's u8s8 kernel computes it on x86 without VNNI: int16-saturated pair sums
    (K order kh, kw, cin), exact int32 accumulation, zero-point correction, float requantisation scale and bias."""
    group = int(attrs.get("group", 1))
    n, c, h, w = q.shape
    cin, m_per = c // group, weight.shape[0] // group
    outs = []
    for g in range(group):
        cols = _pad_even(_im2col_u8(q[:, g * cin : (g + 1) * cin], weight.shape, attrs, zero), axis=1)
        wk = _pad_even(_k_major(weight[g * m_per : (g + 1) * m_per]), axis=1)
        total = cols.astype(np.float64) @ wk.T.astype(np.float64)
        pos, neg = np.clip(wk, 0, None), np.clip(wk, None, 0)
        for j in range(0, wk.shape[1], 2):
            can = (255 * pos[:, j : j + 2].sum(1) > INT16_MAX) | (255 * neg[:, j : j + 2].sum(1) < INT16_MIN)
            if not can.any():
                continue
            pair = cols[:, j : j + 2].astype(np.float32) @ wk[can, j : j + 2].T.astype(np.float32)
            total[:, can] -= pair - np.clip(pair, INT16_MIN, INT16_MAX)
        total -= zero * wk.sum(axis=1)[None, :]
        outs.append(total)
    acc = np.concatenate(outs, axis=1)
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pads = attrs.get("pads", [0, 0, 0, 0])
    kh, kw = weight.shape[2], weight.shape[3]
    ho = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    y = acc * (scale_a * np.asarray(scale_w, np.float64).reshape(1, -1))
    if bias is not None:
        y = y + bias.reshape(1, -1)
    return y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2).astype(np.float32)


def emulate_without_vnni(model, images, input_name="input"):
    """The QDQ graph's output on ``images`` as x86 without VNNI would compute it: every dense quantized Conv is
    replaced by :func:`_saturating_conv`; everything else runs in ONNX Runtime (fusions off, so QuantizeLinear
    outputs are observable). The cut graph is run once per dense Conv in topological order (each run makes the
    next Conv's input final). Depthwise convolutions run unchanged (their kernel widens, no pair sums)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    proto = _model(model)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [c for c in _quantized_convs(proto) if not _is_depthwise(c[1], c[4]) and c[3] is not None
             and c[1].dtype == np.int8]
    cut = onnx.ModelProto()
    cut.CopyFrom(proto)
    names = {c[0].output[0] for c in convs}
    kept = [n for n in cut.graph.node if n.output[0] not in names]
    del cut.graph.node[:]
    cut.graph.node.extend(kept)
    for node, *_ in convs:
        cut.graph.input.append(onnx.ValueInfoProto(name=node.output[0]))
    final = [o.name for o in cut.graph.output]
    for _node, _w, _adq, aq, _attrs in convs:
        if aq.output[0] not in {o.name for o in cut.graph.output}:
            cut.graph.output.append(onnx.ValueInfoProto(name=aq.output[0]))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(cut.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    inferred = onnx.shape_inference.infer_shapes(proto)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    results = []
    for image in np.asarray(images, np.float32):
        feed = {input_name: image[None]}
        for node, *_ in convs:  # placeholders until each conv is emulated (any finite value: not read before)
            feed[node.output[0]] = np.zeros([d or 1 for d in dims[node.output[0]]], np.float32)
        for node, weight, _adq, aq, attrs in convs:
            values = dict(zip(out_names, session.run(out_names, feed)))
            q = values[aq.output[0]]
            zero = int(np.asarray(inits[aq.input[2]]).reshape(-1)[0]) if len(aq.input) > 2 else 0
            if q.dtype == np.int8:
                q = (q.astype(np.int16) + 128).astype(np.uint8)
                zero += 128
            wdq = next(n for n in proto.graph.node if n.output and n.output[0] == node.input[1])
            feed[node.output[0]] = _saturating_conv(q, zero, float(np.asarray(inits[aq.input[1]]).reshape(-1)[0]),
                                                    weight, inits[wdq.input[1]], _bias(proto, node, inits), attrs)
        results.append(dict(zip(out_names, session.run(out_names, feed)))[final[0]][0])
    return np.stack(results)
