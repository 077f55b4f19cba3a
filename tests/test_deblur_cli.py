"""``kd-edge deblur`` end to end: real files, a real tiny Keras model, the real console script."""
import json
import os
import subprocess

import numpy as np
import pytest

from kd_edge.cli import main
from kd_edge.images import read_image, write_image


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """edge-tiny saved as .keras twice: dynamic shape, and fixed 64x64 (like a mobile artifact)."""
    import tf_keras as keras

    from kd_edge.models import build, save_model

    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    dynamic = build("edge-tiny", residual_init_scale=1.0)
    save_model(dynamic, root / "tiny.keras")
    fixed = build("edge-tiny", input_size=64, residual_init_scale=1.0)
    fixed.set_weights(dynamic.get_weights())
    save_model(fixed, root / "tiny64.keras")
    return {"dynamic": root / "tiny.keras", "fixed": root / "tiny64.keras"}


def _rng_image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.slow
def test_directory_run_with_a_corrupt_file_through_the_console_script(kd_edge_exe, models, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_image(src / "a.png", _rng_image(70, 300))
    write_image(src / "deep.png", _rng_image(40, 50, 1), bit_depth=16)
    write_image(src / "grey.tif", _rng_image(33, 45, 2), grayscale=True)
    alpha = np.random.default_rng(3).integers(0, 256, (30, 20), dtype=np.uint8)
    write_image(src / "rgba.webp", _rng_image(30, 20, 3), alpha=alpha)
    good = (src / "a.png").read_bytes()
    (src / "broken.jpg").write_bytes(good[:200])  # truncated, and not even a JPEG
    (src / "notes.txt").write_text("not an image: ignored")
    proc = subprocess.run([kd_edge_exe, "deblur", str(src), "--model", str(models["dynamic"]), "--out", str(out),
                           "--tile", "64", "--overlap", "16", "--json", str(tmp_path / "run.json")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kd-edge:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "deblurred 4 image(s)" in proc.stdout and "MPix/s" in proc.stdout and "1 failed" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "deep.png", "grey.tif", "rgba.webp"]
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["summary"]["ok"] == 4 and summary["summary"]["failed"] == 1
    assert {r["input"].rsplit("/", 1)[-1]: r["status"] for r in summary["images"]}["broken.jpg"] == "failed"

    deep = read_image(out / "deep.png")
    assert deep.bit_depth == 16 and deep.mode == "RGB"
    assert len(np.unique(deep.rgb)) > 1000  # really 16-bit content, not 8-bit levels
    grey = read_image(out / "grey.tif")
    assert grey.mode == "L" and grey.rgb.shape == (33, 45, 3)
    rgba = read_image(out / "rgba.webp")
    assert rgba.mode == "RGBA" and np.array_equal(rgba.alpha, alpha)
    a_in, a_out = read_image(src / "a.png").rgb, read_image(out / "a.png").rgb
    assert a_out.shape == a_in.shape and np.abs(a_out - a_in).mean() > 0.01  # the model did change it


def test_outputs_are_kept_without_force_and_never_overwrite_inputs(models, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "x.png", _rng_image(40, 50))
    model = str(models["dynamic"])
    code, stdout, _ = _run(["deblur", str(src / "x.png"), "--model", model, "--out", str(out)], capsys)
    assert code == 0 and "deblurred 1 image(s)" in stdout
    (out / "x.png").write_bytes(b"previous result")
    code, stdout, err = _run(["deblur", str(src / "x.png"), "--model", model, "--out", str(out)], capsys)
    assert code == 0 and "kept existing" in err and (out / "x.png").read_bytes() == b"previous result"
    code, stdout, _ = _run(["deblur", str(src / "x.png"), "--model", model, "--out", str(out), "--force"], capsys)
    assert code == 0 and read_image(out / "x.png").rgb.shape == (40, 50, 3)

    before = (src / "x.png").read_bytes()
    for target in (src, tmp_path / "link"):  # --out is the input folder itself, or a symlink to it
        if target != src:
            os.symlink(src, target)
        code, _, err = _run(["deblur", str(src), "--model", model, "--out", str(target), "--force"], capsys)
        assert code == 1 and "would overwrite the input" in err
        assert (src / "x.png").read_bytes() == before
    linked = tmp_path / "linkout"  # an existing output that is a symlink to the input
    linked.mkdir()
    os.symlink(src / "x.png", linked / "x.png")
    code, _, err = _run(["deblur", str(src / "x.png"), "--model", model, "--out", str(linked), "--force"], capsys)
    assert code == 1 and "would overwrite the input" in err and (src / "x.png").read_bytes() == before


def test_exif_orientation_is_applied(models, tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "rot.jpg"
    img = Image.fromarray((_rng_image(40, 60) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(src, exif=exif.tobytes(), quality=95)
    code, _, _ = _run(["deblur", str(src), "--model", str(models["dynamic"]), "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    assert read_image(tmp_path / "o" / "rot.jpg").rgb.shape == (60, 40, 3)


def test_fixed_size_model_tiles_at_its_size_and_seam_check(models, tmp_path, capsys):
    src = tmp_path / "big.png"
    write_image(src, _rng_image(150, 230))
    fixed, dynamic = str(models["fixed"]), str(models["dynamic"])
    code, stdout, _ = _run(["deblur", str(src), "--model", fixed, "--out", str(tmp_path / "o1")], capsys)
    assert code == 0 and "tile 64x64" in stdout
    code, _, err = _run(["deblur", str(src), "--model", fixed, "--out", str(tmp_path / "o2"), "--tile", "128"], capsys)
    assert code == 1 and "fixed input size 64x64" in err
    code, _, err = _run(["deblur", str(src), "--model", fixed, "--out", str(tmp_path / "o2"), "--seam-check"], capsys)
    assert code == 1 and "dynamic-shape" in err
    code, _, err = _run(["deblur", str(src), "--model", dynamic, "--out", str(tmp_path / "o2"), "--tile", "0",
                         "--seam-check"], capsys)
    assert code == 2  # usage error
    code, stdout, err = _run(["deblur", str(src), "--model", dynamic, "--out", str(tmp_path / "o3"), "--tile", "96",
                              "--seam-check", "--json", str(tmp_path / "s.json")], capsys)
    assert code == 0 and "seam check big.png" in err
    db = json.loads((tmp_path / "s.json").read_text())["images"][0]["seam_psnr_db"]
    assert db >= 45
    # the whole image at once gives the same picture as the tiles, up to the seam PSNR
    code, _, _ = _run(["deblur", str(src), "--model", dynamic, "--out", str(tmp_path / "o4"), "--tile", "0"], capsys)
    assert code == 0
    whole = read_image(tmp_path / "o4" / "big.png").rgb
    tiled = read_image(tmp_path / "o3" / "big.png").rgb
    assert np.abs(whole - tiled).max() <= 2.5 / 255 and np.abs(whole - tiled).mean() < 0.1 / 255
