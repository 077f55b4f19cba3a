"""kd-edge eval: per-image scores equal direct metric computations, baselines, errors through the console script.

Real tf_keras models (tiny), a real LiteRT artifact, real PNG files; nothing mocked.
"""
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import metrics
from kd_edge.errors import InputFileError, KdEdgeError

SIZE = 64


def _save_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)


def _load_png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def _motion_kernel(rng, size=7):
    kernel = np.zeros((size, size))
    angle = rng.uniform(0, np.pi)
    for t in np.linspace(-1, 1, 4 * size):
        y = int(round(size // 2 + t * (size // 2) * np.sin(angle)))
        x = int(round(size // 2 + t * (size // 2) * np.cos(angle)))
        kernel[y, x] = 1.0
    return kernel / kernel.sum()


def make_dataset(root, count=4, size=SIZE, seed=0, kernels=True, sizes=None):
    """A DBlur-layout split (blur/, sharp/, kernels/) of smooth random images blurred by motion kernels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for i in range(count):
        h = w = sizes[i] if sizes else size
        noise = rng.random((h // 4 + 2, w // 4 + 2, 3))
        sharp = ndimage.zoom(noise, (4, 4, 1), order=3)[:h, :w]
        sharp = np.clip(sharp, 0, 1)
        kernel = _motion_kernel(rng)
        blur = np.stack([ndimage.convolve(sharp[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
        name = f"img_{i:02d}_{h}.png"
        _save_png(root / "sharp" / name, sharp)
        _save_png(root / "blur" / name, blur)
        if kernels:
            (root / "kernels").mkdir(parents=True, exist_ok=True)
            np.save(root / "kernels" / f"img_{i:02d}_{h}.npy", kernel)
    return root


def make_keras_model(path, *, kind="conv", seed=0):
    """A tiny dynamic-shape tf_keras model: a residual 3x3 conv ('conv'), the identity, or one that only takes
    32x32 images through a Reshape ('fails-off-32')."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    if kind == "conv":
        x = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(0, 0.02))(inp)
        out = keras.layers.Add()([inp, x])
    elif kind == "identity":
        out = keras.layers.Activation("linear")(inp)
    elif kind == "fails-off-32":
        x = keras.layers.Reshape((32 * 32 * 3,))(inp)
        out = keras.layers.Reshape((32, 32, 3))(x)
    else:
        raise ValueError(kind)
    model = keras.Model(inp, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data" / "test")
    teacher = make_keras_model(root / "models" / "teacher.keras", kind="conv", seed=1)
    student = make_keras_model(root / "models" / "student.keras", kind="conv", seed=2)
    make_keras_model(root / "models" / "identity.keras", kind="identity")
    return {"root": root, "data": data, "teacher": teacher, "student": student,
            "paths": {n: root / "models" / f"{n}.keras" for n in ("teacher", "student", "identity")}}


@pytest.fixture(scope="module")
def result(setup):
    from kd_edge.report.evaluate import evaluate

    p = setup["paths"]
    return evaluate(setup["root"] / "data", [p["teacher"], p["student"], p["identity"]],
                    names=["teacher", "student", "identity"], seed=3, progress=False)


def test_dataset_root_resolves_to_test_split_and_scores_every_image(setup, result):
    assert Path(result.split_dir) == setup["data"]
    assert result.images == sorted(p.name for p in (setup["data"] / "blur").iterdir())
    assert result.columns == ["blurred", "wiener", "richardson-lucy", "teacher", "student", "identity"]
    for column in result.columns:
        assert np.all(np.isfinite(result.psnr[column])) and np.all(np.isfinite(result.ssim[column]))


def test_csv_equals_direct_metric_computations(setup, result, tmp_path):
    """Every number of per_image.csv equals kd_edge.metrics on the same arrays, computed here independently."""
    from kd_edge.report import baselines
    from kd_edge.report.evaluate import write_csv

    write_csv(result, tmp_path / "per_image.csv")
    with open(tmp_path / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == result.images
    data = setup["data"]
    for row in rows:
        blur = _load_png(data / "blur" / row["file"])
        sharp = _load_png(data / "sharp" / row["file"])
        kernel = np.load(data / "kernels" / (Path(row["file"]).stem + ".npy"))
        expected = {"blurred": blur, "identity": blur}
        for name in ("teacher", "student"):  # 64 px: a multiple of any stride, no padding involved
            expected[name] = np.clip(setup[name].predict(blur[None], verbose=0)[0], 0, 1)
        for name in ("wiener", "richardson-lucy"):
            expected[name] = baselines.restore(name, blur, kernel / kernel.sum())
        for name, image in expected.items():
            assert float(row[f"{name}_psnr"]) == pytest.approx(metrics.psnr(image, sharp), abs=1e-5), (row["file"], name)
            assert float(row[f"{name}_ssim"]) == pytest.approx(metrics.ssim(image, sharp), abs=1e-6), (row["file"], name)
        # The blurred floor is exact: same arrays, same function.
        assert float(row["blurred_psnr"]) == metrics.psnr(blur, sharp)
        assert float(row["identity_psnr"]) == pytest.approx(float(row["blurred_psnr"]), abs=1e-9)


def test_baselines_with_true_kernel_beat_the_blurred_input(result):
    for name in ("wiener", "richardson-lucy"):
        assert np.mean(result.psnr[name]) > np.mean(result.psnr["blurred"]) + 1.0, name


def test_no_kernels_no_baselines_and_no_baselines_flag(setup, tmp_path):
    from kd_edge.report.evaluate import evaluate

    data = make_dataset(tmp_path / "nok", count=2, kernels=False)
    res = evaluate(data, [setup["paths"]["identity"]], progress=False, samples=1)
    assert res.baselines == [] and res.columns == ["blurred", "identity"]
    assert any("kernel" in note for note in res.notes)
    res = evaluate(setup["data"], [setup["paths"]["identity"]], baselines=False, progress=False, limit=2)
    assert res.baselines == [] and len(res.images) == 2


def test_fixed_size_tflite_artifact_is_tiled_over_the_whole_image(setup, tmp_path):
    """A 32x32 LiteRT artifact of the identity scores like the blurred input on 64 px images (tiled)."""
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((32, 32, 3), batch_size=1)
    model = keras.Model(inp, keras.layers.Activation("linear")(inp))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path = tmp_path / "identity32.tflite"
    path.write_bytes(converter.convert())
    from kd_edge.report.evaluate import evaluate

    with pytest.warns(Warning):
        res = evaluate(setup["data"], [path, setup["paths"]["teacher"]], baselines=False, progress=False, samples=0)
    assert res.models[0].kind == "tflite" and res.models[0].name == "identity32"
    np.testing.assert_allclose(res.psnr["identity32"], res.psnr["blurred"], atol=1e-3)


def test_sample_selection_is_seeded_and_crops_scale(result):
    from kd_edge.report.evaluate import centre_crop_box, pick_samples

    assert pick_samples(2, 10, 5) == pick_samples(2, 10, 5)
    picks = pick_samples(3, 10, 5)
    assert len(picks) == 3 and all(128 <= c <= 196 for c in picks.values())
    assert centre_crop_box(256, 256, 150) == (53, 53, 150)
    top, left, size = centre_crop_box(64, 64, 128)
    assert size == 32 and (top, left) == (16, 16)
    assert centre_crop_box(720, 1280, 196) == (262, 542, 196)
    assert len(result.samples) == 2 and [s.name for s in result.samples] == sorted(s.name for s in result.samples)


def test_errors_name_the_problem(setup, tmp_path):
    from kd_edge.report.evaluate import evaluate, parse_names

    with pytest.raises(InputFileError, match="does not exist"):
        evaluate(tmp_path / "missing", [setup["paths"]["identity"]], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no blur/ and sharp/"):
        evaluate(tmp_path / "empty", [setup["paths"]["identity"]], progress=False)
    with pytest.raises(KdEdgeError, match="2 model"):
        parse_names("a,b,c", 2)
    with pytest.raises(KdEdgeError, match="reserved"):
        parse_names("blurred,b", 2)


# ----------------------------------------------------------------------------------------- console script
def _run(exe, *args):
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_console_script_writes_a_report(setup, kd_edge_exe, tmp_path):
    p = setup["paths"]
    bench = {"schema": "kd-edge-bench", "schema_version": 1, "results": [
        {"artifact": str(p["student"]), "name": "student.keras", "target": "keras", "kind": "keras", "threads": 2,
         "size": 256, "status": "ok", "latency_ms": {"mean": 12.0, "p50": 11.5}, "peak_rss_mb": 321.0},
        {"artifact": str(p["teacher"]), "name": "teacher.keras", "target": "keras", "kind": "keras", "threads": 2,
         "size": 256, "status": "ok", "latency_ms": {"p50": 20.0}, "peak_rss_mb": 400.0},
        {"artifact": "/elsewhere/other.tflite", "name": "other.tflite", "target": "fp32", "kind": "tflite",
         "threads": 2, "size": 256, "status": "ok", "latency_ms": {"p50": 3.0}}]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    out = tmp_path / "report"
    proc = _run(kd_edge_exe, "eval", "--data", setup["data"], p["teacher"], p["student"], "--names", "teacher,student",
                "--bench", tmp_path / "bench.json", "--out", out, "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert "teacher" in proc.stdout and "report.html" in proc.stdout
    md = (out / "report.md").read_text()
    assert "| student | keras | 84 |" in md and "| 11.5 | 321 | 2 | -42% | -20% | 256 | ok |" in md, md
    assert "`/elsewhere/other.tflite`" in md
    assert "Tesla P100 / Helen reference" in md and "not comparable" in md
    # A second run without --force refuses to replace the report.
    proc = _run(kd_edge_exe, "eval", "--data", setup["data"], p["teacher"], "--out", out)
    assert proc.returncode == 1 and "--force" in proc.stderr


@pytest.mark.slow
def test_console_script_bad_data_dir_is_one_line(setup, kd_edge_exe, tmp_path):
    proc = _run(kd_edge_exe, "eval", "--data", tmp_path / "nowhere", setup["paths"]["identity"], "--out", tmp_path / "r")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and "does not exist" in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_console_script_failing_model_names_model_and_image(kd_edge_exe, tmp_path):
    data = make_dataset(tmp_path / "mixed", count=2, sizes=[32, 48], kernels=False)
    make_keras_model(tmp_path / "fixed32.keras", kind="fails-off-32")
    proc = _run(kd_edge_exe, "eval", "--data", data, tmp_path / "fixed32.keras", "--out", tmp_path / "r")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("kd-edge: error")]
    assert len(lines) == 1, proc.stderr
    assert "fixed32" in lines[0] and "img_01_48.png" in lines[0], lines[0]
    assert not (tmp_path / "r" / "report.md").exists()


def test_real_shared_pairs(shared_dir, setup, tmp_path):
    """A tiled report on real GoPro pairs (1280x720) from ../shared; the images stay outside the repository."""
    from kd_edge.report.build import write_report
    from kd_edge.report.evaluate import evaluate

    data = shared_dir / "data" / "realblur" / "gopro_deepdeblur"
    res = evaluate(data, [setup["paths"]["teacher"], setup["paths"]["identity"]], names=["teacher", "identity"],
                   tile=256, limit=1, samples=1, progress=False)
    assert res.sizes == [(720, 1280)] and res.baselines == []
    blur = _load_png(data / "blur" / res.images[0])
    sharp = _load_png(data / "sharp" / res.images[0])
    assert res.psnr["blurred"][0] == metrics.psnr(blur, sharp)
    np.testing.assert_allclose(res.psnr["identity"], res.psnr["blurred"], atol=1e-4)
    written = write_report(res, tmp_path / "real")
    assert (tmp_path / "real" / "sample_1.png").is_file() and "report.html" in written


def test_align_scores_a_shifted_pair_at_its_best_shift(setup, tmp_path):
    """A 'blurred' image that is the sharp one shifted by (2, -1) px scores 100 dB with --align 3, not without."""
    from kd_edge.report.evaluate import align_to, evaluate

    rng = np.random.default_rng(0)
    sharp = rng.random((40, 48, 3)).astype(np.float32)
    shifted = np.roll(sharp, (2, -1), axis=(0, 1))
    _save_png(tmp_path / "s" / "sharp" / "a.png", sharp)
    _save_png(tmp_path / "s" / "blur" / "a.png", shifted)
    res = evaluate(tmp_path / "s", [setup["paths"]["identity"]], align=3, samples=0, progress=False)
    assert res.psnr["blurred"][0] == metrics.MAX_PSNR_DB and res.ssim["identity"][0] == pytest.approx(1.0)
    res = evaluate(tmp_path / "s", [setup["paths"]["identity"]], samples=0, progress=False)
    assert res.psnr["blurred"][0] < 15
    a, b = align_to(shifted, sharp, 3)
    assert a.shape == b.shape == (34, 42, 3) and np.array_equal(a, b)
    with pytest.raises(KdEdgeError, match="--align 30"):
        align_to(shifted, sharp, 30)
