"""Which nodes of an fp32 ONNX graph stay float32 when the rest goes to float16 (onnxconverter-common's
``node_block_list``; it inserts the Casts around them).

* Normalisation: tf2onnx lowers a Keras ``LayerNormalization`` to a Reshape, a statistics subgraph (ReduceMean,
  Sub, ReduceSumSquare, Shape -> ReduceProd -> Cast, Div) and a BatchNormalization. In float16 the variance
  loses precision and can overflow, and onnxconverter-common 1.16 also retypes the output of the ``Cast(to=float)``
  in it as float16 without changing the Cast, a graph ONNX Runtime refuses to load ("Type (tensor(float16)) of
  output arg (Cast__24:0) ... does not match expected type (tensor(float))"). Every node between the first and
  the last node of the layer stays float32.
* Every ``Cast`` to float32 elsewhere, for the same retyping reason (the converter then casts its output to
  float16 for the nodes after it).
"""
FLOAT = 1
NORM_CLASSES = ("LayerNormalization", "GroupNormalization", "UnitNormalization")


def _norm_layer_names(model):
    names = []
    for layer in getattr(model, "layers", []):
        inner = getattr(layer, "layer", layer)  # tfmot wrappers
        if type(inner).__name__ in NORM_CLASSES:
            names.append(layer.name)
        if hasattr(inner, "layers"):  # nested models
            names += _norm_layer_names(inner)
    return names


def _closure(nodes, start):
    """Nodes that are both reachable from ``start`` and lead to ``start``: the subgraph between them."""
    producer = {out: n for n in nodes for out in n.output}
    consumers = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    by_name = {n.name: n for n in nodes}

    def walk(step):
        seen, stack = set(), list(start)
        while stack:
            for nxt in step(by_name[stack.pop()]):
                if nxt.name not in seen:
                    seen.add(nxt.name)
                    stack.append(nxt.name)
        return seen

    down = walk(lambda n: [c for out in n.output for c in consumers.get(out, [])])
    up = walk(lambda n: [producer[i] for i in n.input if i in producer])
    return set(start) | (down & up)


def float32_nodes(proto, keras_model) -> list:
    """Names of the nodes of ``proto`` (fp32 ONNX from tf2onnx of ``keras_model``) to keep in float32."""
    nodes = list(proto.graph.node)
    keep = set()
    for layer in _norm_layer_names(keras_model):
        start = [n.name for n in nodes if f"/{layer}/" in f"/{n.name}/"]
        if start:
            keep |= _closure(nodes, start)
    keep |= {n.name for n in nodes if n.op_type == "Cast" and any(a.name == "to" and a.i == FLOAT for a in n.attribute)}
    return sorted(keep)
