"""kd_edge.metrics against independent computations: tf.image.psnr and a from-scratch SSIM (skimage's definition)."""
import numpy as np
import pytest
from scipy.ndimage import uniform_filter

import kd_edge  # noqa: F401  (tf_keras before TensorFlow)
from kd_edge.metrics import MAX_PSNR_DB, psnr, ssim


def _pair(seed, shape=(3, 40, 48, 3)):
    rng = np.random.default_rng(seed)
    a = rng.random(shape).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)
    return a, b


def _ssim_reference(x, y):
    """SSIM written out from Wang et al. 2004 with skimage's defaults: 7x7 uniform window, sample covariance,
    K1=0.01, K2=0.03, data range 1, mean over channels of the map cropped by (7-1)/2 pixels."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    win, n = 7, 49
    cov_norm = n / (n - 1)
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    values = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch], y[..., ch]
        ux, uy = uniform_filter(a, win), uniform_filter(b, win)
        vx = cov_norm * (uniform_filter(a * a, win) - ux * ux)
        vy = cov_norm * (uniform_filter(b * b, win) - uy * uy)
        vxy = cov_norm * (uniform_filter(a * b, win) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        pad = (win - 1) // 2
        values.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(values))


def test_psnr_equals_tf_image_psnr():
    import tensorflow as tf

    a, b = _pair(0)
    ours = psnr(a, b)
    ref = tf.image.psnr(tf.constant(a), tf.constant(b), max_val=1.0).numpy()
    assert ours.shape == (3,)
    assert np.allclose(ours, ref, atol=1e-3)
    assert abs(psnr(a[0], b[0]) - float(ref[0])) < 1e-3 and isinstance(psnr(a[0], b[0]), float)
    # and by hand: 10 log10(1 / MSE)
    assert abs(psnr(a[1], b[1]) - 10 * np.log10(1 / np.mean((a[1].astype(np.float64) - b[1]) ** 2))) < 1e-9


def test_psnr_identical_images_is_capped():
    a, _ = _pair(1, (16, 16, 3))
    assert psnr(a, a) == MAX_PSNR_DB


def test_ssim_matches_an_independent_implementation():
    a, b = _pair(2)
    ours = ssim(a, b)
    assert ours.shape == (3,)
    for i in range(3):
        assert abs(ours[i] - _ssim_reference(a[i], b[i])) < 1e-6
    assert abs(ssim(a[0], a[0]) - 1.0) < 1e-9
    assert ssim(a[0], b[0]) < 0.99


def test_ssim_equals_skimage_call_of_the_original_report():
    from skimage.metrics import structural_similarity

    a, b = _pair(3, (32, 32, 3))
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=1.0, channel_axis=-1), abs=1e-6)


def test_metrics_reject_mismatched_shapes():
    a, _ = _pair(4, (8, 8, 3))
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:4])
    with pytest.raises(ValueError):
        ssim(a[..., 0], a[..., 0])
