"""The camera model of `kd-edge data synth` (issue 13): each option does what it claims, and stays reproducible."""
import hashlib
import json
from functools import partial

import numpy as np
import pytest

from kd_edge.data import camera
from kd_edge.data.kernels import TRAJECTORIES, blur, sample_kernel
from kd_edge.data.synth import CAMERA_PRESET, SynthParams, _make_pair, _Sources, _BuiltinSource, regenerate, synthesize
from kd_edge.errors import KdEdgeError
from kd_edge.metrics import psnr


def _pair(index=0, **options):
    params = SynthParams(count=1, size=64, seed=3, **options)
    params.validate()
    return _make_pair(index, params, _Sources(builtin=_BuiltinSource(params.photo_fraction)))


def _tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "synth.json"):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_one_pixel_kernel_is_the_identity_and_mild_bias_draws_small_kernels():
    pair = _pair(kernel_min=1, kernel_max=1)
    assert pair.kernel.shape == (1, 1) and pair.info["kernel_size"] == 1
    np.testing.assert_array_equal(pair.blur, pair.sharp)  # no noise asked: exactly the sharp image
    noisy = _pair(kernel_min=1, kernel_max=1, noise=0.01)
    assert 35.0 < psnr(noisy.blur, noisy.sharp) < 60.0  # nearly identity: only the noise
    sizes = {b: [_pair(i, kernel_min=1, kernel_max=29, kernel_bias=b).info["kernel_size"] for i in range(60)]
             for b in (1.0, 3.0)}
    assert np.median(sizes[3.0]) < np.median(sizes[1.0]) and min(sizes[3.0]) == 1


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_every_trajectory_gives_a_normalised_centred_kernel(kind):
    kernel = sample_kernel(np.random.default_rng(5), 21, kind)
    assert kernel.shape == (21, 21) and abs(kernel.sum() - 1) < 1e-5 and kernel.min() >= 0
    rows, cols = np.mgrid[0:21, 0:21]
    assert abs((kernel * rows).sum() - 10) < 0.05 and abs((kernel * cols).sum() - 10) < 0.05
    assert (kernel > 1e-3).sum() >= 3  # a real blur, not a point
    if kind == "frames":  # discrete dots, as frame averaging makes, not a continuous streak
        assert (kernel > 1e-3).sum() <= 15 * 4


def test_srgb_blur_share_blurs_those_pairs_in_encoded_values(tmp_path):
    """--srgb-blur F: with linear light on, a share F of the pairs is blurred in sRGB values (no gamma round trip,
    no highlight boost), the rest stays in linear light; each pair says which."""
    from kd_edge.data.dead_leaves import dead_leaves
    from kd_edge.data.synth import _FolderSource
    from kd_edge.images import write_image

    write_image(tmp_path / "src" / "a.png", dead_leaves(np.random.default_rng(1), 96))
    source = _Sources(_FolderSource(tmp_path / "src", 64, 16))
    spec = (0, 0, 0)  # a fixed tile: the region draws nothing, so both models below see the same kernels
    opts = dict(count=1, size=64, seed=3, kernel_min=9, kernel_max=15)
    mixed = SynthParams(linear_light=True, highlights=1.0, srgb_blur=0.5, **opts)
    plain = SynthParams(**opts)
    pairs = [_make_pair(i, mixed, source, spec) for i in range(16)]
    flagged = [p for p in pairs if p.info.get("srgb_blur")]
    assert 3 <= len(flagged) <= 13
    assert all("highlight_gain" not in p.info for p in flagged)
    assert all("highlight_gain" in p.info for p in pairs if not p.info.get("srgb_blur"))  # highlights p=1
    for pair in flagged:  # the same kernel convolved with the encoded values, as a --no-linear-light set does
        ref = _make_pair(pair.index, plain, source, spec)
        np.testing.assert_array_equal(pair.kernel, ref.kernel)
        np.testing.assert_array_equal(pair.blur, ref.blur)
    for pair in (p for p in pairs if not p.info.get("srgb_blur")):
        assert np.abs(pair.blur - _make_pair(pair.index, plain, source, spec).blur).max() > 0.05
    with pytest.raises(KdEdgeError, match="--srgb-blur needs --linear-light"):
        SynthParams(srgb_blur=0.5).validate()
    assert [p.info for p in pairs] == [_make_pair(i, mixed, source, spec).info for i in range(16)]  # reproducible


