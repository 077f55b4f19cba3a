"""Calibration data for post-training int8: the representative images shared with the converters.

A thin wrapper over :func:`kd_edge.data.pipeline.representative_images` (blurred images from a data folder,
or the built-in synthetic blurred set when ``calib`` is None), so ``kd-edge quantize`` and
``kd-edge convert --target tflite-int8`` calibrate on exactly the same images for the same
``--calib DIR --calib-count N``.
"""
import numpy as np

from kd_edge.errors import KdEdgeError

DEFAULT_COUNT = 32


def calibration_images(calib=None, *, count=DEFAULT_COUNT, size=256, seed=0):
    """float32 ``N x size x size x 3`` in [0, 1]: from ``calib`` (a folder; DBlur roots use their blurred
    images) or, when None, the built-in synthetic blurred images."""
    count = int(count)
    if count < 1:
        raise KdEdgeError(f"--calib-count must be >= 1, got {count}")
    try:
        from kd_edge.data.pipeline import representative_images
    except ImportError:  # the data package not installed yet: the converters' own stand-in
        from kd_edge.converters.parity import representative

        return np.asarray(representative(calib, count, int(size), seed=seed), np.float32)
    images = representative_images(calib, count=count, size=int(size), seed=seed)
    return np.asarray(images, np.float32)


def representative_dataset(images):
    """A TFLite ``representative_dataset`` callable yielding each image as a batch of one."""
    images = np.asarray(images, np.float32)

    def dataset():
        for img in images:
            yield [img[None]]

    return dataset


def describe(calib, images):
    """JSON-able record of the calibration set (for manifests and reports)."""
    return {"source": str(calib) if calib else "built-in synthetic blurred images",
            "images": int(len(images)), "size": list(np.asarray(images).shape[1:3])}
