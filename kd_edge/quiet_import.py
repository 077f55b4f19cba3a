"""Import TensorFlow, and run converters and runtimes, without their noise (unless --verbose).

TensorFlow's C++ side writes absl/cuda-stub lines straight to file descriptor 2 during import, before
TF_CPP_MIN_LOG_LEVEL can matter for some of them. LiteRT prints "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU." on every interpreter (no environment variable turns it off), the TFLite quantizer
prints "fully_quantize: 0, inference_type: 6, ...", coremltools draws tqdm progress bars and
onnxconverter-common warns about float16 truncation, all on fd 2. The CLI turns quiet mode on unless
--verbose (:func:`set_quiet`); library users see everything unless they turn it on. Python exceptions
are unaffected: they carry their own message.
"""
import contextlib
import os
import sys
import warnings

_quiet = {"on": False}


def set_quiet(on: bool):
    """Turn quiet mode on (the CLI without --verbose) or off (the default for library use)."""
    _quiet["on"] = bool(on)


def is_quiet() -> bool:
    return _quiet["on"]


@contextlib.contextmanager
def stderr_silenced():
    """Redirect the process-level stderr (fd 2) to /dev/null for the duration of the block.

    Yields a text stream on the real stderr, for the caller's own progress messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    real = os.fdopen(os.dup(saved), "w", buffering=1, closefd=True)
    try:
        os.dup2(devnull, 2)
        yield real
    finally:
        sys.stderr.flush()
        real.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        real.close()


@contextlib.contextmanager
def third_party_output_silenced():
    """In quiet mode: fd 2 silenced and third-party Python warnings dropped for the block; kd-edge's own
    warnings are re-issued afterwards (the CLI shows them as one line each, ``kd-edge: warning: ...``).
    Outside quiet mode: nothing changes. Yields a writable text stream on the real stderr, for the caller's own messages."""
    if not is_quiet():
        yield sys.stderr
        return
    try:
        with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
            with stderr_silenced() as real:
                yield real
    finally:
        # kd-edge's own warnings go on, through the warnings machinery (one line in the CLI), once the recording
        # context is closed: re-issued inside it they would be recorded again, and this loop would never end
        for w in list(caught):
            if _from_kd_edge(w.filename):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextlib.contextmanager
def native_stderr_silenced():
    """In quiet mode: what C++ code writes to fd 2 (LiteRT's XNNPACK INFO line, the TFLite quantizer's
    ``fully_quantize: ...``) goes to /dev/null for the block, while Python's ``sys.stderr`` (progress bars,
    warnings, messages) still reaches the real stderr. Outside quiet mode: nothing changes."""
    if not is_quiet():
        yield
        return
    previous = sys.stderr
    with stderr_silenced() as real:
        sys.stderr = real
        try:
            yield
        finally:
            sys.stderr = previous


def _from_kd_edge(filename) -> bool:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)  # converters/, benchmarks/ are installed beside kd_edge as kd_edge.* packages
    path = os.path.abspath(str(filename))
    return path.startswith(here + os.sep) or any(
        path.startswith(os.path.join(root, sub) + os.sep) for sub in ("converters", "benchmarks", "android_harness"))


def import_tensorflow_quietly():
    import kd_edge  # noqa: F401  (TF_USE_LEGACY_KERAS=1 before TensorFlow reads it)

    with stderr_silenced():
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401
