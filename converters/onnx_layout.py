"""Layout clean-up of tf2onnx graphs: remove the NCHW<->NHWC transposes it leaves around SimpleGate.

tf2onnx turns the NHWC Keras graph into NCHW ONNX convolutions and its transpose optimiser cancels most of the
transposes in between, but not across a channel ``Split``: every SimpleGate (split the channels in two halves,
multiply them) keeps a ``Transpose`` to NHWC before the Split and one back to NCHW after the block, two full copies of
the activation per block (32 of the 34 transposes of the edge-s student). This pass rewrites

    Transpose(perm 0,2,3,1) -> Split(axis 3) -> Mul(half 0, [Sigmoid] half 1) -> Transpose(perm 0,3,1,2)
into
    Split(axis 1) -> Mul(half 0, [Sigmoid] half 1)

and, when the gate feeds simplified channel attention before the transpose back
(``g * Reshape([Tanh](Conv1x1(Reshape(ReduceMean(g, axes 1,2)))))``, the Tanh of the bounded attention of today's
builds), moves that tail to NCHW too: the mean over axes 2,3 and the attention vector straight from the 1x1
convolution (or its Tanh). Only patterns whose intermediate tensors nothing else
reads are touched. The result is the same function (the converter's parity gate checks it against the Keras model
like any artifact); only the memory layout changes.
"""
from __future__ import annotations

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def _attr(node, name, default=None):
    """The value of attribute ``name`` of ``node`` (a list for ints), or ``default``."""
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _set_attr(node, name, value):
    """Replace (or add) attribute ``name`` of ``node``."""
    import onnx

    for attr in list(node.attribute):
        if attr.name == name:
            node.attribute.remove(attr)
    node.attribute.append(onnx.helper.make_attribute(name, value))


def _const(graph, name):
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def fold_gate_transposes(model):
    """Rewrite ``model`` (an onnx ModelProto, in place) as above; returns the number of Transposes removed."""
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def users(tensor):
        return [] if tensor in graph_outputs else consumers.get(tensor, [])

    def only_consumer(tensor, op_type=None):
        found = users(tensor)
        if len(found) != 1 or (op_type and found[0].op_type != op_type):
            return None
        return found[0]

    def is_to_nchw(node):
        return node is not None and node.op_type == "Transpose" and _attr(node, "perm") == TO_NCHW

    def attention_tail(gate):
        """(mean, reshape_out, conv, mul, squash) of ``gate * Reshape([squash](Conv(Reshape(ReduceMean(gate)))))``,
        squash a Tanh or Sigmoid or None; None when the pattern is not there."""
        found = users(gate.output[0])
        if len(found) != 2 or {n.op_type for n in found} != {"ReduceMean", "Mul"}:
            return None
        mean = next(n for n in found if n.op_type == "ReduceMean")
        scale = next(n for n in found if n.op_type == "Mul")
        if len(mean.input) != 1 or sorted(_attr(mean, "axes", [])) != [1, 2] or _attr(mean, "keepdims", 1) != 1:
            return None
        to_nchw = only_consumer(mean.output[0], "Reshape")
        conv = to_nchw and only_consumer(to_nchw.output[0], "Conv")
        after, squash = conv and only_consumer(conv.output[0]), None
        if after is not None and after.op_type in ("Tanh", "Sigmoid"):  # bounded attention: x * tanh(conv(mean))
            squash, after = after, only_consumer(after.output[0])
        back = after if after is not None and after.op_type == "Reshape" else None
        if back is None or only_consumer(back.output[0]) is not scale:
            return None
        s1, s2 = _const(graph, to_nchw.input[1]), _const(graph, back.input[1])
        if s1 is None or s2 is None or len(s1) != 4 or len(s2) != 4 or list(s1[2:]) != [1, 1] \
                or list(s2[1:3]) != [1, 1] or s1[1] != s2[3]:
            return None
        if sorted(scale.input) != sorted([gate.output[0], back.output[0]]):
            return None
        return mean, back, conv, scale, squash

    removed, changed = [], set()
    for t1 in list(graph.node):
        if t1.op_type != "Transpose" or _attr(t1, "perm") != TO_NHWC:
            continue
        split = only_consumer(t1.output[0], "Split")
        if split is None or _attr(split, "axis", 0) not in (3, -1) or len(split.output) != 2:
            continue
        if len(split.input) > 1 and split.input[1]:  # explicit split sizes: keep it simple, leave it alone
            continue
        gate = only_consumer(split.output[0], "Mul")
        second = only_consumer(split.output[1])
        squash = None
        if second is not None and second.op_type in ("Sigmoid", "Tanh"):  # bounded gates a * sigmoid(b), a * tanh(b)
            squash, second = second, only_consumer(second.output[0])
        if gate is None or second is not gate:
            continue
        last, tail = gate, None
        if not is_to_nchw(only_consumer(gate.output[0])):
            tail = attention_tail(gate)
            if tail is None:
                continue
            last = tail[3]
        t2 = only_consumer(last.output[0])
        if not is_to_nchw(t2):
            continue
        split.input[0] = t1.input[0]
        _set_attr(split, "axis", 1)
        changed.update([split.output[0], split.output[1], gate.output[0], last.output[0]])
        if squash is not None:
            changed.add(squash.output[0])
        if tail is not None:
            mean, back, conv, scale, vector_squash = tail
            vector = (vector_squash or conv).output[0]  # already [N, C, 1, 1]
            _set_attr(mean, "axes", [2, 3])
            changed.update([mean.output[0], conv.output[0], vector])
            scale.input[list(scale.input).index(back.output[0])] = vector
            removed.append(back)
        last.output[0] = t2.output[0]
        removed += [t1, t2]
    for node in removed:
        graph.node.remove(node)
    # shapes recorded for the re-laid-out tensors are now wrong: drop them (ONNX Runtime infers them)
    for info in list(graph.value_info):
        if info.name in changed:
            graph.value_info.remove(info)
    if removed:  # reshape targets nothing reads any more
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        for init in list(graph.initializer):
            if init.name not in read:
                graph.initializer.remove(init)
    return sum(node.op_type == "Transpose" for node in removed)
