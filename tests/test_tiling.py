"""Tiled inference (kd_edge.tiling): exact reconstruction, grid properties, seams on real models."""
import numpy as np
import pytest

from kd_edge import tiling
from kd_edge.errors import KdEdgeError
from kd_edge.metrics import psnr


class IdentityModel:
    """The identity as a Runtime (predict/input_size/max_batch): what tiling must reconstruct exactly.

    It checks the runtime contract it is given: the fixed input size and the batch limit."""

    def __init__(self, input_size=None, max_batch=None, stride=None):
        self.input_size = input_size
        self.max_batch = max_batch
        self.stride = stride
        self.batches = []

    def predict(self, x):
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[-1] == 3
        if self.input_size is not None:
            assert x.shape[1:3] == tuple(self.input_size), x.shape
        if self.max_batch is not None:
            assert len(x) <= self.max_batch
        self.batches.append(len(x))
        return x.copy()


def _image(h, w, seed=0, levels=65535):
    """Random pixels on a 16-bit grid (what an image file holds)."""
    return (np.random.default_rng(seed).integers(0, levels + 1, (h, w, 3)) / levels).astype(np.float32)


# ------------------------------------------------------------------------------------- the tile grid
@pytest.mark.parametrize("tile,overlap,align", [(256, 32, 1), (256, 32, 8), (64, 16, 4), (48, 0, 1), (32, 31, 1),
                                                (64, 60, 16), (100, 10, 3)])
def test_tile_starts_cover_every_pixel_with_full_aligned_tiles(tile, overlap, align):
    for length in list(range(1, 400, 7)) + [tile - 1, tile, tile + 1, 2 * tile - overlap, 4000]:
        starts, padded = tiling.tile_starts(length, tile, overlap, align)
        assert starts[0] == 0 and starts[-1] + tile == padded
        assert padded >= length
        if length <= tile:
            assert starts == [0] and padded == tile
            continue
        used = align if align <= tile - overlap else 1
        assert padded - length < used
        assert all(s % used == 0 for s in starts)
        steps = np.diff(starts)
        assert np.all(steps > 0)
        assert np.all(tile - steps >= overlap), (length, starts)  # neighbours share at least `overlap`


@pytest.mark.parametrize("blend", tiling.BLENDS)
def test_axis_windows_add_up_to_one_and_are_full_at_the_image_border(blend):
    for length in (300, 513, 1000, 257):
        starts, padded = tiling.tile_starts(length, 128, 32, 8)
        windows = tiling.axis_windows(starts, 128, padded, blend)
        total = np.zeros(padded)
        for s, w in zip(starts, windows):
            assert w.shape == (128,) and np.all(w >= 0)
            total[s : s + 128] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
        # where only one tile covers (the image borders) its weight is exactly 1
        assert windows[0][0] == 1.0 and windows[-1][-1] == 1.0
        if blend != "none":  # smooth windows never drop to 0 inside an overlap: every tile contributes
            assert all(np.all(w > 0) for w in windows)


# -------------------------------------------------------------------- identity reconstructs exactly
SIZES = [(1, 1), (255, 257), (4000, 3), (3, 4000), (100, 60), (256, 256), (257, 300), (513, 700)]


@pytest.mark.parametrize("blend", tiling.BLENDS)
@pytest.mark.parametrize("h,w", SIZES)
def test_identity_model_reconstructs_the_image_exactly(h, w, blend):
    levels = 255 if h * w < 10000 else 65535  # 8- and 16-bit files
    image = _image(h, w, levels=levels)
    for tile, stride in ((256, 1), (256, 8), (64, 4)):
        out = tiling.deblur(image, IdentityModel(stride=stride), tile=tile, overlap=32 if tile > 64 else 16,
                            blend=blend)
        assert out.shape == image.shape and out.dtype == np.float32
        assert np.abs(out - image).max() < 1e-6, (tile, stride)
        # back to the file's integer levels: bit exact
        assert np.array_equal(np.round(out * levels), np.round(image * levels))


def test_identity_fixed_size_non_square_runtime_with_batch_limit():
    image = _image(301, 517, seed=1)
    model = IdentityModel(input_size=(48, 80), max_batch=1)
    out = tiling.deblur(image, model, overlap=12, batch=8)  # tile None -> the model's fixed 48x80
    assert np.abs(out - image).max() < 1e-6
    assert set(model.batches) == {1}
    model = IdentityModel(input_size=(64, 64), max_batch=None)
    tiling.deblur(image, model, batch=3, overlap=8)
    assert max(model.batches) == 3


def test_in_place_output_over_the_input_array():
    image = _image(700, 530, seed=2)
    expected = image.copy()
    out = tiling.deblur(image, IdentityModel(stride=8), tile=128, overlap=32, out=image)
    assert out is image
    assert np.abs(image - expected).max() < 1e-6


