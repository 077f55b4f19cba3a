"""Unstructured (magnitude) pruning with tfmot: wrap, schedule, strip, measure.

Sparsity zeroes weights inside kernels that keep their shape: the model compresses better (gzip, zip, app
store delivery), but a dense kernel (TFLite CONV_2D, ONNX Conv, Core ML) still multiplies by every zero, so it
is **not faster**. To make a model faster, remove filters (:mod:`kd_edge.compress.filter_pruning`) or quantize.
"""
import gzip

import numpy as np

import kd_edge  # noqa: F401
from kd_edge.errors import KdEdgeError

SCHEDULES = ("polynomial", "constant")
NOT_FASTER = ("sparsity shrinks the compressed (gzip) size, but it does not make dense kernels faster: "
              "the zeros are still multiplied at inference; use --filters to remove filters for speed")


def make_schedule(kind, sparsity, steps, *, begin_step=0, end_fraction=0.7, frequency=None):
    """tfmot pruning schedule reaching ``sparsity``.

    polynomial: from 0 to ``sparsity`` between ``begin_step`` and ``end_fraction * steps`` (cubic decay, the
    tfmot default), leaving the rest of the steps to recover at the final sparsity. constant: ``sparsity``
    from ``begin_step`` on. Masks are updated every ``frequency`` steps (default ``steps // 20``, 1..100).
    """
    import tensorflow_model_optimization as tfmot

    sparsity = float(sparsity)
    if not 0.0 < sparsity < 1.0:
        raise KdEdgeError(f"--sparsity must be in (0, 1), got {sparsity}")
    steps = int(steps)
    frequency = int(frequency or min(100, max(1, steps // 20)))
    if kind == "polynomial":
        end = max(begin_step + 1, int(steps * end_fraction))
        frequency = min(frequency, max(1, end - begin_step))
        return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                    begin_step=int(begin_step), end_step=end, frequency=frequency)
    if kind == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=int(begin_step), frequency=frequency)
    raise KdEdgeError(f"unknown --schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")


def prunable_layers(model):
    from kd_edge.models.quantize_support import prunable_layer_names

    return set(prunable_layer_names(model))


def wrap_for_pruning(model, schedule):
    """A copy of ``model`` whose kernel layers are wrapped by ``prune_low_magnitude`` (the input is untouched).

    Layers are re-created from their configs (never shared with ``model``), so ``model`` can still serve as
    the frozen teacher while the copy is pruned.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from kd_edge.models.layers import custom_objects

    names = prunable_layers(model)
    if not names:
        raise KdEdgeError("the model has no prunable layer (Conv2D, DepthwiseConv2D, Dense)")

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if layer.name in names:
            return tfmot.sparsity.keras.prune_low_magnitude(copy, pruning_schedule=schedule)
        return copy

    with keras.utils.custom_object_scope(custom_objects()):
        wrapped = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        target = wrapped.get_layer(("prune_low_magnitude_" + layer.name) if layer.name in names else layer.name)
        inner = target.layer if hasattr(target, "pruning_obj") else target
        inner.set_weights(weights)
    return wrapped


def strip(model):
    """Apply the final masks and remove the pruning wrappers: a plain model with zeros in its kernels."""
    import tensorflow_model_optimization as tfmot

    for layer in model.layers:
        if hasattr(layer, "pruning_obj"):
            layer.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(model)


def _kernels(model):
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for attr in ("kernel", "depthwise_kernel"):
            var = getattr(inner, attr, None)
            if var is not None:
                yield layer.name, type(inner).__name__, np.asarray(var.numpy() if hasattr(var, "numpy") else var)


def layer_sparsity(model):
    """[{layer, class, weights, zeros, sparsity}] for every kernel of the model."""
    rows = []
    for name, kind, kernel in _kernels(model):
        zeros = int(np.count_nonzero(kernel == 0))
        rows.append({"layer": name, "class": kind, "weights": int(kernel.size), "zeros": zeros,
                     "sparsity": zeros / max(kernel.size, 1)})
    return rows


def overall_sparsity(model):
    """Fraction of zero kernel weights over all kernels (0 for a dense model)."""
    rows = layer_sparsity(model)
    total = sum(r["weights"] for r in rows)
    return sum(r["zeros"] for r in rows) / total if total else 0.0


def weight_sizes(model):
    """Raw and gzip-compressed sizes (bytes) of all weights stored as float32."""
    raw = b"".join(np.asarray(w, np.float32).tobytes() for w in model.get_weights())
    return {"raw_bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, compresslevel=9, mtime=0))}


def file_sizes(path):
    """Raw and gzip-compressed sizes (bytes) of a file."""
    data = open(path, "rb").read()
    return {"raw_bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def format_table(rows, parent_rows=None):
    """A plain-text table of per-layer sparsity."""
    lines = [f"{'layer':<34} {'class':<16} {'weights':>9} {'sparsity':>9}"]
    for r in rows:
        lines.append(f"{r['layer']:<34} {r['class']:<16} {r['weights']:>9d} {r['sparsity'] * 100:>8.1f}%")
    return "\n".join(lines)
