"""Where a model gains and where it costs: the gain split into the region the blur changed and the rest.

A real blurred photo is rarely blurred everywhere: a head moves over a static background, a flat wall looks the
same blurred or not. PSNR over the whole image mixes the two. Here a pixel belongs to the **blurred region** when the
mean |blurred - sharp| over the channels, smoothed by a Gaussian of sigma ``SIGMA_PX``, exceeds ``THRESHOLD`` (0.02,
about 5 8-bit grey levels); the rest is the **unblurred region**. A negative gain there is damage done where there
was nothing to undo: do no harm inside a blurred photo. A region covering less than ``MIN_SHARE`` of the pixels
gets no PSNR (a figure from a handful of pixels would mislead).

Used by ``kd-edge eval`` (report, per_image.csv, summary.json) and ``benchmarks/realdata.py``.
"""
from __future__ import annotations

import math

import numpy as np

SIGMA_PX = 4.0
THRESHOLD = 0.02
MIN_SHARE = 0.01
NAMES = ("blurred", "unblurred")


def blurred_region(blurred, sharp):
    """Boolean HxW mask of the pixels the blur changed (see the module docstring)."""
    from scipy.ndimage import gaussian_filter

    diff = np.abs(np.asarray(blurred, np.float64) - np.asarray(sharp, np.float64)).mean(axis=-1)
    return gaussian_filter(diff, SIGMA_PX, mode="reflect") > THRESHOLD


def region_psnr(image, sharp, where) -> float:
    """PSNR (max 1.0) of ``image`` against ``sharp`` over the pixels where ``where`` is True, capped like
    kd_edge.metrics.psnr."""
    from kd_edge.metrics import MAX_PSNR_DB

    err = np.asarray(image, np.float64)[where] - np.asarray(sharp, np.float64)[where]
    mse = float(np.mean(err ** 2))
    return MAX_PSNR_DB if mse == 0 else min(MAX_PSNR_DB, 10.0 * math.log10(1.0 / mse))


def region_gains(blurred, output, sharp, mask=None):
    """{"blurred": {...}, "unblurred": {...}}, each with the region's share of the pixels, the PSNR of the blurred
    input and of the output inside it, and the gain (dB). All arrays already aligned to ``sharp``; ``mask`` is
    :func:`blurred_region` of (blurred, sharp), computed when not given. Regions under MIN_SHARE: None figures."""
    mask = blurred_region(blurred, sharp) if mask is None else mask
    regions = {}
    for name, where in zip(NAMES, (mask, ~mask)):
        share = float(where.mean())
        if share < MIN_SHARE:
            regions[name] = {"share": round(share, 4), "blurred_psnr": None, "output_psnr": None, "gain_db": None}
            continue
        before, after = region_psnr(blurred, sharp, where), region_psnr(output, sharp, where)
        regions[name] = {"share": round(share, 4), "blurred_psnr": before, "output_psnr": after,
                         "gain_db": after - before}
    return regions
