"""Training precision: float32, or mixed bfloat16 (bf16 arithmetic, float32 weights) on CPUs with bf16 units.

``kd-edge train-teacher`` / ``distill`` ``--precision bfloat16`` trains a copy of the model whose layers compute in
bfloat16 (``tf_keras`` policy ``mixed_bfloat16``: the variables and the optimizer stay float32, each layer casts
them to bf16 for its arithmetic) except the layer that produces the image, which stays float32 so that the output
``y = x + r`` keeps the input image at full precision. On an AMD EPYC Zen 4 (``avx512_bf16``) oneDNN runs the
convolutions with bf16 instructions (measured: ``benchmarks/results/train_precision.json``); a CPU without bf16
units (Zen 3, older Xeons) emulates them and gets slower, hence ``auto``: bfloat16 only where the CPU flags show
``avx512_bf16`` or ``amx_bf16``. bfloat16 keeps float32's range (no loss scaling, no overflow) with an 8-bit
mantissa. The trained weights are float32 either way: the saved model, its checkpoints and every export are the
same float32 model as from a float32 run, and a run may resume in the other precision.

No LayerNorm or BatchNorm in the ``edge-*`` models (see ``edge.py``), so no statistic is computed in bf16.
"""
from __future__ import annotations

CHOICES = ("float32", "bfloat16", "auto")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIXED = "mixed_bfloat16"


def cpu_bf16_flags() -> list:
    """The bf16 ISA flags of this CPU (from /proc/cpuinfo; empty where unknown)."""
    from kd_edge.benchmarks.runner import isa_flags

    flags = set(isa_flags())
    return [f for f in BF16_CPU_FLAGS if f in flags]


def resolve(choice: str) -> str:
    """'float32' or 'bfloat16' for a --precision choice ('auto': bfloat16 where the CPU has bf16 units)."""
    choice = str(choice or "float32").lower()
    if choice not in CHOICES:
        raise ValueError(f"--precision must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "auto":
        return "bfloat16" if cpu_bf16_flags() else "float32"
    return choice


def compute_dtype(model) -> str:
    """'bfloat16' when any layer of ``model`` computes in bf16, else 'float32'."""
    for layer in model.layers:
        if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32") == "bfloat16":
            return "bfloat16"
    return "float32"


def with_precision(model, precision: str):
    """A copy of the functional ``model`` (same layers, names and weights) computing in ``precision``
    ('float32' or 'bfloat16'); for bfloat16 the layers producing the outputs stay float32. Returns ``model``
    itself when it already computes in ``precision``."""
    import tf_keras as keras

    from kd_edge.errors import KdEdgeError

    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    if compute_dtype(model) == precision:
        return model
    output_layers = set(model.output_names)  # the layers producing the outputs (functional models)

    def clone(layer):
        policy = MIXED if precision == "bfloat16" and layer.name not in output_layers else "float32"
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except (ValueError, TypeError) as exc:
        raise KdEdgeError(f"--precision {precision} needs a functional Keras model whose layers can be re-created "
                          f"from their config; {model.name!r} cannot ({type(exc).__name__}: {exc})") from exc
    copy.set_weights(model.get_weights())
    return copy
