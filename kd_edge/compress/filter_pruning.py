"""Structured pruning that really removes filters: rank by L1 norm, keep channel groups consistent, rebuild dense.

tfmot only zeroes weights (the kernels keep their shape and their cost). This module removes whole output
channels ("filters") and rebuilds a narrower functional model that carries the kept weights, so parameters,
MACs and latency all drop. It works on any tf_keras functional model by rewriting layer configs, with exact
rules for the zoo's building blocks:

* every channel of every tensor is an *atom*; layers either create new atoms (Conv2D / Dense outputs) or pass
  their input atoms on (depthwise conv with multiplier 1, BatchNorm, activations, pooling);
* ``Add`` / ``Multiply`` (residual additions, channel attention's ``x * conv(pool(x))``) join channel ``i`` of
  every input into one unit, so a residual stream keeps one kept-index set and the attention conv's output
  channels follow the tensor they scale (its input channels follow the pooled tensor automatically);
* :class:`~kd_edge.models.layers.SimpleGate` joins channel ``k`` with channel ``k + C/2`` (the pair it
  multiplies), so both halves keep matching pairs;
* :class:`~kd_edge.models.layers.DepthToSpace` (block ``r``) joins the ``r*r`` input channels
  ``{k * C_out + c}`` that make output channel ``c`` (TensorFlow's NHWC depth layout), so groups of ``r*r``
  channels are kept or removed together;
* model inputs and outputs, and the inputs and outputs of any layer we have no rule for, are never pruned.

Units that must live or die together are found with a union-find; units that share a tensor form a *family*
(e.g. all channels of one residual stream) and in each family the ``ratio`` lowest-impact units are removed.
Impact is the L1 norm of the filters producing a unit (Li et al., "Pruning Filters for Efficient ConvNets"),
each layer's norms divided by that layer's mean so that layers of different scale can be summed, averaged over
the unit's producers. The result is fully convolutional like its parent: it runs at any input size that is a
multiple of the stride.
"""
import copy
import math
from dataclasses import dataclass, field

import numpy as np

import kd_edge  # noqa: F401
from kd_edge.errors import KdEdgeError

# layers whose output channels are their input channels (per-channel weights, if any, are sliced)
FOLLOW_INPUT = {
    "BatchNormalization", "LayerNormalization", "ReLU", "Activation", "LeakyReLU", "ELU", "Softmax", "Dropout",
    "SpatialDropout2D", "GaussianNoise", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "AveragePooling2D",
    "MaxPooling2D", "ZeroPadding2D", "Cropping2D", "Identity", "ActivityRegularization",
}
# element-wise layers over several inputs: channel i of every input is one unit
JOIN = {"Add", "Multiply", "Subtract", "Maximum", "Minimum", "Average"}
# layers whose output channels are new (filters / units) and whose kernel scores the channels
PRODUCERS = {"Conv2D": "filters", "Dense": "units"}


class _UnionFind:
    def __init__(self):
        self.parent = []

    def add(self, n):
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, a):
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class PrunePlan:
    """What :func:`plan_filter_pruning` decided: kept channel indices of every tensor and per-layer counts."""

    ratio: float
    kept: dict  # (layer name, node index, tensor index) -> list of kept channel indices
    channels: dict  # tensor key -> original channel count
    layers: list = field(default_factory=list)  # [{"layer", "class", "before", "after"}] for producer layers
    families: list = field(default_factory=list)  # [{"units", "removed", "layers"}]
    fixed_units: int = 0

    def summary(self):
        return {
            "ratio": self.ratio,
            "families": self.families,
            "layers": self.layers,
            "fixed_units": self.fixed_units,
        }


def _inbound(layer_config):
    nodes = layer_config.get("inbound_nodes") or []
    out = []
    for node in nodes:
        if isinstance(node, dict):  # keras 3 style; not produced by tf_keras, refuse clearly
            raise KdEdgeError("filter pruning needs a tf_keras functional model (legacy config format)")
        out.append([(entry[0], int(entry[1]), int(entry[2])) for entry in node])
    return out


def _check_plain(model):
    import tf_keras as keras

    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise KdEdgeError("filter pruning needs a functional tf_keras model")
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer",
                    "QuantizeAnnotate"):
            raise KdEdgeError(f"layer {layer.name} is a tfmot wrapper ({kind}): filter-prune the float model, "
                              "before sparsity pruning or QAT")
        if isinstance(layer, keras.Model):
            raise KdEdgeError(f"layer {layer.name} is a nested model: filter pruning needs a flat functional model")