def test_linear_light_blur_differs_from_srgb_blur_on_a_saturated_edge():
    edge = np.zeros((32, 32, 3), np.float32)
    edge[:, 16:] = 1.0
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9
    srgb = blur(edge, kernel)
    linear = camera.linear_to_srgb(blur(camera.srgb_to_linear(edge), kernel))
    # half-way across the edge, light averages to 0.5 in linear intensity = 0.735 in sRGB, not 0.5
    assert abs(srgb[16, 16, 0] - 5 / 9) < 1e-4
    assert linear[16, 16, 0] > srgb[16, 16, 0] + 0.1
    np.testing.assert_allclose(camera.linear_to_srgb(camera.srgb_to_linear(edge)), edge, atol=1e-5)
    # a boosted highlight stays saturated further into the blur
    boosted = camera.linear_to_srgb(blur(camera.boost_highlights(camera.srgb_to_linear(edge), 4.0), kernel))
    assert (boosted[16] >= 0.999).sum() > (linear[16] >= 0.999).sum()


def test_shot_noise_grows_with_the_signal():
    rng = np.random.default_rng(0)
    dark, bright = np.full((64, 64), 0.05, np.float32), np.full((64, 64), 0.8, np.float32)
    s_dark = (camera.sensor_noise(dark, rng, 0.002, 0.0) - dark).std()
    s_bright = (camera.sensor_noise(bright, rng, 0.002, 0.0) - bright).std()
    assert s_bright > 3 * s_dark
    assert abs(s_bright - np.sqrt(0.002 * 0.8)) < 0.005


def test_jpeg_quality_is_honoured_and_recorded():
    img = _pair(kernel_min=1, kernel_max=1).sharp
    low, high = camera.jpeg_roundtrip(img, 30), camera.jpeg_roundtrip(img, 95)
    assert psnr(low, img) + 3 < psnr(high, img)
    pairs = [_pair(i, jpeg=1.0, jpeg_min=40) for i in range(6)]
    qualities = [p.info["jpeg_quality"] for p in pairs]
    assert all(40 <= q <= 95 for q in qualities) and len(set(qualities)) > 1
    plain = [_pair(i) for i in range(6)]
    assert all("jpeg_quality" not in p.info for p in plain)


def test_identity_pairs_are_untouched_and_recorded():
    pairs = [_pair(i, identity=0.5, noise=0.01, defocus=1.0) for i in range(16)]
    untouched = [p for p in pairs if p.info["untouched"]]
    assert 0 < len(untouched) < 16
    for p in untouched:
        np.testing.assert_array_equal(p.blur, p.sharp)


def test_camera_set_is_byte_identical_for_a_seed_and_regenerates_from_synth_json(tmp_path):
    options = dict(CAMERA_PRESET, soft_sharp=0.5)
    a = synthesize(tmp_path / "a", count=10, size=48, seed=4, test_fraction=0.2, **options)
    synthesize(tmp_path / "b", count=10, size=48, seed=4, test_fraction=0.2, workers=2, **options)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert a["camera"]["linear_light"] is True and a["version"] == 2
    assert json.loads((tmp_path / "a" / "synth.json").read_text())["camera"] == a["camera"]
    regenerate(tmp_path / "a" / "synth.json", tmp_path / "c")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "c")
    other = synthesize(tmp_path / "d", count=10, size=48, seed=5, test_fraction=0.2, **options)
    assert _tree_digest(tmp_path / "d") != _tree_digest(tmp_path / "a") and other["pairs"] == 10


def test_version_one_options_leave_the_camera_model_out():
    meta_default = SynthParams().camera_options()
    assert meta_default["trajectories"] == "random-walk" and meta_default["linear_light"] is False
    pair = _pair()  # version-1 behaviour: no new keys in the record
    assert not {"trajectory", "untouched", "jpeg_quality", "shot_noise"} & set(pair.info)


def test_source_folder_mixed_with_builtin_images(tmp_path):
    from kd_edge.images import write_image

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(src / f"p{i}.png", rng.uniform(0, 1, (80, 96, 3)).astype(np.float32))
    meta = synthesize(tmp_path / "out", src, count=20, size=32, seed=1, builtin_mix=0.5, kernel_min=3, kernel_max=9)
    sources = [r["source"] for r in meta["images"]]
    from_folder = sum(s.startswith("p") for s in sources)
    assert 0 < from_folder < 20 and meta["source"]["builtin"]["kind"] == "builtin"
    with pytest.raises(KdEdgeError, match="needs --linear-light"):
        SynthParams(highlights=0.5).validate()
    with pytest.raises(KdEdgeError, match="trajectories"):
        SynthParams(trajectories="zigzag").validate()
    with pytest.raises(KdEdgeError, match="SRC_DIR"):
        synthesize(tmp_path / "x", count=4, size=32, builtin_mix=0.5)


def test_the_recorded_blur_model_names_defocus_only_when_pairs_get_it(tmp_path):
    options = dict(CAMERA_PRESET, kernel_min=1)
    with_defocus = synthesize(tmp_path / "a", count=4, size=32, seed=1, **dict(options, defocus=1.0))
    without = synthesize(tmp_path / "b", count=4, size=32, seed=1, **dict(options, defocus=0.0))
    assert "Gaussian defocus (sigma <= 1 px)" in with_defocus["blur_model"]
    assert "defocus" not in without["blur_model"]


