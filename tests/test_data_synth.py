"""Synthetic blur: real kernels, real convolution, exact regeneration, DBlur layout on disk."""
import json
import warnings

import numpy as np
import pytest
from scipy.signal import convolve2d

from kd_edge.data.dblur import find_pairs
from kd_edge.data.dead_leaves import dead_leaves
from kd_edge.data.kernels import blur, gaussian_kernel, motion_kernel
from kd_edge.data.pipeline import representative_images
from kd_edge.data.synth import regenerate, synth_pairs, synthesize
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.images import read_image, write_image
from kd_edge.metrics import psnr


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "synth.json"}


@pytest.mark.parametrize("size", [13, 21, 29])
def test_motion_kernel_is_normalised_centred_and_not_trivial(size):
    rng = np.random.default_rng(size)
    for _ in range(5):
        k = motion_kernel(rng, size)
        assert k.shape == (size, size) and k.dtype == np.float32
        assert abs(float(k.sum()) - 1.0) < 1e-5 and k.min() >= 0
        rows, cols = np.mgrid[0:size, 0:size]
        c = (size - 1) / 2
        assert abs((k * rows).sum() - c) < 0.05 and abs((k * cols).sum() - c) < 0.05  # centre of mass
        assert (k > 1e-3).sum() >= 4  # a trajectory, not a delta
        border = k[0].sum() + k[-1].sum() + k[1:-1, 0].sum() + k[1:-1, -1].sum()
        assert border < 0.02  # the trajectory fits inside the support
    with pytest.raises(ValueError):
        motion_kernel(rng, 12)


def test_motion_kernels_differ_between_draws_and_repeat_with_the_seed():
    a = motion_kernel(np.random.default_rng(1), 21)
    b = motion_kernel(np.random.default_rng(2), 21)
    assert not np.allclose(a, b)
    assert np.array_equal(a, motion_kernel(np.random.default_rng(1), 21))


def test_blur_is_a_true_convolution_with_symmetric_boundary():
    rng = np.random.default_rng(3)
    img = rng.random((40, 50)).astype(np.float32)
    k = motion_kernel(rng, 13)
    ours = blur(img, k)
    ref = convolve2d(img, k, mode="same", boundary="symm")
    assert np.abs(ours - ref).max() < 1e-5
    g = gaussian_kernel(1.5)
    assert abs(g.sum() - 1) < 1e-6 and g.shape == (11, 11)


