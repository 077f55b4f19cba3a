"""Procedural dead-leaves images: occluding discs with a power-law size distribution.

Dead leaves reproduce the scale invariance, edge statistics and 1/f spectrum of natural images
(Lee, Mumford & Huang 2001; used as a deblurring/denoising training stand-in, e.g. Achddou et al.
2021). Each disc gets a colour, a smooth shading gradient and some band-limited texture, and edges
are antialiased by drawing at twice the resolution.
"""
from __future__ import annotations

import numpy as np


PALETTES = ("natural", "saturated")


def dead_leaves(rng, size, *, width=None, discs=None, r_min=None, r_max=None, texture=True, palette="natural"):
    """A float32 HxWx3 image in [0,1] (H = ``size``, W = ``width`` or ``size``).

    ``palette="natural"``: mostly desaturated colours, as in natural images. ``"saturated"``: every colour has at
    least one channel at 0 or 1 (pure primaries, secondaries, neon and deep tones) and the discs are large, so the
    image holds wide flat regions on the gamut's faces; after sensor noise and 8-bit clipping those are the inputs
    on which models never trained on them drew a stride-locked lattice (``kd_edge.grid_artifacts``)."""
    if palette not in PALETTES:
        raise ValueError(f"palette must be one of {', '.join(PALETTES)}, got {palette!r}")
    if palette == "saturated":  # large discs: wide flat regions
        longest = max(int(size), int(width or size), 16)
        r_min, r_max = r_min or longest / 12.0, r_max or longest / 1.5
    import cv2

    h, w = int(size), int(width or size)
    scale = 2  # supersampling for antialiased edges
    H, W = h * scale, w * scale
    longest = max(h, w)
    r_min = float(r_min or max(2.0, longest / 48.0)) * scale
    r_max = float(r_max or longest / 3.0) * scale
    n = int(discs or np.clip(0.25 * (h * w) / (r_min / scale) ** 2, 200, 4000))
    # radii from p(r) ~ r^-3 on [r_min, r_max] (inverse CDF), the scale-invariant choice
    u = rng.uniform(size=n)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centres = np.stack([rng.uniform(-r_max * 0.5, W + r_max * 0.5, n), rng.uniform(-r_max * 0.5, H + r_max * 0.5, n)], 1)
    labels = np.full((H, W), n, dtype=np.int32)  # n = background
    # draw back to front: later discs occlude earlier ones
    cx, cy, rr = centres[:, 0].astype(int).tolist(), centres[:, 1].astype(int).tolist(), np.maximum(1, radii.astype(int)).tolist()
    for i in range(n):
        cv2.circle(labels, (cx[i], cy[i]), rr[i], i, thickness=-1)
    colours = _colours(rng, n + 1) if palette == "natural" else _saturated_colours(rng, n + 1)
    if texture:
        # per-disc shading gradient, evaluated at twice the resolution so edges stay antialiased
        gx = rng.normal(0, 0.3, n + 1).astype(np.float32)
        gy = rng.normal(0, 0.3, n + 1).astype(np.float32)
        ctr = np.vstack([centres, [[W / 2, H / 2]]]).astype(np.float32)
        offset = 1.0 - gx * ctr[:, 0] / W - gy * ctr[:, 1] / H
        xx = (np.arange(W, dtype=np.float32) / W)[None, :]
        yy = (np.arange(H, dtype=np.float32) / H)[:, None]
        shade = np.take(gx, labels) * xx
        shade += np.take(gy, labels) * yy
        shade += np.take(offset.astype(np.float32), labels)
        img = np.take(colours, labels, axis=0)
        img *= shade[:, :, None]
    else:
        img = np.take(colours, labels, axis=0)
    np.clip(img, 0, 1, out=img)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if texture:
        # band-limited texture on half of the discs, applied at the output resolution
        amp = (rng.uniform(0, 0.2, n + 1) * (rng.uniform(size=n + 1) < 0.5)).astype(np.float32)
        mix = rng.uniform(0, 2 * np.pi, n + 1).astype(np.float32)
        coeff = np.stack([amp * np.cos(mix), amp * np.sin(mix)], axis=1)[labels[::scale, ::scale]]
        n1, n2 = _noise_field(rng, h, w), _noise_field(rng, h, w)
        img = img * (1.0 + coeff[:, :, 0] * n1 + coeff[:, :, 1] * n2)[:, :, None]
    return np.clip(img, 0.0, 1.0)


def _colours(rng, n):
    """Colours with natural-image-like statistics: mostly desaturated, varied brightness."""
    lum = np.clip(rng.normal(0.45, 0.18, n), 0.03, 0.97)
    hue_dir = rng.normal(0, 1, (n, 3))
    hue_dir -= hue_dir.mean(axis=1, keepdims=True)
    sat = rng.uniform(0, 0.35, n) ** 1.5 * 2.0
    rgb = lum[:, None] + sat[:, None] * hue_dir * 0.25
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _saturated_colours(rng, n):
    """Colours on the faces of the RGB cube: each channel is 0 or 1 with probability 0.6, else uniform; at least one
    channel is at a bound."""
    rgb = rng.uniform(0, 1, (n, 3))
    pinned = rng.uniform(size=(n, 3)) < 0.6
    pinned[np.arange(n), rng.integers(0, 3, n)] = True
    rgb = np.where(pinned, (rng.uniform(size=(n, 3)) < 0.5).astype(np.float64), rgb)
    return rgb.astype(np.float32)


def _noise_field(rng, h, w):
    """Zero-mean, unit-ish band-limited noise (a few octaves of upsampled white noise)."""
    import cv2

    field = np.zeros((h, w), dtype=np.float32)
    weight = 1.0
    for cells in (4, 16, 48):
        small = rng.standard_normal((max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w)))).astype(np.float32)
        field += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        weight *= 0.6
    return field / (np.abs(field).max() + 1e-6)
