"""The camera side of synthetic blur: linear light, saturated highlights, sensor noise and JPEG.

A real blurred photo is made in the sensor, before the camera's tone curve: light is averaged over the exposure
in *linear* intensity, bright lights clip at the sensor's full well (so a street lamp smears into a flat saturated
streak, not a dim grey one), the noise depends on the signal (photon shot noise plus read noise), and the result
is gamma-encoded and usually JPEG-compressed. Blurring the 8-bit sRGB values directly gets all four wrong. These
functions are pure numpy/OpenCV and deterministic for a given random stream.
"""
from __future__ import annotations

import numpy as np


def srgb_to_linear(img):
    """sRGB-encoded values in [0, 1] -> linear intensity (IEC 61966-2-1)."""
    img = np.asarray(img, dtype=np.float32)
    curve = ((np.maximum(img, 0.04045) + 0.055) / 1.055) ** 2.4  # the branch np.where keeps; no NaN from a
    return np.where(img <= 0.04045, img / 12.92, curve).astype(np.float32)  # bicubic undershoot below -0.055


def linear_to_srgb(lin):
    """Linear intensity -> sRGB encoding; the input is clipped to [0, 1] first (a sensor cannot exceed full well)."""
    lin = np.clip(np.asarray(lin, dtype=np.float32), 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055).astype(np.float32)


def boost_highlights(lin, gain, knee=0.85):
    """Scene radiance above the display's white: values above ``knee`` (linear) rise smoothly to ``gain`` x at 1.

    The 8-bit source clipped its highlights at 1.0; the scene was brighter. Boosting them before the blur and
    clipping after it reproduces the saturated streaks of lights in real shaken photos.
    """
    lin = np.asarray(lin, dtype=np.float32)
    weight = np.clip((lin - knee) / (1.0 - knee), 0.0, 1.0)
    return (lin * (1.0 + (float(gain) - 1.0) * weight)).astype(np.float32)


def sensor_noise(lin, rng, shot, read):
    """Signal-dependent noise in linear light: variance ``shot * x + read**2`` (Poisson-Gaussian model)."""
    lin = np.asarray(lin, dtype=np.float32)
    sigma = np.sqrt(np.maximum(float(shot) * lin, 0.0) + float(read) ** 2).astype(np.float32)
    return lin + sigma * rng.standard_normal(lin.shape).astype(np.float32)


def jpeg_roundtrip(img, quality):
    """Encode an sRGB float image in [0, 1] as JPEG at ``quality`` (4:2:0, libjpeg through OpenCV) and decode it."""
    import cv2

    u8 = np.clip(np.round(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return (cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0)
