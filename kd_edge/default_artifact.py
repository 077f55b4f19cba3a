"""The artifact ``kd-edge deblur`` runs when no ``--model`` is given: the embedded default student converted once to
TFLite fp32 (256x256, parity-gated against the Keras model like any ``kd-edge convert`` output) and cached in
``$XDG_CACHE_HOME/kd-edge/default-student/<sha256 prefix>/`` (default ``~/.cache/kd-edge/...``).

Why tflite-fp32 and not tflite-int8: on this student post-training int8 is 1.7x faster but costs 0.28 dB PSNR and
0.055 SSIM on the held-out set (README, "What int8 costs this student"); fp32 gives the Keras model's output
(100 dB parity) at 1.7x the Keras speed, and a deblur run then imports no TensorFlow. Pass ``--model`` with an int8
artifact for the fastest run.
"""
import os
from pathlib import Path

DEFAULT_TARGET = "tflite-fp32"
DEFAULT_SIZE = 256


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kd-edge" / "default-student"


def default_artifact(log=None):
    """Path of the cached default artifact, converting it first when absent or no longer verified.

    Returns None (the caller runs the Keras model) when the cache folder cannot be written or the conversion
    fails its gate; ``log`` gets one line saying what happened."""
    from kd_edge.defaults import default_model_path
    from kd_edge.models.saving import sha256_file

    log = log or (lambda message: None)
    keras_path = default_model_path("student")
    folder = cache_root() / sha256_file(keras_path)[:16]
    artifact = folder / f"{keras_path.stem}.{DEFAULT_TARGET}.tflite"
    if artifact.is_file() and _verified(artifact):
        return artifact
    try:
        from kd_edge.cli.paths import ensure_output_dir

        ensure_output_dir(folder, option="the default-model cache")
        result = _convert(keras_path, folder, force=artifact.exists() or (folder / f"{artifact.name}.json").exists())
    except Exception as exc:  # noqa: BLE001 - any failure: say so in one line and run the Keras model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"kd-edge: note: could not prepare the {DEFAULT_TARGET} default ({first}); running the Keras model")
        return None
    parity = result.manifest.get("parity", {}).get("psnr_db")
    log(f"kd-edge: converted the default student to {DEFAULT_TARGET} once (parity {parity:.1f} dB vs Keras) -> "
        f"{artifact}")
    return artifact


def _verified(artifact) -> bool:
    """True if the artifact's manifest is there and its sha256 matches the file (kd_edge.runtime's check)."""
    import json

    from kd_edge.models.saving import sha256_file

    manifest = artifact.with_name(artifact.name + ".json")
    try:
        return json.loads(manifest.read_text()).get("sha256") == sha256_file(artifact)
    except (OSError, ValueError):
        return False


def _convert(keras_path, folder, *, force):
    from kd_edge.quiet_import import import_tensorflow_quietly, is_quiet, third_party_output_silenced

    if is_quiet():
        import_tensorflow_quietly()
    from kd_edge.converters import convert

    with third_party_output_silenced():
        return convert(keras_path, [DEFAULT_TARGET], folder, input_size=DEFAULT_SIZE, force=force)[0]
