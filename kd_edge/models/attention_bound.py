"""Bound the channel attention of a trained edge-* model, keeping what it does on photos.

NAFNet's simplified channel attention, ``x * w`` with ``w = conv1x1(mean(x))``, is quadratic in ``x``. On inputs
unlike the training data it compounds over the blocks: on a 4-px checkerboard the v22 default student's activations
reached 7.1e19 inside (fp16 ends at 65504) while the output squash still hid it, and the same student distilled
6,000 steps further returned NaN there. Fresh builds use ``x * tanh(w)`` (``attention="tanh"``,
:mod:`kd_edge.models.edge`); this module rewrites a model of the old form so that every layer is at most linear in
its input, without retraining it:

* per block, ``w`` becomes ``c * tanh(w / c)``: the attention convolution's kernel and bias are divided by ``c`` and
  it gets a tanh activation (the fresh builds' layer), and ``c`` is folded into the next 1x1 convolution's kernel
  (``pw2``, linear: ``pw2(x * c t) = (c K)(x t) + b``). The rewritten model has the fresh builds' layers and the
  same parameter count; QAT, pruning and every converter handle it like a fresh build.
* ``c = max(margin * m, FLOOR)`` with ``m`` the largest ``|w|`` of that layer on calibration images (blurred training
  images, never the evaluation photos). With margin 1.5, ``c tanh(w / c)`` is 12.6% below ``w`` at the very largest
  ``w`` seen, 3.5% at half of it and 0.9% at a quarter; where an input drives ``|w|`` past ``c``, the attention
  saturates instead of growing.

Measured on the v23 student (the v22 student + 6,000 distillation steps), margin 1.5 on 64 blurred crops of its
training set: its output on those crops changed by 43.4 dB at worst, 58.9 dB mean (PSNR of the rewritten output
against the original), its real-set scores by at most 0.02 dB, and its largest activation on the stress inputs fell
from inf (NaN output) to 8.8e3. Chosen by output change and activation, not by any score: on 84 real photos,
margin 1.5 / 2 / 3 changed the output by 47 / 52 / 59 dB at worst and left 6.0e3 / 3.3e4 / 3.3e6 as the largest
activation (a chain of linear layers still has gain: the bound is their gains times the input).
"""
from __future__ import annotations

import numpy as np

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.errors import KdEdgeError

DEFAULT_MARGIN = 1.5
FLOOR = 0.5  # the smallest c: an attention layer that barely moves on calibration images still gets room
CONV_SUFFIX, MUL_SUFFIX, NEXT_SUFFIX = "_sca_conv", "_sca_mul", "_pw2"


def attention_layers(model):
    """``[(attention conv, next 1x1 conv), ...]`` of an edge-* model, in graph order (KdEdgeError when wrapped)."""
    from kd_edge.models.saving import is_tfmot_wrapped

    if is_tfmot_wrapped(model):
        raise KdEdgeError("a pruning- or QAT-wrapped model: bound the attention of its float model, then prune or "
                          "quantize that")
    pairs = []
    for layer in model.layers:
        if not layer.name.endswith(CONV_SUFFIX):
            continue
        prefix = layer.name[: -len(CONV_SUFFIX)]
        try:
            model.get_layer(prefix + MUL_SUFFIX)
            following = model.get_layer(prefix + NEXT_SUFFIX)
        except ValueError:
            raise KdEdgeError(f"{layer.name}: no {prefix + MUL_SUFFIX} / {prefix + NEXT_SUFFIX} beside it; not an "
                              f"edge-* block") from None
        pairs.append((layer, following))
    return pairs


def is_bounded(layer) -> bool:
    return getattr(layer.activation, "__name__", "") == "tanh"


def attention_form(model):
    """"tanh" when every channel attention of ``model`` is bounded, "linear" when none is, "mixed", or None when the
    model has none (tfmot-wrapped layers are looked through)."""
    convs = [getattr(layer, "layer", layer) for layer in model.layers if layer.name.endswith(CONV_SUFFIX)]
    if not convs:
        return None
    bounded = sum(is_bounded(conv) for conv in convs)
    return "tanh" if bounded == len(convs) else "linear" if bounded == 0 else "mixed"


def attention_maxima(model, images, *, batch_size=8):
    """``{attention conv name: largest |w| over images}`` (``w`` before any activation)."""
    import tf_keras as keras

    pairs = attention_layers(model)
    probe = keras.Model(model.input, [conv.input for conv, _ in pairs])
    pooled = probe.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
    pooled = pooled if isinstance(pooled, list) else [pooled]
    maxima = {}
    for (conv, _), p in zip(pairs, pooled):
        kernel, bias = conv.get_weights()
        w = np.tensordot(p, kernel[0, 0], axes=([3], [0])) + bias
        maxima[conv.name] = float(np.max(np.abs(w)))
    return maxima


