"""Import TensorFlow without its start-up noise.

TensorFlow's C++ side writes absl/cuda-stub lines straight to file descriptor 2 during import, before
TF_CPP_MIN_LOG_LEVEL can matter for some of them. The CLI imports TensorFlow through this once, with fd 2
pointed at /dev/null, unless --verbose is given. Python exceptions are unaffected.
"""
import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    """Redirect the process-level stderr (fd 2) to /dev/null for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    import kd_edge  # noqa: F401  (TF_USE_LEGACY_KERAS=1 before TensorFlow reads it)

    with stderr_silenced():
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401
