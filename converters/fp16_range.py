"""fp16 headroom of a model's activations, recorded in the manifest of every fp16 artifact.

A CPU runs an fp16 TFLite artifact by widening its weights to fp32, so parity on this host says nothing about the
range of the activations, and the parity probes of any target are ordinary images. Where an artifact computes in
fp16 (a mobile GPU delegate, Core ML on the GPU or Neural Engine, fp16 ONNX kernels) any activation beyond 65504
becomes inf and the image NaN. The Keras model is probed on the stress inputs (flat, saturated, edge, noise,
checkerboards: ``kd_edge.stress_inputs``) and the largest activation of any layer is compared with fp16's largest
finite value.
"""
FP16_MAX = 65504.0
# below this headroom (fp16 max / largest activation) the manifest says so: one more training stage or an input
# slightly further from the probes can cross the limit
TIGHT_HEADROOM = 4.0
PROBE_SIZE = 64


def fp16_range(source) -> dict:
    """``{"largest_activation", "input", "limit", "headroom", "within", "probe"}`` for ``source`` (a SourceModel),
    computed once per source; ``{"measured": False, "reason"}`` when the model cannot be probed layer by layer."""
    if "_fp16_range" not in source._fixed:
        source._fixed["_fp16_range"] = _measure(source.model, source.stride)
    return source._fixed["_fp16_range"]


def _measure(model, stride):
    import math

    from kd_edge.models.attention_bound import largest_activation
    from kd_edge.stress_inputs import size_multiple, stress_inputs

    size = math.lcm(PROBE_SIZE, size_multiple(stride))
    images = stress_inputs(size, stride=stride)
    try:
        peak, where = largest_activation(model, [image for _, image in images])
    except (AttributeError, TypeError, ValueError) as exc:  # not a functional Keras graph (e.g. a SavedModel)
        return {"measured": False, "reason": f"the model cannot be probed layer by layer: {exc}".splitlines()[0]}
    return {"measured": True, "largest_activation": peak, "input": images[where][0], "limit": FP16_MAX,
            "headroom": FP16_MAX / peak if peak > 0 else None, "within": peak <= FP16_MAX,
            "probe": f"Keras model, every layer's output on the {len(images)} stress inputs of {size}x{size} px"}


def fp16_range_note(record) -> str | None:
    """One line for the conversion table when the headroom is gone or tight, else None."""
    if not record.get("measured"):
        return None
    peak, name = record["largest_activation"], record["input"]
    if not record["within"]:
        return (f"activations reach {peak:.3g} on the stress input '{name}', beyond fp16's 65504: where this "
                f"artifact computes in fp16 (mobile GPU, Neural Engine) it overflows to inf")
    if record["headroom"] is not None and record["headroom"] < TIGHT_HEADROOM:
        return (f"activations reach {peak:.3g} on the stress input '{name}': within fp16's 65504, but only "
                f"{record['headroom']:.1f}x below it")
    return None