def _gradient_energy(img):
    return float(np.mean(np.diff(img.mean(-1), axis=1) ** 2))


def test_soft_sharp_softens_the_target_itself_and_is_recorded():
    plain = [_pair(i, identity=1.0) for i in range(6)]
    soft = [_pair(i, identity=1.0, soft_sharp=1.0, soft_sigma=1.5) for i in range(6)]
    for a, b in zip(plain, soft):
        assert "soft_sigma" not in a.info and 0.3 <= b.info["soft_sigma"] <= 1.5
        np.testing.assert_array_equal(b.blur, b.sharp)  # an untouched pair keeps its (soft) photo as it is
        assert _gradient_energy(b.sharp) < 0.9 * _gradient_energy(a.sharp)  # same crop, softer
    # motion-blurred pairs blur the softened photo: the target is soft, the input softer still
    blurred = _pair(1, kernel_min=9, kernel_max=9, soft_sharp=1.0)
    assert _gradient_energy(blurred.blur) < _gradient_energy(blurred.sharp)
    assert "soft_sharp" in SynthParams().camera_options()
    with pytest.raises(KdEdgeError, match="soft-sigma"):
        SynthParams(soft_sharp=0.5, soft_sigma=5.0).validate()
    with pytest.raises(KdEdgeError, match="soft-sharp"):
        SynthParams(soft_sharp=1.5).validate()


def test_saturated_share_draws_saturated_dead_leaves_with_clipped_noise():
    pairs = [_pair(i, saturated=0.5, noise=0.02, kernel_min=5, kernel_max=5) for i in range(16)]
    chosen = [p for p in pairs if p.info["source"] == "dead_leaves_saturated"]
    assert 3 <= len(chosen) <= 13
    for p in chosen:
        at_bound = (p.sharp <= 0.0) | (p.sharp >= 1.0)
        assert at_bound.any(axis=-1).mean() > 0.5  # most pixels have a channel at 0 or 1
        # the sensor noise is clipped there, as on a clipped sky: the blurred side is not the sharp one
        assert psnr(p.blur, p.sharp) < 45.0
    plain = [_pair(i, noise=0.02, kernel_min=5, kernel_max=5) for i in range(16)]
    assert all(p.info["source"] != "dead_leaves_saturated" for p in plain)
    # an option that is off draws nothing: the plain pairs are those of a set made before the option existed
    for a, b in zip(plain, pairs):
        if b.info["source"] != "dead_leaves_saturated":
            assert a.info["source"] == b.info["source"]
    assert SynthParams().camera_options()["saturated"] == 0.0
    with pytest.raises(KdEdgeError, match="saturated"):
        SynthParams(saturated=1.5).validate()


def test_saturated_palette_colours_sit_on_the_gamut_faces():
    from kd_edge.data.dead_leaves import dead_leaves

    rng = np.random.default_rng(0)
    natural = dead_leaves(rng, 96)
    saturated = dead_leaves(np.random.default_rng(0), 96, palette="saturated")
    bound = lambda img: ((img <= 0.0) | (img >= 1.0)).any(axis=-1).mean()  # noqa: E731
    assert bound(saturated) > 0.5 > bound(natural)
    with pytest.raises(ValueError, match="palette"):
        dead_leaves(rng, 32, palette="neon")


def test_a_moving_subject_blurs_only_where_it_moves():
    from kd_edge.data.moving_subject import blur_moving_subject

    rng = np.random.default_rng(8)
    image = rng.uniform(0.0, 1.0, (64, 64, 3)).astype(np.float32)
    kernel = sample_kernel(np.random.default_rng(1), 9, "linear")
    whole, move = blur(image, kernel), partial(blur, kernel=kernel)
    np.testing.assert_allclose(blur_moving_subject(image, np.ones((64, 64)), move), whole, atol=1e-5)
    np.testing.assert_allclose(blur_moving_subject(image, np.zeros((64, 64)), move), image, atol=1e-6)
    matte = np.zeros((64, 64), np.float32)
    matte[:, 32:] = 1.0  # the right half moves, the left half is the static background
    layered = blur_moving_subject(image, matte, move)
    np.testing.assert_allclose(layered[:, :24], image[:, :24], atol=1e-6)  # beyond the kernel's reach: untouched
    np.testing.assert_allclose(layered[:, 40:], whole[:, 40:], atol=1e-5)  # inside the subject: global blur
    assert psnr(layered[:, 24:40], image[:, 24:40]) < 30.0  # the subject smears over its edge