def test_dead_leaves_look_like_images():
    img = dead_leaves(np.random.default_rng(0), 96)
    assert img.shape == (96, 96, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.05
    # edges and flat areas: gradient magnitude is heavy-tailed like a natural image's
    grad = np.abs(np.diff(img.mean(axis=2), axis=1))
    assert np.median(grad) < 0.02 < np.percentile(grad, 99)


def test_synth_writes_dblur_layout_with_kernels_and_parameters(tmp_path):
    meta = synthesize(tmp_path / "ds", count=8, size=64, seed=5, test_fraction=0.25, kernel_min=9, kernel_max=15)
    root = tmp_path / "ds"
    saved = json.loads((root / "synth.json").read_text())
    assert saved["seed"] == 5 and saved["count"] == 8 and saved["size"] == 64 and saved["kernel_max"] == 15
    assert saved["train"] == 6 and saved["test"] == 2 and meta["pairs"] == 8
    for split, n in (("train", 6), ("test", 2)):
        pairs = find_pairs(root / split)
        assert len(pairs) == n
        for pair in pairs:
            kernel = np.load(root / split / "kernels" / (pair.blur.stem + ".npy"))
            assert abs(kernel.sum() - 1) < 1e-5 and kernel.shape[0] in range(9, 16, 2)
            sharp, blurred = read_image(pair.sharp), read_image(pair.blur)
            assert sharp.rgb.shape == blurred.rgb.shape == (64, 64, 3)
            # the saved kernel explains the blur (interior, away from the 8-bit rounding): within quantisation
            pad = kernel.shape[0]
            recon = blur(sharp.rgb, kernel)[pad:-pad, pad:-pad]
            assert np.abs(recon - blurred.rgb[pad:-pad, pad:-pad]).max() < 1.5 / 255
    records = {r["name"]: r for r in saved["images"]}
    assert len(records) == 8 and all("psnr" in r and "source" in r for r in records.values())


def test_synth_same_seed_identical_other_seed_different(tmp_path):
    opts = dict(count=4, size=48, kernel_min=7, kernel_max=11)
    synthesize(tmp_path / "a", seed=11, **opts)
    synthesize(tmp_path / "b", seed=11, **opts)
    synthesize(tmp_path / "c", seed=12, **opts)
    a, b, c = (_tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() != c.keys() or any(a[k] != c[k] for k in a)
    assert sum(a[k] != c.get(k) for k in a) >= len(a) // 2


def test_regenerate_from_synth_json(tmp_path):
    synthesize(tmp_path / "first", count=3, size=40, kernel_min=5, kernel_max=9, seed=21, noise=0.02, defocus=1.0)
    meta = regenerate(tmp_path / "first" / "synth.json", tmp_path / "again")
    assert meta["seed"] == 21 and meta["noise"] == 0.02
    assert _tree_bytes(tmp_path / "first") == _tree_bytes(tmp_path / "again")
    (tmp_path / "bogus.json").write_text('{"format": "other"}')
    with pytest.raises(InputFileError, match="not a kd-edge synth.json"):
        regenerate(tmp_path / "bogus.json", tmp_path / "x")


def test_parallel_workers_write_the_same_files(tmp_path):
    opts = dict(count=6, size=40, kernel_min=5, kernel_max=9, seed=4)
    serial = synthesize(tmp_path / "one", **opts)
    parallel = synthesize(tmp_path / "two", workers=2, **opts)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")
    assert serial["images"] == parallel["images"] and parallel["workers"] == 2


def test_default_blur_is_real_and_in_the_psnr_band():
    """Default kernels (13-29 px) at the default 256 px: blurred vs sharp PSNR in a plausible 18-32 dB band."""
    values = np.array([psnr(p.blur, p.sharp) for p in synth_pairs(10, 256, seed=0)])
    assert 18.0 <= np.median(values) <= 32.0
    assert np.mean((values >= 17.0) & (values <= 35.0)) >= 0.8
    assert values.max() < 60  # never a copy of the sharp image


def test_defocus_and_noise_lower_psnr():
    plain = [p.info["psnr"] for p in synth_pairs(3, 64, seed=1, kernel_min=7, kernel_max=11)]
    noisy = [p.info["psnr"] for p in synth_pairs(3, 64, seed=1, kernel_min=7, kernel_max=11, defocus=2.0, noise=0.05)]
    assert np.mean(noisy) < np.mean(plain) - 0.5


def test_synth_from_a_source_folder_tiles_large_images(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    write_image(src / "big.png", dead_leaves(rng, 130, width=200))  # 200x130: 3 x 2 tiles of 64
    write_image(src / "sub" / "grey.tif", dead_leaves(rng, 70)[:, :, 0], bit_depth=16)  # 1 tile, 16-bit grey
    write_image(src / "small.jpg", dead_leaves(rng, 40))  # smaller than --size: skipped with a warning
    (src / "notes.txt").write_text("not an image")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    with pytest.warns(UserWarning, match="small.jpg"):
        meta = synthesize(tmp_path / "out", src, count=0, size=64, seed=0, test_fraction=0.0,
                          kernel_min=7, kernel_max=9)
    assert meta["pairs"] == 7 and meta["test"] == 0
    assert {r["source"] for r in meta["images"]} == {"big.png", "sub/grey.tif"}
    assert meta["source"]["skipped"][0]["file"] == "small.jpg"
    assert before == {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}  # inputs untouched
    # more pairs than tiles: random crops fill the rest
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = synthesize(tmp_path / "out2", src, count=10, size=64, seed=0, kernel_min=7, kernel_max=9)
    assert meta["pairs"] == 10


def test_max_side_shrinks_large_sources_before_tiling_and_regenerates(tmp_path):
    """A 256x192 photo with max_side 128 is area-shrunk to 128x96 first: 2 x 2 tiles of 48 instead of 5 x 4, and an
    untouched pair's sharp tile is a crop of the shrunk photo (not of the original)."""
    import cv2

    src = tmp_path / "src"
    rng = np.random.default_rng(3)
    photo = dead_leaves(rng, 192, width=256)
    write_image(src / "big.png", photo)
    write_image(src / "small.png", dead_leaves(rng, 100))  # already <= 128: left as it is, 2 x 2 tiles
    opts = dict(count=0, size=48, seed=5, test_fraction=0.0, kernel_min=1, kernel_max=1, identity=1.0)
    full = synthesize(tmp_path / "full", src, **opts)
    meta = synthesize(tmp_path / "shrunk", src, max_side=128, **opts)
    assert full["pairs"] == 5 * 4 + 2 * 2 and meta["pairs"] == 2 * 2 + 2 * 2
    assert meta["camera"]["max_side"] == 128 and meta["source"]["shrunk"] == 1
    original = read_image(src / "big.png").rgb
    shrunk = cv2.resize(original, (128, 96), interpolation=cv2.INTER_AREA)
    for record in (r for r in meta["images"] if r["source"] == "big.png"):
        tile = read_image(tmp_path / "shrunk" / "train" / "sharp" / record["name"]).rgb
        y, x = record["y"], record["x"]
        assert np.abs(tile - shrunk[y:y + 48, x:x + 48]).max() <= 1 / 255 + 1e-6
    again = regenerate(tmp_path / "shrunk" / "synth.json", tmp_path / "again")
    assert again["camera"]["max_side"] == 128
    assert _tree_bytes(tmp_path / "shrunk") == _tree_bytes(tmp_path / "again")
    with pytest.raises(KdEdgeError, match="--max-side 32 must be 0"):
        synthesize(tmp_path / "x", src, count=2, size=48, kernel_min=1, kernel_max=1, max_side=32)
    with pytest.raises(KdEdgeError, match="give a SRC_DIR"):
        synthesize(tmp_path / "x", count=2, size=48, kernel_min=1, kernel_max=1, max_side=128)


def test_identity_native_cuts_untouched_pairs_from_the_photo_as_stored(tmp_path):
    """With max_side, --identity-native cuts each untouched pair around the same tile centre from the unshrunk photo
    (recorded as native_x/native_y); blurred pairs and photos already small enough stay as without it."""
    src = tmp_path / "src"
    rng = np.random.default_rng(4)
    write_image(src / "big.png", dead_leaves(rng, 192, width=256))
    write_image(src / "small.png", dead_leaves(rng, 100))
    opts = dict(count=0, size=48, seed=2, test_fraction=0.0, kernel_min=1, kernel_max=9, max_side=128, identity=0.5)
    plain = synthesize(tmp_path / "plain", src, **opts)
    native = synthesize(tmp_path / "native", src, identity_native=True, **opts)
    assert native["camera"]["identity_native"] is True and "own resolution" in native["blur_model"]
    original = read_image(src / "big.png").rgb
    kinds = set()
    for before, record in zip(plain["images"], native["images"]):
        name = record["name"]
        tile = read_image(tmp_path / "native" / "train" / "sharp" / name).rgb
        same = tile.tobytes() == read_image(tmp_path / "plain" / "train" / "sharp" / name).rgb.tobytes()
        if record["untouched"] and record["source"] == "big.png":
            kinds.add("native")
            y, x = record["native_y"], record["native_x"]
            assert (y, x) == (min(round((record["y"] + 24) * 2 - 24), 192 - 48), min(round((record["x"] + 24) * 2 - 24), 256 - 48))
            assert np.array_equal(tile, original[y:y + 48, x:x + 48]) and not same
            assert read_image(tmp_path / "native" / "train" / "blur" / name).rgb.tobytes() == tile.tobytes()
        else:
            kinds.add("untouched small" if record["untouched"] else "blurred")
            assert same and "native_x" not in record and record == before
    assert kinds == {"native", "untouched small", "blurred"}
    again = regenerate(tmp_path / "native" / "synth.json", tmp_path / "again")
    assert _tree_bytes(tmp_path / "native") == _tree_bytes(tmp_path / "again") and again["camera"]["identity_native"]
    with pytest.raises(KdEdgeError, match="--identity-native .* needs both"):
        synthesize(tmp_path / "x", src, identity_native=True, **dict(opts, max_side=0))


def test_synth_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, count=2, size=32, kernel_min=5, kernel_max=7)
    stamp = (out / "synth.json").read_bytes()
    with pytest.raises(InputFileError, match="--force"):
        synthesize(out, count=3, size=32, kernel_min=5, kernel_max=7)
    assert (out / "synth.json").read_bytes() == stamp
    meta = synthesize(out, count=3, size=32, kernel_min=5, kernel_max=7, force=True)
    assert meta["pairs"] == 3 and len(list((out / "train" / "blur").iterdir())) + len(list((out / "test" / "blur").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_synth_rejects_bad_parameters(tmp_path):
    with pytest.raises(KdEdgeError, match="kernel"):
        synthesize(tmp_path / "x", count=2, size=32, kernel_min=15, kernel_max=9)
    with pytest.raises(KdEdgeError, match="--size"):
        synthesize(tmp_path / "x", count=2, size=32, kernel_min=13, kernel_max=41)
    with pytest.raises(InputFileError, match="no images"):
        (tmp_path / "empty").mkdir()
        synthesize(tmp_path / "x", tmp_path / "empty", count=2, size=32)
    assert not (tmp_path / "x").exists()


def test_representative_images_builtin_and_from_a_folder(tmp_path):
    x = representative_images(count=3, size=48, seed=0)
    assert x.shape == (3, 48, 48, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x, representative_images(count=3, size=48, seed=0))
    synthesize(tmp_path / "ds", count=3, size=40, kernel_min=5, kernel_max=9, test_fraction=0)
    y = representative_images(tmp_path / "ds", count=5, size=32, seed=1)  # fewer files than count: cycles
    assert y.shape == (5, 32, 32, 3)
    z = representative_images(tmp_path / "ds" / "train" / "blur", count=2, size=64)  # smaller: padded
    assert z.shape == (2, 64, 64, 3)