def _kernel_scores(layer):
    """Per-output-channel L1 norms divided by their mean (None for a layer without a kernel)."""
    kind = type(layer).__name__
    if kind in PRODUCERS:
        kernel = layer.kernel.numpy()
        l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    elif kind == "DepthwiseConv2D":
        kernel = layer.depthwise_kernel.numpy()
        l1 = np.abs(kernel).reshape(kernel.shape[0] * kernel.shape[1], -1).sum(axis=0)
    else:
        return None
    return l1 / (float(l1.mean()) + 1e-12)


def plan_filter_pruning(model, ratio, *, min_channels=2, exclude=()):
    """Decide which channels to remove (see the module docstring). ``ratio`` in [0, 1).

    ``min_channels``: never shrink a family below this many units. ``exclude``: layer names whose output
    channels must be kept (their units are fixed).
    """
    if not 0.0 <= float(ratio) < 1.0:
        raise KdEdgeError(f"--filters must be in [0, 1), got {ratio}")
    _check_plain(model)
    config = model.get_config()
    uf = _UnionFind()
    atoms = {}  # tensor key -> list of atoms
    fixed = set()
    producers = []  # (layer, out atoms, scores)
    exclude = set(exclude)

    def new_atoms(n, is_fixed=False):
        created = uf.add(int(n))
        if is_fixed:
            fixed.update(created)
        return created

    for layer_config in config["layers"]:
        name = layer_config["name"]
        kind = layer_config["class_name"]
        layer = model.get_layer(name)
        nodes = _inbound(layer_config)
        if kind == "InputLayer":
            shape = layer_config["config"]["batch_input_shape"]
            atoms[(name, 0, 0)] = new_atoms(shape[-1], True)
            continue
        for node_index, node in enumerate(nodes):
            try:
                ins = [atoms[key] for key in node]
            except KeyError as exc:
                raise KdEdgeError(f"filter pruning: layer {name} uses {exc} before it is defined") from None
            out_key = (name, node_index, 0)
            short = kind.split(">")[-1]
            if short in PRODUCERS and len(ins) == 1 and int(layer_config["config"].get("groups", 1) or 1) == 1:
                n = layer_config["config"][PRODUCERS[short]]
                out = new_atoms(n, name in exclude)
                producers.append((layer, out, _kernel_scores(layer)))
            elif short == "DepthwiseConv2D" and len(ins) == 1 and \
                    int(layer_config["config"].get("depth_multiplier", 1)) == 1:
                out = list(ins[0])
                producers.append((layer, out, _kernel_scores(layer)))
                if name in exclude:
                    fixed.update(out)
            elif short in FOLLOW_INPUT and len(ins) == 1:
                out = list(ins[0])
            elif short == "SimpleGate" and len(ins) == 1 and len(ins[0]) % 2 == 0:
                half = len(ins[0]) // 2
                for k in range(half):
                    uf.union(ins[0][k], ins[0][half + k])
                out = ins[0][:half]
            elif short == "DepthToSpace" and len(ins) == 1:
                r2 = int(layer_config["config"].get("block_size", 2)) ** 2
                c_out = len(ins[0]) // r2
                for c in range(c_out):
                    for k in range(1, r2):
                        uf.union(ins[0][c], ins[0][k * c_out + c])
                out = ins[0][:c_out]
            elif short in JOIN and len(ins) >= 2:
                width = max(len(a) for a in ins)
                for other in ins:
                    if len(other) not in (1, width):
                        raise KdEdgeError(f"filter pruning: {name} joins tensors of {len(other)} and {width} "
                                          "channels")
                base = next(a for a in ins if len(a) == width)
                for other in ins:
                    if len(other) == width:
                        for a, b in zip(base, other):
                            uf.union(a, b)
                out = list(base)
            elif short == "Concatenate" and int(layer_config["config"].get("axis", -1)) in (-1, 3):
                out = [a for t in ins for a in t]
            else:
                # no rule: keep every channel around this layer
                for t in ins:
                    fixed.update(t)
                shape = layer.output_shape if len(nodes) == 1 else layer.get_output_shape_at(node_index)
                if isinstance(shape, list):
                    raise KdEdgeError(f"filter pruning: layer {name} ({kind}) has several outputs")
                out = new_atoms(shape[-1], True)
            atoms[out_key] = out

    for entry in config["output_layers"]:
        fixed.update(atoms[(entry[0], int(entry[1]), int(entry[2]))])

    fixed_roots = {uf.find(a) for a in fixed}
    # families: units (roots) that appear in one tensor together
    roots_of = {key: [uf.find(a) for a in t] for key, t in atoms.items()}
    fam = {}

    def ffind(r):
        while fam.setdefault(r, r) != r:
            fam[r] = fam.setdefault(fam[r], fam[r])
            r = fam[r]
        return r

    for roots in roots_of.values():
        for r in roots[1:]:
            a, b = ffind(roots[0]), ffind(r)
            if a != b:
                fam[max(a, b)] = min(a, b)
    families = {}
    for roots in roots_of.values():
        for r in roots:
            families.setdefault(ffind(r), set()).add(r)

    # impact scores
    totals, counts = {}, {}
    for layer, out, scores in producers:
        if scores is None:
            continue
        per_unit = {}
        for atom, score in zip(out, scores):
            r = uf.find(atom)
            per_unit.setdefault(r, []).append(float(score))
        for r, values in per_unit.items():
            totals[r] = totals.get(r, 0.0) + float(np.mean(values))
            counts[r] = counts.get(r, 0) + 1
    producer_names = {}
    for layer, out, _ in producers:
        for atom in out:
            producer_names.setdefault(uf.find(atom), set()).add(layer.name)

    removed = set()
    family_report = []
    for root, units in sorted(families.items()):
        prunable = sorted(u for u in units if u not in fixed_roots)
        if not prunable:
            continue
        n_remove = int(math.floor(float(ratio) * len(prunable) + 0.5))
        n_remove = min(n_remove, max(0, len(units) - int(min_channels)))
        if n_remove <= 0:
            continue
        ranked = sorted(prunable, key=lambda u: (totals.get(u, math.inf) / max(counts.get(u, 1), 1), u))
        drop = ranked[:n_remove]
        removed.update(drop)
        names = sorted(set().union(*(producer_names.get(u, set()) for u in prunable)))
        family_report.append({"units": len(units), "prunable": len(prunable), "removed": len(drop),
                              "layers": names})

    kept = {key: [i for i, r in enumerate(roots) if r not in removed] for key, roots in roots_of.items()}
    channels = {key: len(roots) for key, roots in roots_of.items()}
    for key, k in kept.items():
        if not k:
            raise KdEdgeError(f"filter pruning would remove every channel of {key[0]}")
    layer_report = []
    for layer, out, _ in producers:
        key = (layer.name, 0, 0)
        layer_report.append({"layer": layer.name, "class": type(layer).__name__, "before": channels[key],
                             "after": len(kept[key])})
    return PrunePlan(ratio=float(ratio), kept=kept, channels=channels, layers=layer_report,
                     families=family_report, fixed_units=len(fixed_roots))