def test_moving_subject_pairs_keep_the_background_and_are_recorded():
    options = dict(kernel_min=21, kernel_max=29, moving_subject=1.0, linear_light=True)
    pairs = [_pair(i, **options) for i in range(6)]
    for p in pairs:
        record = p.info["moving_subject"]
        assert 0.0 < record["share"] <= 1.0 and 1 <= len(record["ellipses"]) <= 3
        unchanged = np.all(np.abs(p.blur - p.sharp) < 1e-6, axis=2).mean()
        if record["share"] < 0.5:
            assert unchanged > 0.2  # the background is the sharp image, to the 8-bit value
        assert psnr(p.blur, p.sharp) < 40.0  # and the subject is blurred
    whole = [_pair(i, kernel_min=21, kernel_max=29, linear_light=True) for i in range(6)]
    assert all("moving_subject" not in p.info for p in whole)
    assert max(np.all(np.abs(p.blur - p.sharp) < 1e-6, axis=2).mean() for p in whole) < 0.15  # flat areas only
    with pytest.raises(KdEdgeError, match="moving-subject"):
        SynthParams(moving_subject=1.5).validate()


def test_a_moving_subject_set_has_no_kernel_for_those_pairs_and_regenerates(tmp_path):
    options = dict(CAMERA_PRESET, moving_subject=0.5, kernel_min=9)
    meta = synthesize(tmp_path / "a", count=12, size=48, seed=6, test_fraction=0.25, **options)
    moving = {r["name"] for r in meta["images"] if "moving_subject" in r}
    assert 0 < len(moving) < 12 and "moving over a static background" in meta["blur_model"]
    for record in meta["images"]:
        kernel = tmp_path / "a" / record["split"] / "kernels" / record["name"].replace(".png", ".npy")
        assert kernel.is_file() == (record["name"] not in moving)
    regenerate(tmp_path / "a" / "synth.json", tmp_path / "b")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_a_turn_blurs_more_far_from_its_centre_and_not_at_it():
    from kd_edge.data.rotation import reach, rotational_blur

    image = np.random.default_rng(2).uniform(0.0, 1.0, (96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(rotational_blur(image, (48.0, 48.0), 0.0), image, atol=1e-6)
    turned = rotational_blur(image, (20.0, 20.0), 8.0)
    change = np.abs(turned - image).mean(axis=2)
    assert change[17:24, 17:24].mean() < 0.05 < change[70:, 70:].mean()  # still at the centre, smeared far from it
    assert reach(96, (0.0, 0.0), 8.0) == pytest.approx(96 * np.sqrt(2) * np.radians(8.0) / 2)


def test_turning_pairs_are_recorded_have_no_kernel_file_and_regenerate(tmp_path):
    pair = _pair(1, kernel_min=1, kernel_max=1, rotation=1.0, rotation_max=10.0)
    assert abs(pair.info["rotation"]["degrees"]) <= 10.0 and len(pair.info["rotation"]["centre"]) == 2
    assert psnr(pair.blur, pair.sharp) < 45.0  # a 1 px kernel, yet blurred by the turn
    assert "rotation" not in _pair(1, kernel_min=1, kernel_max=1).info
    with pytest.raises(KdEdgeError, match="rotation-max"):
        SynthParams(rotation=0.5, rotation_max=20.0).validate()
    options = dict(CAMERA_PRESET, rotation=0.5, moving_subject=0.3, kernel_min=5)
    meta = synthesize(tmp_path / "a", count=12, size=48, seed=9, test_fraction=0.25, **options)
    turned = {r["name"] for r in meta["images"] if "rotation" in r}
    assert 0 < len(turned) < 12 and "turning up to 4 degrees" in meta["blur_model"]
    for record in meta["images"]:
        kernel = tmp_path / "a" / record["split"] / "kernels" / record["name"].replace(".png", ".npy")
        assert kernel.is_file() == (not {"rotation", "moving_subject"} & set(record))
    regenerate(tmp_path / "a" / "synth.json", tmp_path / "b", workers=2)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_a_turning_folder_set_stays_inside_its_margin(tmp_path):
    from kd_edge.images import write_image

    src = tmp_path / "src"
    for i in range(2):
        write_image(src / f"p{i}.png", np.random.default_rng(i).uniform(0, 1, (72, 80, 3)).astype(np.float32))
    meta = synthesize(tmp_path / "out", src, count=6, size=64, seed=1, test_fraction=0.0, kernel_min=29,
                      kernel_max=29, rotation=1.0, rotation_max=15.0)
    assert all(abs(r["rotation"]["degrees"]) <= 15.0 for r in meta["images"])


def test_srgb_to_linear_takes_bicubic_undershoot_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unused branch once raised 'invalid value encountered in power'
        lin = camera.srgb_to_linear(np.array([-0.2, 0.5], np.float32))
    np.testing.assert_allclose(lin, [-0.2 / 12.92, ((0.5 + 0.055) / 1.055) ** 2.4], rtol=1e-6)
