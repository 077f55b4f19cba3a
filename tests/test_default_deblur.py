"""`kd-edge deblur` with no --model runs the embedded student as its cached, parity-gated tflite-fp32 artifact
(issue 15, item 11): converted once, reused without TensorFlow, rebuilt when tampered with, Keras where a fixed
256x256 model cannot serve. Real conversion, real LiteRT, real files, the real console script."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kd_edge.images import read_image, write_image
from kd_edge.metrics import psnr

CONVERTED = "converted the default student to tflite-fp32 once"


def _deblur(kd_edge_exe, cache, *args):
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([kd_edge_exe, "deblur", *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    write_image(path, np.random.default_rng(0).random((120, 300, 3)).astype(np.float32))
    return path


@pytest.mark.slow
def test_default_deblur_converts_once_then_reuses_the_artifact_without_tensorflow(kd_edge_exe, image, tmp_path):
    cache = tmp_path / "cache"
    first = _deblur(kd_edge_exe, cache, image, "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(CONVERTED) == 1 and "parity 100.0 dB" in first.stderr, first.stderr
    assert "with default-student.tflite-fp32.tflite [tflite, tile 256x256" in first.stdout
    artifacts = list((cache / "kd-edge" / "default-student").glob("*/default-student.tflite-fp32.tflite"))
    assert len(artifacts) == 1
    manifest = json.loads(artifacts[0].with_name(artifacts[0].name + ".json").read_text())
    assert manifest["parity"]["passed"] is True and manifest["input_size"] == [256, 256]

    code = ("import sys\nfrom kd_edge.cli import main\ntry:\n"
            f"    main(['deblur', {str(image)!r}, '--out', {str(tmp_path / 'b')!r}])\n"
            "except SystemExit as e:\n    print('EXIT', e.code, 'tensorflow' in sys.modules)")
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert "EXIT 0 False" in again.stdout, again.stdout + again.stderr  # no TensorFlow in a default run
    assert CONVERTED not in again.stderr
    out_a, out_b = read_image(tmp_path / "a" / image.name).rgb, read_image(tmp_path / "b" / image.name).rgb
    assert np.array_equal(out_a, out_b)

    # the Keras model gives the same image (the artifact passed a 60 dB gate; tiles and blending are the same)
    keras = _deblur(kd_edge_exe, cache, image, "--out", tmp_path / "k", "--model",
                    __import__("kd_edge.defaults", fromlist=["x"]).default_model_path("student"))
    assert keras.returncode == 0, keras.stderr
    assert psnr(out_a, read_image(tmp_path / "k" / image.name).rgb) > 60

    with open(artifacts[0], "ab") as f:  # tampered: the sha256 no longer matches, so it is rebuilt
        f.write(b"\0")
    rebuilt = _deblur(kd_edge_exe, cache, image, "--out", tmp_path / "c")
    assert rebuilt.returncode == 0 and CONVERTED in rebuilt.stderr, rebuilt.stderr
    assert np.array_equal(read_image(tmp_path / "c" / image.name).rgb, out_a)


@pytest.mark.slow
def test_default_deblur_uses_keras_where_the_artifact_cannot_serve(kd_edge_exe, image, tmp_path):
    whole = _deblur(kd_edge_exe, tmp_path / "cache", image, "--out", tmp_path / "w", "--tile", "0")
    assert whole.returncode == 0, whole.stderr
    assert "[keras, whole image]" in whole.stdout and CONVERTED not in whole.stderr
    blocked = tmp_path / "afile"
    blocked.write_text("a file where the cache folder would go")
    fallback = _deblur(kd_edge_exe, blocked, image, "--out", tmp_path / "f")
    assert fallback.returncode == 0, fallback.stderr
    notes = [line for line in fallback.stderr.splitlines() if line.startswith("kd-edge: note:")]
    assert len(notes) == 1 and "running the Keras model" in notes[0], fallback.stderr
    assert "[keras, tile 256x256" in fallback.stdout