def test_values_outside_the_unit_range_are_clipped_unless_asked_not_to():
    image = _image(90, 70) * 3 - 1
    assert tiling.deblur(image, IdentityModel(), tile=32, overlap=8).min() == 0.0
    assert np.abs(tiling.deblur(image, IdentityModel(), tile=32, overlap=8, clip=False) - image).max() < 1e-5


def test_progress_reports_every_tile():
    counted = []
    plan = tiling.plan_tiles(300, 520, 128, 32, align=8)
    tiling.deblur(_image(300, 520), IdentityModel(stride=8), tile=128, overlap=32, progress=counted.append)
    assert sum(counted) == plan.count == len(plan.ys) * len(plan.xs) > 1


def test_whole_image_mode_pads_to_the_stride_and_crops_back():
    image = _image(37, 53)
    out = tiling.deblur(image, IdentityModel(stride=8), tile=0)
    assert out.shape == image.shape and np.abs(out - image).max() == 0


def test_bad_arguments_are_clear_errors():
    image = _image(40, 40)
    with pytest.raises(KdEdgeError, match="fixed input size 64x64"):
        tiling.deblur(image, IdentityModel(input_size=(64, 64)), tile=128)
    with pytest.raises(KdEdgeError, match="whole image"):
        tiling.deblur(image, IdentityModel(input_size=(64, 64)), tile=0)
    with pytest.raises(KdEdgeError, match="unknown blend"):
        tiling.deblur(image, IdentityModel(), tile=32, blend="cosine")
    with pytest.raises(KdEdgeError, match="overlap"):
        tiling.deblur(image, IdentityModel(), tile=32, overlap=32)
    with pytest.raises(KdEdgeError, match="HxWx3"):
        tiling.deblur(image[..., 0], IdentityModel(), tile=32)
    with pytest.raises(KdEdgeError, match="float image"):
        tiling.deblur((image * 255).astype(np.uint8), IdentityModel(), tile=32)
    with pytest.raises(KdEdgeError, match="dynamic-shape"):
        tiling.seam_psnr(image, IdentityModel(input_size=(32, 32)))

    class Shrinking(IdentityModel):
        def predict(self, x):
            return x[:, 1:]

    with pytest.raises(KdEdgeError, match="output shape"):
        tiling.deblur(image, Shrinking(), tile=32, overlap=8)


# ------------------------------------------------------------------------------- real models, seams
@pytest.fixture(scope="module")
def tiny_model():
    """edge-tiny with residual branches at full scale: far from the identity, so seams would show."""
    import tf_keras as keras

    from kd_edge.models import build

    keras.utils.set_random_seed(0)
    return build("edge-tiny", residual_init_scale=1.0)


def _smooth_image(h, w, seed=0):
    import cv2

    img = cv2.GaussianBlur(_image(h, w, seed), (0, 0), 2)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def test_seam_psnr_of_a_real_tiny_model_at_default_settings(tiny_model):
    image = _smooth_image(301, 421)  # the last tiles start off the stride grid unless aligned
    runtime = tiling.as_runtime(tiny_model)
    assert tiling.model_stride(runtime) == 4
    db, tiled, whole = tiling.seam_psnr(image, runtime)  # tile 256, overlap 32, hann
    assert psnr(whole, image) < 25  # the model changes the image a lot...
    assert db >= 45, db  # ...and the tiles agree with the whole-image run
    for blend in tiling.BLENDS:
        db_blend, _, _ = tiling.seam_psnr(image, runtime, tile=128, overlap=32, blend=blend)
        assert db_blend >= 40, (blend, db_blend)
    # tiles off the stride grid see another down-sampling phase: that is why origins are aligned
    unaligned, _, _ = tiling.seam_psnr(image, runtime, stride=1)
    assert unaligned < db - 10


@pytest.mark.slow
def test_fixed_size_tflite_artifact_tiles_match_the_whole_image_keras_run(tiny_model, tmp_path):
    """A real fixed 64x64 TFLite artifact through the real runtime loader, tiled over a 150x230 image."""
    from kd_edge.converters import convert
    from kd_edge.models import save_model
    from kd_edge.runtime import load

    model_path = tmp_path / "tiny.keras"
    save_model(tiny_model, model_path)
    [result] = convert(model_path, ["tflite-fp32"], tmp_path / "art", input_size=64)
    runtime = load(result.artifact)
    assert runtime.input_size == (64, 64) and tiling.model_stride(runtime) == 4
    image = _smooth_image(150, 230, seed=3)
    tiled = tiling.deblur(image, runtime)  # tile = the artifact's 64x64, overlap 32
    whole = tiling.deblur_whole(image, load(model_path))
    assert tiled.shape == image.shape
    assert psnr(tiled, whole) >= 40
