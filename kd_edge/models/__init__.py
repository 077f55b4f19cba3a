"""Model zoo: seed reference networks and NAFNet-style edge students.

Public API::

    from kd_edge.models import build, architectures, save_model, load_model
    model = build("edge-s")                      # (None, None, 3) input; any HxW multiple of the stride
    model = build("edge-s", input_size=256)      # fixed size (KdEdgeError if not a multiple of the stride)
    save_model(model, "runs/student/best.keras") # + runs/student/best.keras.json manifest
    model, manifest = load_model("runs/student/best.keras")
    count_params(model); count_macs(model, 256, 256); model_stride(model); feature_layer_names(model)

Architectures: ``edge-tiny``, ``edge-s``, ``edge-m``, ``edge-l`` (NAFNet-style, see
:mod:`kd_edge.models.edge`) and ``seed-teacher``, ``seed-student`` (see :mod:`kd_edge.models.seed`).
Importing this package does not import TensorFlow; building a model does.
"""
from kd_edge.models.registry import (  # noqa: F401
    ARCHITECTURES,
    architectures,
    build,
    check_input_size,
    get_spec,
)
from kd_edge.models.loading import load_model  # noqa: F401
from kd_edge.models.saving import manifest_path, read_manifest, save_model  # noqa: F401


def count_params(model) -> int:
    from kd_edge.models.complexity import count_params as _count

    return _count(model)


def count_macs(model, height=256, width=256) -> int:
    from kd_edge.models.complexity import count_macs as _count

    return _count(model, height, width)


def model_stride(model) -> int:
    from kd_edge.models.complexity import model_stride as _stride

    return _stride(model)


def feature_layer_names(model, *, decoder=False):
    from kd_edge.models.complexity import feature_layer_names as _names

    return _names(model, decoder=decoder)


def custom_objects():
    from kd_edge.models.layers import custom_objects as _objects

    return _objects()


__all__ = [
    "ARCHITECTURES", "architectures", "build", "check_input_size", "get_spec", "save_model", "load_model",
    "read_manifest", "manifest_path", "count_params", "count_macs", "model_stride", "feature_layer_names",
    "custom_objects",
]