def apply_plan(model, plan):
    """A new, narrower functional model with the kept channels of ``plan`` and the matching weights."""
    import tf_keras as keras

    from kd_edge.models.layers import custom_objects

    config = copy.deepcopy(model.get_config())
    inputs_of = {}
    for layer_config in config["layers"]:
        name = layer_config["name"]
        nodes = _inbound(layer_config)
        inputs_of[name] = nodes[0] if nodes else []
        short = layer_config["class_name"].split(">")[-1]
        if short in PRODUCERS and (name, 0, 0) in plan.kept:
            layer_config["config"][PRODUCERS[short]] = len(plan.kept[(name, 0, 0)])
    new = keras.Model.from_config(config, custom_objects=custom_objects())
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        target = new.get_layer(layer.name)
        kind = type(layer).__name__
        ins = inputs_of.get(layer.name) or []
        in_keep = plan.kept.get(ins[0]) if len(ins) == 1 else None
        out_keep = plan.kept.get((layer.name, 0, 0))
        if kind in ("Conv2D", "Dense") and in_keep is not None:
            kernel = weights[0]
            kernel = np.take(np.take(kernel, in_keep, axis=-2), out_keep, axis=-1)
            sliced = [kernel] + [w[out_keep] for w in weights[1:]]
        elif kind == "DepthwiseConv2D" and in_keep is not None:
            sliced = [np.take(weights[0], in_keep, axis=2)] + [w[in_keep] for w in weights[1:]]
        elif kind in FOLLOW_INPUT and in_keep is not None:
            sliced = [w[in_keep] if w.ndim == 1 and w.shape[0] == plan.channels[ins[0]] else w for w in weights]
        else:
            sliced = weights
        target.set_weights(sliced)
    return new


def prune_filters(model, ratio, *, min_channels=2, exclude=()):
    """Remove the ``ratio`` lowest-L1 filters (consistently, see the module doc); returns (new model, plan)."""
    plan = plan_filter_pruning(model, ratio, min_channels=min_channels, exclude=exclude)
    pruned = apply_plan(model, plan)
    for attr in ("kd_edge_arch", "kd_edge_config"):
        if hasattr(model, attr):
            setattr(pruned, attr, getattr(model, attr))
    return pruned, plan
