"""kd_edge.stress_inputs: the adversarial inputs of issue 13 are what their names say, at legal sizes, and real photos
are centre-cropped to the model's stride. Real files, a real (freshly built) edge-tiny; nothing mocked."""
import numpy as np
import pytest
from PIL import Image

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.errors import KdEdgeError
from kd_edge.stress_inputs import (SATURATED, all_stress_inputs, centre_crop_to_multiple, real_photo_inputs,
                                   stress_inputs)

REQUIRED = {"black", "white", *SATURATED, "edge_black_white", "uniform_noise", "checkerboard_1px",
            "checkerboard_4px", "near_black_noise", "colour_ramp"}


def _png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)


def test_every_adversarial_input_is_there_in_range_and_deterministic():
    images = dict(stress_inputs(64))
    assert set(images) == REQUIRED and len(images) == 14
    for name, img in images.items():
        assert img.shape == (64, 64, 3) and img.dtype == np.float32, name
        assert img.min() >= 0.0 and img.max() <= 1.0, name
    assert np.all(images["black"] == 0) and np.all(images["white"] == 1)
    for name, rgb in SATURATED.items():
        assert np.all(images[name] == np.asarray(rgb, np.float32)), name
    again = dict(stress_inputs(64))
    assert all(np.array_equal(images[n], again[n]) for n in images)


def test_patterns_have_the_structure_their_names_claim():
    images = dict(stress_inputs(32))
    one, four = images["checkerboard_1px"][..., 0], images["checkerboard_4px"][..., 0]
    assert np.all(one[:, 1:] != one[:, :-1]) and np.all(one[1:] != one[:-1])      # every neighbour differs
    assert np.all(four[:4, :4] == four[0, 0]) and np.all(four[:4, 4:8] != four[0, 0])
    edge = images["edge_black_white"]
    assert np.all(edge[:, :16] == 0) and np.all(edge[:, 16:] == 1)
    dark = images["near_black_noise"]
    assert dark.max() <= 0.021 and dark.std() > 0.002                              # faint, but not constant
    noise = images["uniform_noise"]
    assert 0.45 < noise.mean() < 0.55 and noise.std() > 0.25
    ramp = images["colour_ramp"]
    assert ramp[0, 0, 0] == 0 and ramp[0, -1, 0] == 1 and ramp[-1, 0, 1] == 1 and ramp[0, 0, 2] == 1


def test_sizes_must_be_multiples_of_8_and_of_the_stride():
    with pytest.raises(KdEdgeError, match="multiple of 8"):
        stress_inputs(60)
    with pytest.raises(KdEdgeError, match="stride 16"):
        stress_inputs(40, stride=16)
    assert stress_inputs(48, stride=16)[0][1].shape == (48, 48, 3)


def test_centre_crop_and_real_photos_from_a_realblur_folder(tmp_path):
    img = np.random.default_rng(0).random((255, 255, 3)).astype(np.float32)
    crop = centre_crop_to_multiple(img, 8)
    assert crop.shape == (248, 248, 3) and np.array_equal(crop, img[3:251, 3:251])
    assert centre_crop_to_multiple(img, 8, max_side=100).shape == (96, 96, 3)

    assert real_photo_inputs(tmp_path / "absent") == []
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        sharp = rng.random((50, 70, 3))
        _png(tmp_path / "rb" / "faces" / "sharp" / name, sharp)
        _png(tmp_path / "rb" / "faces" / "blur" / name, sharp * 0.5)
    _png(tmp_path / "rb" / "general_noGT" / "photo.png", rng.random((41, 33, 3)))
    photos = dict(real_photo_inputs(tmp_path / "rb", stride=16))
    assert sorted(photos) == ["faces/a.png/blur", "faces/a.png/sharp", "faces/b.png/blur", "faces/b.png/sharp",
                              "general_noGT/photo.png/blur"]
    assert photos["faces/a.png/sharp"].shape == (48, 64, 3) and photos["general_noGT/photo.png/blur"].shape == (32, 32, 3)
    assert photos["faces/a.png/blur"].max() <= 0.51                      # the blurred half, not the sharp one
    assert len(all_stress_inputs(32, 16, root=tmp_path / "rb")) == 14 + 5


def test_real_photos_of_the_shared_folder_are_cropped_to_the_stride(shared_dir):
    from kd_edge.data import realblur

    root = shared_dir / "data" / "realblur"
    photos = real_photo_inputs(root, stride=8, max_side=96)
    pairs = sum(len(list((s / "blur").iterdir())) for s in realblur.paired_sets(root))
    assert len(photos) == 2 * pairs + len(realblur.unpaired_photos(root))
    assert all(img.shape[0] % 8 == 0 and img.shape[1] % 8 == 0 and max(img.shape[:2]) <= 96 for _, img in photos)
    assert all(img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1 for _, img in photos)


def test_a_fresh_edge_tiny_runs_every_stress_input_to_a_finite_output():
    import tf_keras as keras

    from kd_edge.models import build, model_stride

    keras.utils.set_random_seed(0)
    model = build("edge-tiny")
    batch = np.stack([img for _, img in stress_inputs(32, model_stride(model))])
    out = model(batch, training=False).numpy()
    assert out.shape == batch.shape and np.all(np.isfinite(out))