def bound_attention(model, images, *, margin=DEFAULT_MARGIN):
    """A copy of ``model`` with every linear channel attention bounded (see the module docstring).

    Returns ``(bounded_model, record)``; ``record`` is the lineage step: margin, floor and per layer the largest
    ``|w|`` on ``images`` and the chosen ``c``. KdEdgeError when there is nothing to bound.
    """
    import tf_keras as keras

    from kd_edge.models.layers import custom_objects

    margin = float(margin)
    if not margin >= 1.0:
        raise KdEdgeError(f"margin must be >= 1 (c is margin times the largest attention weight), got {margin}")
    pairs = attention_layers(model)
    if not pairs:
        raise KdEdgeError("the model has no channel attention (no *_sca_conv layer): nothing to bound")
    linear = [(conv, nxt) for conv, nxt in pairs if not is_bounded(conv)]
    if not linear:
        raise KdEdgeError("every channel attention of the model is already bounded (tanh): nothing to do")
    maxima = attention_maxima(model, images)
    scales = {conv.name: max(margin * maxima[conv.name], FLOOR) for conv, _ in linear}
    config = model.get_config()
    for layer_config in config["layers"]:
        if layer_config["config"].get("name") in scales:
            layer_config["config"]["activation"] = "tanh"
    bounded = keras.Model.from_config(config, custom_objects=custom_objects())
    bounded.set_weights(model.get_weights())
    for conv, nxt in linear:
        c = scales[conv.name]
        kernel, bias = conv.get_weights()
        bounded.get_layer(conv.name).set_weights([kernel / c, bias / c])
        weights = nxt.get_weights()
        bounded.get_layer(nxt.name).set_weights([weights[0] * c, *weights[1:]])
    for attr in ("kd_edge_arch", "kd_edge_config"):
        if hasattr(model, attr):
            setattr(bounded, attr, getattr(model, attr))
    record = {"method": "bound-attention", "margin": margin, "floor": FLOOR,
              "layers": {conv.name: {"max_abs_weight": round(maxima[conv.name], 6),
                                     "scale": round(scales[conv.name], 6)} for conv, _ in linear}}
    return bounded, record


def largest_activation(model, images):
    """The largest ``|value|`` of any layer's output over ``images`` (one at a time; inf when one is not finite),
    and the index of the image that gave it."""
    import tf_keras as keras

    probe = keras.Model(model.input, [layer.output for layer in model.layers[1:]])
    worst, where = 0.0, 0
    for index, image in enumerate(images):
        outputs = probe.predict(np.asarray(image, np.float32)[None], verbose=0)
        for value in outputs:
            peak = float(np.max(np.abs(value))) if np.isfinite(value).all() else float("inf")
            if peak > worst:
                worst, where = peak, index
    return worst, where


def _finite_or_text(value, *, text="not finite"):
    return round(float(value), 3) if np.isfinite(value) else text


def bound_attention_file(src, dst, *, calib=None, calib_count=32, calib_size=256, margin=DEFAULT_MARGIN):
    """Write ``dst`` (+ manifest): the model file ``src`` with its channel attention bounded.

    Calibration: ``calib_count`` blurred images of ``calib`` (a folder or DBlur root; None: the built-in synthetic
    blurred images) at ``calib_size`` (rounded down to the model's stride). The manifest keeps ``src``'s lineage and
    adds the ``bound-attention`` step with the scales, the change of the output on the calibration images (PSNR of
    the new output against the old) and the largest activation on the synthetic stress inputs before and after.
    ``src`` is never modified; ``dst`` is written atomically. Returns the new manifest.
    """
    from pathlib import Path

    from kd_edge.compress.calibration import calibration_images, describe
    from kd_edge.converters.manifest import sha256_of
    from kd_edge.errors import InputFileError
    from kd_edge.metrics import psnr
    from kd_edge.models.complexity import model_stride
    from kd_edge.models.loading import load_model
    from kd_edge.models.saving import save_model
    from kd_edge.stress_inputs import stress_inputs

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".keras":
        raise InputFileError(dst, "a model file must end in .keras")
    if dst.resolve() == src.resolve():
        raise InputFileError(dst, "is the source model: write the bounded model to another file")
    model, manifest = load_model(src)
    stride = model_stride(model)
    size = max(stride, int(calib_size) // stride * stride)
    images = calibration_images(calib, count=calib_count, size=size)
    try:
        bounded, record = bound_attention(model, images, margin=margin)
    except KdEdgeError as exc:
        raise InputFileError(src, str(exc)) from None
    before = np.clip(model.predict(images, batch_size=8, verbose=0), 0.0, 1.0)
    after = np.clip(bounded.predict(images, batch_size=8, verbose=0), 0.0, 1.0)
    change = np.asarray(psnr(after, before), np.float64)
    stress = [image for _, image in stress_inputs(64, stride=stride)]
    peak_before, _ = largest_activation(model, stress)
    peak_after, _ = largest_activation(bounded, stress)
    record.update({
        "from_sha256": manifest.get("sha256") or sha256_of(src),
        "calibration": describe(calib, images),
        "output_change_on_calibration_psnr_db": {"min": _finite_or_text(change.min(), text="identical"),
                                                  "mean": _finite_or_text(change.mean(), text="identical")},
        "largest_activation_on_stress_inputs": {"before": _finite_or_text(peak_before),
                                                "after": _finite_or_text(peak_after)},
    })
    config = dict(manifest.get("config") or {})
    if config:
        config["attention"] = "tanh"
    return save_model(bounded, dst, arch=manifest.get("arch"), config=config or None,
                      lineage=list(manifest.get("lineage") or []) + [record])
