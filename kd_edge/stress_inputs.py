"""Adversarial inputs for deblurring models (issue 13, item 1): images unlike any training crop.

A model must keep its raw output (before any clip) near [0, 1] and every activation bounded on all of them:

* ``stress_inputs(size)``: all black, all white, the six saturated primaries and secondaries, a hard black/white
  edge, uniform noise, 1-px and 4-px checkerboards, a near-black image with faint noise and a colour ramp;
* ``real_photo_inputs(root, stride)``: the sharp and the blurred halves of the real pairs in
  ``../shared/data/realblur`` (and its photos without ground truth), centre-cropped to a multiple of the stride;
  empty when that folder does not exist;
* ``all_stress_inputs(size, stride)``: both.

Every image is float32 HxWx3 in [0, 1] with sides that are multiples of 8 and of the model's stride. Deterministic:
the noise images use a fixed seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kd_edge.errors import KdEdgeError

BASE_MULTIPLE = 8
NOISE_SEED = 13
SATURATED = {
    "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
    "cyan": (0, 1, 1), "magenta": (1, 0, 1), "yellow": (1, 1, 0),
}
NEAR_BLACK_LEVEL = 0.01    # mean of the near-black image ...
NEAR_BLACK_NOISE = 0.01    # ... plus uniform noise of this amplitude (+-)


def size_multiple(stride) -> int:
    """What every side of a stress input must be a multiple of for a model of ``stride``."""
    return math.lcm(BASE_MULTIPLE, max(1, int(stride)))


def _checkerboard(size, cell):
    yy, xx = np.mgrid[0:size, 0:size]
    board = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return np.repeat(board[..., None], 3, axis=-1)


def stress_inputs(size: int = 64, stride: int = 1) -> list[tuple[str, np.ndarray]]:
    """[(name, float32 size x size x 3 image in [0, 1])]; ``size`` must be a multiple of 8 and of ``stride``."""
    size = int(size)
    multiple = size_multiple(stride)
    if size < multiple or size % multiple:
        raise KdEdgeError(f"stress_inputs: size {size} must be a positive multiple of {multiple} "
                          f"(8 and the model's stride {stride})")
    rng = np.random.default_rng(NOISE_SEED)
    shape = (size, size, 3)
    images = [("black", np.zeros(shape, np.float32)), ("white", np.ones(shape, np.float32))]
    images += [(name, np.broadcast_to(np.asarray(rgb, np.float32), shape).copy()) for name, rgb in SATURATED.items()]
    edge = np.zeros(shape, np.float32)
    edge[:, size // 2:] = 1.0
    images.append(("edge_black_white", edge))
    images.append(("uniform_noise", rng.random(shape, dtype=np.float32)))
    images.append(("checkerboard_1px", _checkerboard(size, 1)))
    images.append(("checkerboard_4px", _checkerboard(size, 4)))
    faint = NEAR_BLACK_LEVEL + NEAR_BLACK_NOISE * (2.0 * rng.random(shape, dtype=np.float32) - 1.0)
    images.append(("near_black_noise", np.clip(faint, 0.0, 1.0).astype(np.float32)))
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    colour = np.stack([np.broadcast_to(ramp[None, :], (size, size)),          # red: left -> right
                       np.broadcast_to(ramp[:, None], (size, size)),          # green: top -> bottom
                       np.broadcast_to(1.0 - ramp[None, :], (size, size))],   # blue: right -> left
                      axis=-1).astype(np.float32)
    images.append(("colour_ramp", colour))
    return images


FIELD_COLOURS = {**SATURATED, "deep_violet": (0.55, 0.1, 0.7), "neon_green": (0.17, 0.93, 0.1),
                 "orange": (1.0, 0.5, 0.0), "azure": (0.0, 0.5, 1.0)}
FIELD_NOISE = 0.02  # Gaussian sigma before the clip, then a Gaussian blur of FIELD_BLUR px: a noisy, soft photo area
FIELD_BLUR = 1.0


def noisy_saturated_fields(size: int = 128, stride: int = 1) -> list[tuple[str, np.ndarray]]:
    """[(name, image)]: flat fields of saturated colours (a channel at 0 or 1) with sensor-like noise clipped at the
    gamut's bounds, softened and stored in 8 bits, as a clipped sky or a neon sign in a photo. A model must leave
    them flat: the v13 default student drew an 8-px lattice of 101 grey levels (8-bit) over cyan, the v14
    candidate teacher 110 over green (``kd_edge.grid_artifacts``; PSNR on real photos saw nothing). ``size`` must
    be a multiple of 8 and of ``stride``."""
    import cv2

    from kd_edge.images import to_uint

    size = int(size)
    multiple = size_multiple(stride)
    if size < multiple or size % multiple:
        raise KdEdgeError(f"noisy_saturated_fields: size {size} must be a positive multiple of {multiple}")
    rng = np.random.default_rng(NOISE_SEED + 1)
    images = []
    for name, rgb in FIELD_COLOURS.items():
        field = np.asarray(rgb, np.float32) + rng.normal(0.0, FIELD_NOISE, (size, size, 3)).astype(np.float32)
        field = cv2.GaussianBlur(np.clip(field, 0.0, 1.0), (0, 0), FIELD_BLUR, borderType=cv2.BORDER_REFLECT)
        images.append((f"noisy_{name}", to_uint(field, 8).astype(np.float32) / np.float32(255.0)))
    return images


def centre_crop_to_multiple(image, multiple: int, max_side: int | None = None):
    """The centred crop of ``image`` whose sides are the largest multiples of ``multiple`` that fit (and at most
    ``max_side``, rounded down to a multiple); KdEdgeError if the image is smaller than ``multiple``."""
    h, w = image.shape[:2]
    limit = max_side if max_side else max(h, w)
    ch, cw = (min(side, limit) // multiple * multiple for side in (h, w))
    if ch < 1 or cw < 1:
        raise KdEdgeError(f"a {w}x{h} image has no crop that is a multiple of {multiple} (max side {max_side})")
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(image[top: top + ch, left: left + cw])


def real_photo_inputs(root=None, stride: int = 1, *, max_side: int | None = None,
                      include_unpaired: bool = True) -> list[tuple[str, np.ndarray]]:
    """[("<set>/<file>/sharp" or ".../blur", image)] for every pair in ``root`` (default ``../shared/data/realblur``),
    plus "<set>/<file>/blur" for photos without ground truth; centre-cropped to multiples of 8 and ``stride``
    (``max_side`` caps each side). Empty when ``root`` does not exist. For measuring only: never train on them."""
    from kd_edge.data import realblur
    from kd_edge.data.dblur import find_pairs
    from kd_edge.images import read_image

    root = Path(root) if root is not None else realblur.default_dir()
    if not root.is_dir():
        return []
    multiple = size_multiple(stride)

    def crop(path):
        return centre_crop_to_multiple(read_image(path).rgb.astype(np.float32), multiple, max_side)

    images = []
    for set_dir in realblur.paired_sets(root):
        for pair in find_pairs(set_dir):
            images.append((f"{set_dir.name}/{pair.name}/sharp", crop(pair.sharp)))
            images.append((f"{set_dir.name}/{pair.name}/blur", crop(pair.blur)))
    if include_unpaired:
        for path in realblur.unpaired_photos(root):
            images.append((f"{path.parent.name}/{path.name}/blur", crop(path)))
    return images


def all_stress_inputs(size: int = 64, stride: int = 1, *, root=None, max_side: int | None = None):
    """``stress_inputs(size, stride)`` followed by ``real_photo_inputs(root, stride, max_side=max_side)``."""
    return stress_inputs(size, stride) + real_photo_inputs(root, stride, max_side=max_side)
