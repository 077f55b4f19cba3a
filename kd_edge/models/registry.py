"""Architecture registry: names -> builders with documented defaults, and ``build(name, **overrides)``."""
import copy
from dataclasses import dataclass, field

from kd_edge.errors import KdEdgeError


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str  # "edge" or "seed"
    description: str
    defaults: dict = field(default_factory=dict)

    @property
    def levels(self):
        return len(self.defaults["enc_blocks"])

    @property
    def stride(self):
        return 2**self.levels

    def as_dict(self):
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "defaults": copy.deepcopy(self.defaults),
            "stride": self.stride,
        }


# The block design every edge-* size shares; kd_edge.models.edge takes its own defaults from here (one place).
EDGE_BLOCK_DEFAULTS = {"dw_expand": 2, "dw_kernel": 3, "ffn_expand": 2, "residual_init_scale": 0.1, "gate": "tanh",
                       "attention": "tanh", "output": "bounded"}

ARCHITECTURES = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "edge-tiny", "edge",
            "NAFNet-style U-Net, 2 levels, width 4: a few thousand params, for tests and smoke runs.",
            {"width": 4, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1], **EDGE_BLOCK_DEFAULTS},
        ),
        ArchSpec(
            "edge-s", "edge",
            "NAFNet-style phone student, 3 levels, width 16 (~0.3M params).",
            {"width": 16, "enc_blocks": [1, 1, 2], "middle_blocks": 1, "dec_blocks": [1, 1, 1], **EDGE_BLOCK_DEFAULTS},
        ),
        ArchSpec(
            "edge-m", "edge",
            "NAFNet-style phone student, 3 levels, width 24 (~1.5M params).",
            {"width": 24, "enc_blocks": [1, 1, 2], "middle_blocks": 4, "dec_blocks": [1, 1, 1], **EDGE_BLOCK_DEFAULTS},
        ),
        ArchSpec(
            "edge-l", "edge",
            "NAFNet-style teacher that trains on a 2-core CPU in about an hour, 4 levels, width 32 (~4.5M).",
            {"width": 32, "enc_blocks": [1, 1, 1, 1], "middle_blocks": 1, "dec_blocks": [1, 1, 1, 1],
             **EDGE_BLOCK_DEFAULTS},
        ),
        ArchSpec(
            "seed-teacher", "seed",
            "The report's teacher: residual encoder-decoder with bottleneck blocks (21.4M params, GPU).",
            {"base_width": 64, "enc_blocks": [2, 2, 2, 2], "middle_blocks": 9, "dec_blocks": [1, 1, 2, 5],
             "bottleneck_ratio": 4},
        ),
        ArchSpec(
            "seed-student", "seed",
            "The report's student: the same encoder-decoder with fewer bottleneck blocks (15.7M params, GPU).",
            {"base_width": 64, "enc_blocks": [1, 1, 1, 2], "middle_blocks": 5, "dec_blocks": [1, 1, 1, 1],
             "bottleneck_ratio": 4},
        ),
    )
}


def architectures():
    """name -> {name, family, description, defaults, stride} for every registered architecture."""
    return {name: spec.as_dict() for name, spec in ARCHITECTURES.items()}


def get_spec(name) -> ArchSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KdEdgeError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}") from None


def normalize_input_size(input_size):
    """None, an int or (H, W) -> None or (H, W) of ints (KdEdgeError otherwise)."""
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise KdEdgeError(f"input_size must be None, an int or (height, width), got {input_size!r}") from None
    return (h, w)


def check_input_size(height, width, stride, *, what="input size"):
    """Raise KdEdgeError unless height and width are positive multiples of ``stride``."""
    if height is None or width is None:
        return
    if height <= 0 or width <= 0 or height % stride or width % stride:
        def up(v):
            return max(stride, -(-v // stride) * stride)
        raise KdEdgeError(
            f"{what} {height}x{width} is not a multiple of the model's stride {stride}: "
            f"use e.g. {up(height)}x{up(width)} (pad the image, or tile it)"
        )


def resolve_config(name, overrides):
    """Defaults of ``name`` updated with ``overrides`` (unknown keys -> KdEdgeError). input_size is separate."""
    spec = get_spec(name)
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        raise KdEdgeError(
            f"{name}: unknown option(s) {', '.join(unknown)}; valid: input_size, {', '.join(spec.defaults)}"
        )
    config = copy.deepcopy(spec.defaults)
    config.update(copy.deepcopy(overrides))
    for key in ("enc_blocks", "dec_blocks"):
        config[key] = [int(v) for v in config[key]]
    return config


def build(name, **overrides):
    """Build architecture ``name`` as a tf_keras functional Model.

    ``input_size`` (int or (H, W)) fixes the input shape; by default it is (None, None, 3) and any
    H x W that is a multiple of the stride (``architectures()[name]["stride"]``) works. Other keyword
    arguments override the architecture's defaults (e.g. ``width=24``). The returned model carries
    ``model.kd_edge_arch`` and ``model.kd_edge_config`` (what :func:`save_model` records).
    """
    input_size = normalize_input_size(overrides.pop("input_size", None))
    spec = get_spec(name)
    config = resolve_config(name, overrides)
    stride = 2 ** len(config["enc_blocks"])
    if input_size is not None:
        check_input_size(*input_size, stride, what=f"{name}: input_size")
    model_name = name.replace("-", "_")
    try:
        if spec.family == "edge":
            from kd_edge.models.edge import build_edge

            model = build_edge(input_size=input_size, name=model_name, **config)
        else:
            from kd_edge.models.seed import build_seed

            model = build_seed(input_size=input_size, name=model_name, **config)
    except (ValueError, TypeError) as exc:
        raise KdEdgeError(f"{name}: bad configuration: {exc}") from exc
    record = dict(config)
    if input_size is not None:
        record["input_size"] = list(input_size)
    attach_config(model, name, record)
    return model


def attach_config(model, arch, config):
    """Set ``model.kd_edge_arch`` / ``model.kd_edge_config`` without Keras tracking them (plain dict/list)."""
    object.__setattr__(model, "kd_edge_arch", arch)
    object.__setattr__(model, "kd_edge_config", plain(config))


def plain(value):
    """A JSON-ready deep copy: Keras' tracked Dict/ListWrappers and tuples become dicts and lists."""
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
