"""benchmarks/blur_sweep.py: gain by blur size, with real tf_keras models, real kernels and real files."""
import json

import numpy as np
import pytest
from PIL import Image

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge import metrics
from kd_edge.benchmarks import blur_sweep
from kd_edge.models import build, save_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    model = build("edge-tiny")
    ending = model.get_layer("ending")  # a zero final conv: the bounded output is exactly the input
    ending.set_weights([np.zeros_like(w) for w in ending.get_weights()])
    save_model(model, root / "identity.keras")
    return root / "identity.keras"


def test_sweep_json_gain_by_size(tiny, tmp_path):
    out = tmp_path / "sweep.json"
    rc = blur_sweep.main([str(tiny), "--names", "tiny", "--images", "2", "--crop", "32", "--sizes", "1,5,11",
                          "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == blur_sweep.FORMAT and doc["host"]["isa_flags"]
    assert list(doc["sizes"]) == ["1", "5", "11"]
    blurred = [doc["sizes"][s]["blurred_psnr_db"] for s in ("1", "5", "11")]
    assert blurred[0] > blurred[1] > blurred[2]  # a bigger kernel blurs more
    for size, entry in doc["sizes"].items():
        assert entry["images"] == 4  # 2 crops x 2 trajectories
        assert ("richardson_lucy_true_kernel" in entry) == (size != "1")
        # the identity model returns its input: no gain and nothing made worse, at every size
        assert entry["models"]["tiny"] == {"mean_gain_db": 0.0, "worse_fraction": 0.0}
    # the non-blind reference, given the true kernel, does remove mild blur
    assert doc["sizes"]["5"]["richardson_lucy_true_kernel"]["mean_gain_db"] > 1.0


def test_blurred_set_is_reproducible_and_matches_a_direct_computation():
    images, sources = blur_sweep.sharp_images(count=2, crop=32, seed=5)
    assert len(images) == 2 and len(sources) == 2 and images[0].shape == (32, 32, 3)
    a = blur_sweep.blurred_set(images, [7], ["linear"], noise=0.0, seed=5)
    b = blur_sweep.blurred_set(images, [7], ["linear"], noise=0.0, seed=5)
    (sharp, blur, kernel), = a[7][:1]
    assert np.array_equal(blur, b[7][0][1])
    from kd_edge.data import kernels

    direct = np.round(kernels.blur(sharp, kernel) * 255.0) / 255.0
    assert np.allclose(blur, direct) and metrics.psnr(blur, sharp) < 40


def test_sharp_folder_and_bad_input(tmp_path, capsys):
    folder = tmp_path / "sharp"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    images, sources = blur_sweep.sharp_images(sharp_dir=folder, count=4, crop=32)
    assert len(images) == 1 and images[0].shape == (32, 32, 3) and sources[0].endswith("a.png")
    assert blur_sweep.main(["--sharp", str(folder), "--crop", "64", "--images", "1"]) == 1
    assert "a.png: 48x40 is smaller than --crop 64" in capsys.readouterr().err
    assert blur_sweep.main(["--sharp", str(tmp_path / "none")]) == 1
    assert "no images found" in capsys.readouterr().err
    assert blur_sweep.main(["--trajectories", "zigzag"]) == 2
    assert "unknown trajectory zigzag" in capsys.readouterr().err
