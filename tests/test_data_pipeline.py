"""tf.data training pipeline and evaluation pairs on real files: alignment, augmentation, seeds, normalisation."""
import numpy as np
import pytest

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.data.pipeline import eval_pairs, patch_stream, train_dataset
from kd_edge.errors import InputFileError
from kd_edge.images import write_image


def _write_split(split, n=3, h=40, w=56, seed=0):
    """blur = 1 - sharp exactly (in 8 bits), so any misaligned crop or augmentation breaks the identity."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sharp = np.rint(rng.random((h, w, 3)) * 255) / 255
        write_image(split / "sharp" / f"{i:02d}.png", sharp)
        write_image(split / "blur" / f"{i:02d}.png", 1.0 - sharp)


@pytest.fixture
def root(tmp_path):
    _write_split(tmp_path / "train", n=3)
    _write_split(tmp_path / "test", n=2, h=24, w=30, seed=1)
    return tmp_path


def test_train_dataset_batches_aligned_augmented_float_crops(root):
    ds = train_dataset(root, patch=16, batch=4, seed=0)
    batches = list(ds.take(6).as_numpy_iterator())
    for blur, sharp in batches:
        assert blur.shape == sharp.shape == (4, 16, 16, 3) and blur.dtype == np.float32
        assert 0.0 <= blur.min() and blur.max() <= 1.0
        assert np.abs(blur - (1.0 - sharp)).max() < 1e-6  # same crop, same rotation and flip
    patches = np.concatenate([b for _, b in batches])
    assert len({p.tobytes() for p in patches}) == len(patches)  # random crops, not the same one


def test_augmentation_uses_rotations_and_flips(tmp_path):
    # one pair whose image is a single 16x16 patch: every output is a rotation/flip of it
    sharp = np.random.default_rng(2).random((16, 16, 3))
    write_image(tmp_path / "sharp" / "a.png", sharp)
    write_image(tmp_path / "blur" / "a.png", sharp)
    base = (np.rint(sharp * 255) / 255).astype(np.float32)
    variants = [np.rot90(b, k) for b in (base, base[:, ::-1]) for k in range(4)]
    seen = set()
    for n, (blur, _) in enumerate(patch_stream(tmp_path, patch=16, seed=0)()):
        match = [i for i, v in enumerate(variants) if np.allclose(blur, v, atol=1e-6)]
        assert len(match) == 1  # always one of the 8 rotations/flips of the image
        seen.add(match[0])
        if len(seen) == 8 or n > 200:
            break
    assert len(seen) == 8
    plain = next(iter(patch_stream(tmp_path, patch=16, seed=0, augment=False)()))[0]
    assert np.allclose(plain, base, atol=1e-6)


def test_seed_fixes_the_order_and_crops(root):
    def first(seed):
        return np.concatenate([b for b, _ in train_dataset(root, patch=8, batch=2, seed=seed).take(3).as_numpy_iterator()])

    a, b, c = first(7), first(7), first(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_epoch_without_repeat(root):
    ds = train_dataset(root / "train", patch=8, batch=2, seed=0, repeat=False)
    sizes = [b.shape[0] for b, _ in ds.as_numpy_iterator()]
    assert sizes == [2, 1]  # 3 pairs, one crop each, last batch kept


def test_uncached_sets_take_several_crops_per_decode(root):
    cached = patch_stream(root, patch=8, seed=0, repeat=False)
    assert cached.cached and cached.crops_per_image == 1 and len(list(cached())) == 3
    disk = patch_stream(root, patch=8, seed=0, repeat=False, cache_bytes=0)
    assert not disk.cached and disk.crops_per_image == 4
    got = list(disk())
    assert len(got) == 12 and all(np.abs(b - (1 - s)).max() < 1e-6 for b, s in got)
    again = list(patch_stream(root, patch=8, seed=0, repeat=False, cache_bytes=0)())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(got, again))  # the shuffle buffer is seeded too
    ds = train_dataset(root, patch=8, batch=5, seed=0, cache_bytes=0, crops_per_image=2)
    blur, sharp = next(iter(ds.as_numpy_iterator()))
    assert blur.shape == (5, 8, 8, 3) and np.abs(blur - (1 - sharp)).max() < 1e-6


@pytest.mark.filterwarnings("ignore:.*alpha channel dropped")
def test_mixed_modes_are_normalised_and_alpha_warns(tmp_path):
    rng = np.random.default_rng(3)
    img = rng.random((20, 20, 3))
    write_image(tmp_path / "blur" / "grey.png", img, grayscale=True)
    write_image(tmp_path / "sharp" / "grey.png", img)
    write_image(tmp_path / "blur" / "deep.tif", img, bit_depth=16)
    write_image(tmp_path / "sharp" / "deep.tif", img, alpha=np.full((20, 20), 9, np.uint8))
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        out = list(patch_stream(tmp_path, patch=20, seed=0, augment=False, repeat=False)())
    assert len(out) == 2
    for blur, sharp in out:
        assert blur.shape == sharp.shape == (20, 20, 3) and blur.dtype == sharp.dtype == np.float32
    names = [name for name, _, _ in eval_pairs(tmp_path)]
    assert names == ["deep.tif", "grey.png"]
    deep = next(b for n, b, _ in eval_pairs(tmp_path) if n == "deep.tif")
    assert np.abs(deep - img).max() < 1.1 / 65535  # 16-bit precision kept (8 bits would be off by up to 1/510)


def test_size_mismatch_is_an_error_naming_both_files(tmp_path):
    write_image(tmp_path / "blur" / "a.png", np.zeros((32, 32, 3)))
    write_image(tmp_path / "sharp" / "a.png", np.zeros((32, 40, 3)))
    with pytest.raises(InputFileError) as err:
        train_dataset(tmp_path, patch=16)
    message = str(err.value)
    assert str(tmp_path / "blur" / "a.png") in message and str(tmp_path / "sharp" / "a.png") in message
    with pytest.raises(InputFileError, match="never resized"):
        list(eval_pairs(tmp_path))


def test_unusable_inputs(tmp_path):
    with pytest.raises(InputFileError, match="not a directory"):
        train_dataset(tmp_path / "missing")
    (tmp_path / "blur").mkdir()
    (tmp_path / "sharp").mkdir()
    with pytest.raises(InputFileError, match="no blurred/sharp pairs"):
        train_dataset(tmp_path)
    write_image(tmp_path / "blur" / "a.png", np.zeros((10, 10, 3)))
    write_image(tmp_path / "sharp" / "a.png", np.zeros((10, 10, 3)))
    with pytest.raises(InputFileError, match="smaller --patch"), pytest.warns(UserWarning, match="smaller than"):
        train_dataset(tmp_path, patch=16)
    (tmp_path / "blur" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    write_image(tmp_path / "sharp" / "b.png", np.zeros((32, 32, 3)))
    with pytest.raises(InputFileError, match="b.png"):
        train_dataset(tmp_path, patch=8)


def test_eval_pairs_whole_images_from_the_test_split(root):
    got = list(eval_pairs(root))
    assert [n for n, _, _ in got] == ["00.png", "01.png"]
    for _, blur, sharp in got:
        assert blur.shape == sharp.shape == (24, 30, 3) and blur.dtype == np.float32
        assert np.abs(blur - (1 - sharp)).max() < 1e-6
    assert len(list(eval_pairs(root / "train", limit=2))) == 2


def test_pipeline_on_synthetic_data(tmp_path):
    from kd_edge.data.synth import synthesize

    synthesize(tmp_path, count=4, size=48, kernel_min=7, kernel_max=11, seed=2)
    blur, sharp = next(iter(train_dataset(tmp_path, patch=32, batch=2, seed=0).as_numpy_iterator()))
    assert blur.shape == (2, 32, 32, 3)
    assert np.mean(np.abs(blur - sharp)) > 0.005  # the blur is there
    assert len(list(eval_pairs(tmp_path))) == 1


def test_training_validation_split_is_test_or_validation_never_train(tmp_path):
    from kd_edge.distill.datasets import heldout_split

    for split in ("train", "validation"):
        for kind in ("blur", "sharp"):
            (tmp_path / split / kind).mkdir(parents=True)
        if split == "train":
            assert heldout_split(tmp_path) is None  # no held-out data: validation is skipped, not done on train/
            with pytest.raises(InputFileError, match="no test/ or validation/"):
                heldout_split(tmp_path, required=True)
    assert heldout_split(tmp_path) == tmp_path / "validation"
