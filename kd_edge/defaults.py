"""The default models embedded in the package (kd_edge/weights/), used when a command gets no MODEL."""
from pathlib import Path

from kd_edge.errors import KdEdgeError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ROLES = ("student", "teacher")


def default_model_path(role: str = "student") -> Path:
    """Path of the embedded default ``student`` or ``teacher`` Keras model (with its manifest beside it)."""
    if role not in ROLES:
        raise ValueError(f"unknown default model role {role!r}; expected one of {ROLES}")
    path = WEIGHTS_DIR / f"default-{role}.keras"
    if not path.is_file():
        raise KdEdgeError(f"{path}: the embedded default {role} is missing from this install; pass a MODEL path")
    return path


def default_qat_path():
    """The embedded student after quantization-aware training (``default-student-qat.keras``), or None.

    Post-training int8 costs the default student more than QAT does, so ``kd-edge run`` converts this one for int8.
    """
    path = WEIGHTS_DIR / "default-student-qat.keras"
    return path if path.is_file() else None


def model_card_path() -> Path:
    return WEIGHTS_DIR / "MODEL_CARD.md"
