"""Blur of a subject that moves over a static background (a walking person, a turning head, a passing car).

Camera shake blurs a whole frame with one kernel; a camera on a tripod or a phone held still blurs only what
moves. Issue 13 measured the default models on face video where a head moves fast over a static background:
they gained +0.4 dB where the head moved and lost 0.7-1.5 dB on the background they were never told to leave
alone, because every blurred training pair was blurred everywhere.

The layered model: a soft matte ``alpha`` cuts the subject out of the sharp image ``I``; the subject layer moves
along the kernel ``k`` during the exposure and the background stays:

    blurred = k * (alpha I) + (1 - k * alpha) I

where ``*`` is convolution (or any motion of the layer, such as a turn: :mod:`kd_edge.data.rotation`). Where ``alpha`` is 0 and the moving subject never passes, the pixel is the sharp
background; where ``alpha`` is 1 everywhere it is ordinary global blur. The background behind the subject is
approximated by the sharp image itself (a single photo has no hidden layer), which is exact away from the
subject's edges. The matte is a union of one to three ellipses with feathered edges, placed so that the
subject overlaps the crop; its drawn parameters are recorded.
"""
from __future__ import annotations

import numpy as np

AXIS_RANGE = (0.15, 0.5)  # semi-axes, as a fraction of the crop side
FEATHER_RANGE = (0.5, 2.0)  # px: Gaussian softening of the matte's edge (hair, motion of the edge itself)
MAX_ELLIPSES = 3


def subject_matte(rng, side, crop):
    """A ``side`` x ``side`` float32 matte in [0, 1] whose subject lies over the central ``crop`` x ``crop`` region,
    and a description of it (the ellipses, the feather and the share of the crop it covers)."""
    import cv2

    pad = (side - crop) / 2.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    matte = np.zeros((side, side), dtype=np.float32)
    ellipses = []
    for _ in range(int(rng.integers(1, MAX_ELLIPSES + 1))):
        cy, cx = (pad + rng.uniform(0.15, 0.85, size=2) * crop).tolist()
        ay, ax = (rng.uniform(*AXIS_RANGE, size=2) * crop).tolist()
        angle = float(rng.uniform(0.0, np.pi))
        c, s = np.cos(angle), np.sin(angle)
        u = ((xx - cx) * c + (yy - cy) * s) / ax
        v = (-(xx - cx) * s + (yy - cy) * c) / ay
        matte = np.maximum(matte, (u * u + v * v <= 1.0).astype(np.float32))
        ellipses.append([round(cy, 2), round(cx, 2), round(ay, 2), round(ax, 2), round(angle, 4)])
    feather = float(rng.uniform(*FEATHER_RANGE))
    matte = cv2.GaussianBlur(matte, (0, 0), feather, borderType=cv2.BORDER_REFLECT)
    lo = int(round(pad))
    share = float((matte[lo:lo + crop, lo:lo + crop] > 0.5).mean())
    return np.clip(matte, 0.0, 1.0), {"ellipses": ellipses, "feather": round(feather, 4), "share": round(share, 4)}


def blur_moving_subject(image, matte, move):
    """``move(alpha I) + (1 - move(alpha)) I`` for an HxWxC float image and an HxW matte; ``move`` is the subject's
    motion over the exposure as a function of an image (a kernel's convolution, a rotation, or both)."""
    image = np.asarray(image, dtype=np.float32)
    alpha = np.asarray(matte, dtype=np.float32)
    moved_alpha = move(alpha)[:, :, None]
    return (move(alpha[:, :, None] * image) + (1.0 - moved_alpha) * image).astype(np.float32)
