"""Do-no-harm validation while training (``--val-sharp``): sharp crops are scored and steer the best step."""
import json
import os
import subprocess

import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
import tf_keras as keras

from kd_edge import metrics
from kd_edge.distill import harm_validation
from kd_edge.distill.trainer import train
from kd_edge.errors import InputFileError
from kd_edge.images import write_image
from kd_edge.models import build


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory):
    """Five textured 'sharp photos' of different sizes in two sub-folders (one smaller than the crop)."""
    root = tmp_path_factory.mktemp("sharp")
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(70, 90), (64, 64), (40, 52), (96, 80), (66, 120)]):
        y, x = np.mgrid[0:h, 0:w] / 9.0
        img = 0.5 + 0.3 * np.sin(x + i)[..., None] * np.cos(y)[..., None] + 0.1 * rng.random((h, w, 3))
        write_image(root / ("a" if i % 2 else "b") / f"p{i}.png", np.clip(img, 0, 1))
    (root / "notes.txt").write_text("not an image")
    return root


def _shift_model(offset):
    x = keras.Input((None, None, 3))
    return keras.Model(x, keras.layers.Rescaling(1.0, offset=offset)(x))


def test_sharp_crops_are_native_centre_crops_spread_over_the_folder(sharp_dir):
    crops = harm_validation.load_sharp_crops(sharp_dir, count=3, crop=48, stride=16)
    names = [name for name, _ in crops]
    files = [str(p.relative_to(sharp_dir)) for p in harm_validation.sharp_photo_files(sharp_dir)]
    assert len(files) == 5 and "notes.txt" not in files
    assert names == [files[0], files[2], files[4]]  # first, middle, last of the sorted list
    for name, crop in crops:
        assert crop.shape[0] % 16 == 0 and crop.shape[1] % 16 == 0 and crop.shape[2] == 3
        assert crop.dtype == np.float32
    # a photo smaller than the crop gives its largest stride multiple, cut from its centre without resizing
    from kd_edge.images import read_image

    small = dict(harm_validation.load_sharp_crops(sharp_dir, count=5, crop=48, stride=16))["b/p2.png"]
    full = read_image(sharp_dir / "b" / "p2.png").rgb
    assert small.shape[:2] == (32, 48)
    np.testing.assert_array_equal(small, full[4:36, 2:50])


def test_harm_psnr_measures_how_much_a_model_changes_sharp_crops(sharp_dir):
    crops = harm_validation.load_sharp_crops(sharp_dir, count=5, crop=48)
    identity = harm_validation.harm_psnr(_shift_model(0.0), crops)
    shifted = harm_validation.harm_psnr(_shift_model(0.05), crops)
    assert identity["min"] >= 99.0  # unchanged (the PSNR of identical images is capped)
    assert shifted["mean"] == pytest.approx(np.mean([metrics.psnr(np.clip(c + 0.05, 0, 1), c) for _, c in crops]),
                                            abs=1e-3)
    assert 24.0 < shifted["min"] <= shifted["mean"] < 27.0  # a 0.05 offset is about 26 dB, less where it clips
    assert harm_validation.harm_psnr(_shift_model(0.0), []) is None


def test_selection_score_charges_each_db_below_the_floor():
    assert harm_validation.selection_score(28.0, None) == 28.0
    assert harm_validation.selection_score(28.0, 40.0, 35.0) == 28.0
    assert harm_validation.selection_score(28.0, 32.5, 35.0) == pytest.approx(25.5)


def test_a_wrong_val_sharp_folder_is_one_clear_error(tmp_path):
    with pytest.raises(InputFileError, match="must be a folder"):
        harm_validation.sharp_photo_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no image files"):
        harm_validation.sharp_photo_files(tmp_path / "empty")


@pytest.mark.slow
def test_training_with_val_sharp_records_harm_and_picks_the_best_score(tiny_data, sharp_dir, tmp_path):
    keras.utils.set_random_seed(2)
    out = tmp_path / "run"
    # a floor far above any real figure charges every step, so the best step is the one with the highest
    # held-out PSNR + do-no-harm PSNR, not necessarily the highest held-out PSNR
    train(build("edge-tiny"), data=tiny_data, out=out, steps=6, val_every=2, seed=2, batch=2, patch=32,
          val_count=2, val_crop=48, progress=False, lr=3e-3, val_sharp=sharp_dir, harm_count=3, harm_floor=200.0)
    info = json.loads((out / "train.json").read_text())
    assert info["val"]["sharp"]["crops"] == 3 and info["val"]["sharp"]["floor_db"] == 200.0
    history = info["history"]
    assert [r["step"] for r in history] == [2, 4, 6]
    for r in history:
        assert r["harm_min"] <= r["harm_psnr"]
        assert r["score"] == pytest.approx(r["psnr"] - (200.0 - r["harm_psnr"]), abs=1e-4)
    best = max(history, key=lambda r: r["score"])
    assert info["best"]["step"] == best["step"]
    assert info["best"]["psnr"] == pytest.approx(best["psnr"]) and info["best"]["harm_psnr"] == best["harm_psnr"]
    manifest = json.loads((out / "model.keras.json").read_text())
    assert manifest["validation"]["harm_psnr"] == best["harm_psnr"]


@pytest.mark.slow
def test_cli_val_sharp_reports_the_kept_psnr_and_refuses_a_wrong_folder(kd_edge_exe, tiny_data, sharp_dir,
                                                                        tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    common = ["train-teacher", "--arch", "edge-tiny", "--data", str(tiny_data), "--steps", "2", "--batch", "2",
              "--patch", "32", "--val-count", "2", "--val-crop", "48", "--no-progress"]
    r = subprocess.run([kd_edge_exe, *common, "--val-sharp", str(tmp_path / "nope"), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 1 and "nope" in r.stderr and "folder of sharp photos" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x" / "ckpt").exists()
    r = subprocess.run([kd_edge_exe, *common, "--val-sharp", str(sharp_dir), "--val-sharp-count", "2",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr
    assert "sharp photos kept at" in r.stdout
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["val"]["sharp"]["crops"] == 2 and "harm_psnr" in info["best"]
