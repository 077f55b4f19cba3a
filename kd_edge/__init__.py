"""kd-edge: distil, compress, convert, benchmark and tile image-deblurring models for the edge.

Importing kd_edge selects tf_keras (Keras 2) for TensorFlow: tfmot and the converters need it,
and TensorFlow reads the switch once, at its own import.
"""
import os as _os
import sys as _sys

__version__ = "0.1.0"

if "tensorflow" in _sys.modules and _os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    import warnings as _warnings

    _warnings.warn(
        "TensorFlow was imported before kd_edge without TF_USE_LEGACY_KERAS=1; "
        "import kd_edge first (or set the variable) so that tf_keras is used.",
        RuntimeWarning,
        stacklevel=2,
    )
_os.environ["TF_USE_LEGACY_KERAS"] = "1"
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512-VNNI/BF16, AVX-VNNI or AMX; on an
# AVX2-only x86 (e.g. AMD Zen 3) it leaves them off and a distillation step runs 3.3x slower
# (benchmarks/results/train_throughput_zen3.json). Ask for them unless the user has chosen.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
