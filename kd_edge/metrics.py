"""Image-quality metrics exactly as the original report defined them.

- PSNR equals ``tf.image.psnr(a, b, max_val=1.0)`` (computed here in float64 numpy, same formula).
- SSIM equals ``skimage.metrics.structural_similarity(a, b, data_range=1.0, channel_axis=-1)``.

Inputs are float images in [0, 1], HxWxC or a batch NxHxWxC.
"""
import numpy as np

MAX_PSNR_DB = 100.0  # reported for identical images instead of +inf, so tables and JSON stay finite


def _check_pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim not in (3, 4):
        raise ValueError(f"expected HxWxC or NxHxWxC, got shape {a.shape}")
    return a, b


def psnr(a, b):
    """PSNR in dB (max_val 1.0). A batch returns one value per image, like tf.image.psnr."""
    a, b = _check_pair(a, b)
    mse = np.mean((a - b) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(1.0 / mse)
    value = np.minimum(value, MAX_PSNR_DB)
    return float(value) if np.ndim(value) == 0 else value


def ssim(a, b):
    """SSIM as skimage computes it (data_range 1, channel_axis -1). A batch returns one value per image."""
    from skimage.metrics import structural_similarity

    a, b = _check_pair(a, b)
    if a.ndim == 4:
        return np.array([ssim(x, y) for x, y in zip(a, b)])
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1))
