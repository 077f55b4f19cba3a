"""In-plane rotation during the exposure: a camera's roll, or a head that turns, blurs non-uniformly.

One kernel blurs every pixel alike. A rotation by ``angle`` about a centre ``c`` smears a pixel at radius ``r``
along an arc of length ``r * angle``: nothing at the centre, the most far from it (Whyte et al. 2010 measured
camera roll as a main source of non-uniform shake). The exposure is the average, in the light the caller works
in, of the image rotated through evenly spaced angles in ``[-angle/2, angle/2]``, spaced so that no pixel of the
region moves more than one pixel between two samples.
"""
from __future__ import annotations

import math

import numpy as np


def reach(side, centre, degrees):
    """The farthest any pixel of a ``side`` x ``side`` region moves from its mid-exposure place (px)."""
    cy, cx = centre
    radius = max(math.hypot(y - cy, x - cx) for y in (0, side) for x in (0, side))
    return radius * math.radians(abs(degrees)) / 2.0


def rotational_blur(image, centre, degrees):
    """The mean of ``image`` rotated about ``centre`` (y, x in px) by angles spread evenly over ``degrees``."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.float32)
    h, w = image.shape[:2]
    steps = max(2, int(math.ceil(2 * reach(max(h, w), centre, degrees))) + 1)
    total = np.zeros_like(image)
    for angle in np.linspace(-degrees / 2.0, degrees / 2.0, steps):
        matrix = cv2.getRotationMatrix2D((float(centre[1]), float(centre[0])), float(angle), 1.0)
        total += cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return total / np.float32(steps)
