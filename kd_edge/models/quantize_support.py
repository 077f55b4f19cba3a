"""tfmot support for the zoo's custom layers: QuantizeConfigs, QAT annotation and pruning.

Quantization-aware training::

    from kd_edge.models.quantize_support import annotate_for_qat, quantize_scope
    with quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(annotate_for_qat(model))
    # or simply: qat = quantize_model(model)

``annotate_for_qat`` annotates every layer: the built-in layers (Conv2D, DepthwiseConv2D, Add, Multiply,
GlobalAveragePooling2D, BatchNormalization, ReLU...) with tfmot's default 8-bit configs, and the custom
layers with the configs below:

* :class:`SimpleGateQuantizeConfig`: no weights; the output (a product of two halves, whose range differs
  from its input's) gets a moving-average 8-bit activation quantizer, so the int8 MUL has a known scale.
* :class:`OutputQuantizeConfig` for ``Multiply`` (the channel-attention product), which tfmot's default
  registry does not support: output quantized, no weights.
* :class:`DepthToSpaceQuantizeConfig`: pure pass-through (no weights, no quantizer): depth_to_space only
  moves values, so the output keeps its input's scale.

Pruning: :func:`prunable_layer_names` lists the layers ``prune_low_magnitude`` may wrap (those with a
kernel: Conv2D, DepthwiseConv2D, Dense); :func:`prune_model` wraps exactly those and leaves the custom
layers, which have no weights, unwrapped (tfmot refuses to wrap a custom layer that is not
``PrunableLayer``).
"""
import contextlib

import kd_edge  # noqa: F401

import tensorflow_model_optimization as tfmot

from kd_edge.models.layers import BoundedResidual, DepthToSpace, SimpleGate, custom_objects

_qk = tfmot.quantization.keras


class PassThroughQuantizeConfig(_qk.QuantizeConfig):
    """No weights, no activation, no output quantizer."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class OutputQuantizeConfig(PassThroughQuantizeConfig):
    """For a layer without weights whose output range differs from its inputs' (a product): quantize the
    output only (8-bit, asymmetric, per-tensor moving average). Used for SimpleGate and for ``Multiply``
    (the channel-attention product), which tfmot's default registry does not support."""

    def get_output_quantizers(self, layer):
        return [_qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]


class SimpleGateQuantizeConfig(OutputQuantizeConfig):
    """No weights; quantize the gate's output (8-bit, asymmetric, per-tensor moving average)."""


class DepthToSpaceQuantizeConfig(PassThroughQuantizeConfig):
    """Pass-through: depth_to_space only moves values, so it needs no quantizer of its own."""


QUANTIZE_CONFIGS = {SimpleGate: SimpleGateQuantizeConfig, DepthToSpace: DepthToSpaceQuantizeConfig,
                    BoundedResidual: OutputQuantizeConfig}


def quantize_custom_objects():
    objects = dict(custom_objects())
    for cls in (PassThroughQuantizeConfig, OutputQuantizeConfig, SimpleGateQuantizeConfig, DepthToSpaceQuantizeConfig):
        objects[cls.__name__] = cls
    return objects


@contextlib.contextmanager
def quantize_scope():
    """tfmot's quantize_scope with the kd_edge layers and QuantizeConfigs (for quantize_apply and loading)."""
    with _qk.quantize_scope(quantize_custom_objects()):
        yield


def _registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def quantize_config_for(layer, registry=None):
    """The kd_edge QuantizeConfig for ``layer``, or None for a layer tfmot's default registry handles.

    Custom layers get their own config; a weightless built-in layer that tfmot does not support (e.g.
    ``Multiply``) gets :class:`OutputQuantizeConfig`. Anything else unsupported raises ValueError.
    """
    cls = QUANTIZE_CONFIGS.get(type(layer))
    if cls:
        return cls()
    registry = registry or _registry()
    if registry.supports(layer):
        return None
    if not layer.weights and type(layer).__name__ in WEIGHTLESS_OUTPUT_QUANTIZED:
        return OutputQuantizeConfig()
    raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no QAT config")


WEIGHTLESS_OUTPUT_QUANTIZED = ("Multiply", "Maximum", "Minimum", "Subtract", "Average")


def annotate_for_qat(model):
    """A copy of ``model`` with every layer annotated for QAT (custom layers with kd_edge's configs)."""
    import tf_keras as keras

    registry = _registry()

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        config = quantize_config_for(layer, registry)
        clone = layer.__class__.from_config(layer.get_config())
        return _qk.quantize_annotate_layer(clone, quantize_config=config)

    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
    return annotated


def quantize_model(model):
    """``quantize_apply(annotate_for_qat(model))`` inside :func:`quantize_scope`: a QAT-ready model."""
    with quantize_scope():
        return _qk.quantize_apply(annotate_for_qat(model))


def qat_plan(model):
    """[(layer name, layer class, will quantize: bool, why)] for every layer (what ``quantize --check`` shows)."""
    import tf_keras as keras

    registry = _registry()

    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer):
            rows.append((layer.name, kind, True, "input quantized by quantize_apply"))
        elif type(layer) in QUANTIZE_CONFIGS:
            rows.append((layer.name, kind, True, f"kd_edge {QUANTIZE_CONFIGS[type(layer)].__name__}"))
        elif registry.supports(layer):
            rows.append((layer.name, kind, True, "tfmot default 8-bit registry"))
        elif not layer.weights and kind in WEIGHTLESS_OUTPUT_QUANTIZED:
            rows.append((layer.name, kind, True, "kd_edge OutputQuantizeConfig (output quantized)"))
        else:
            rows.append((layer.name, kind, False, "not supported by tfmot: stays float"))
    return rows


PRUNABLE_TYPES = ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D")


def prunable_layer_names(model):
    """Names of the layers ``prune_low_magnitude`` should wrap: every layer with a kernel."""
    return [layer.name for layer in model.layers if type(layer).__name__ in PRUNABLE_TYPES]


def prune_model(model, **prune_params):
    """Wrap the prunable layers of ``model`` with tfmot ``prune_low_magnitude(**prune_params)``.

    Layers without weights (SimpleGate, DepthToSpace, Add, pooling) stay unwrapped.
    """
    import tf_keras as keras

    names = set(prunable_layer_names(model))
    prune = tfmot.sparsity.keras.prune_low_magnitude

    def wrap(layer):
        if layer.name in names:
            return prune(layer, **prune_params)
        return layer

    pruned = keras.models.clone_model(model, clone_function=wrap)
    return pruned
