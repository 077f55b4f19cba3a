"""Blur kernels: camera-shake motion (random-walk trajectories after Boracchi & Foi 2012), Gaussian defocus.

A kernel is a float32 2-D array that sums to 1 with its centre of mass on the centre pixel, so the
blurred image stays aligned with the sharp one. ``blur(image, kernel)`` is a true convolution
(``scipy.signal.convolve`` orientation) with symmetric boundary handling.
"""
from __future__ import annotations

import numpy as np


def trajectory(rng, *, steps=2000, length=60.0, anxiety=None):
    """A camera-shake trajectory: complex positions of a random walk with inertia, centripetal pull,
    Gaussian jitter and occasional abrupt jerks (Boracchi & Foi, "Modeling the performance of image
    restoration from motion blur", IEEE TIP 2012), total path ``length`` in arbitrary units.
    """
    anxiety = float(rng.uniform(0.002, 0.008)) if anxiety is None else float(anxiety)
    centripetal = 0.7 * rng.uniform()
    prob_big_shake = 0.2 * rng.uniform()
    gaussian_shake = 10.0 * rng.uniform()
    angle = rng.uniform(0.0, 2.0 * np.pi)
    step = length / (steps - 1)
    v = complex(np.cos(angle), np.sin(angle)) * step
    x = [0j] * steps
    jerk_draws = (rng.uniform(size=steps) < prob_big_shake * anxiety).tolist()
    jerk_angles = rng.uniform(-0.5, 0.5, size=steps).tolist()
    noise = rng.standard_normal(size=(steps, 2)).tolist()
    pos = 0j
    for t in range(steps - 1):
        dv = anxiety * (gaussian_shake * complex(noise[t][0], noise[t][1]) - centripetal * pos) * step
        if jerk_draws[t]:
            dv += 2.0 * v * complex(np.cos(np.pi + jerk_angles[t]), np.sin(np.pi + jerk_angles[t]))
        v = v + dv
        v = v / (abs(v) + 1e-12) * step
        pos = pos + v
        x[t + 1] = pos
    return np.asarray(x, dtype=np.complex128)


def motion_kernel(rng, size, *, extent=None, steps=None):
    """A size x size camera-shake kernel (size odd, e.g. 13-29), normalised to sum 1.

    ``extent`` (0-1] is how much of the kernel half-width the trajectory may reach from its centre of
    mass; random in [0.4, 1.0] when None. The trajectory is rasterised with bilinear splatting.
    """
    size = int(size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    steps = int(steps or 2000)
    x = trajectory(rng, steps=steps)
    # exposure: a random fraction of the trajectory is integrated (short exposures give short blur)
    exposure = rng.uniform(0.5, 1.0)
    x = x[: max(2, int(round(exposure * steps)))]
    pts = np.stack([x.real, x.imag], axis=1)
    pts = pts - pts.mean(axis=0)
    reach = np.abs(pts).max()
    extent = float(rng.uniform(0.4, 1.0)) if extent is None else float(extent)
    half = (size - 3) / 2.0  # leave one pixel for the bilinear splat at each side
    pts = pts * (half * extent / max(reach, 1e-9))
    kernel = _splat(pts + (size - 1) / 2.0, size)
    return center_kernel(kernel)


def _splat(pts, size):
    kernel = np.zeros((size, size), dtype=np.float64)
    col, row = pts[:, 0], pts[:, 1]
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = col - c0, row - r0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = np.clip(r0 + dr, 0, size - 1), np.clip(c0 + dc, 0, size - 1)
        np.add.at(kernel, (rr, cc), w)
    return kernel


def center_kernel(kernel):
    """Shift ``kernel`` (sub-pixel, bilinear) so its centre of mass is the centre pixel; normalise to sum 1."""
    import cv2

    kernel = np.asarray(kernel, dtype=np.float64)
    total = kernel.sum()
    if total <= 0:
        raise ValueError("kernel has no positive mass")
    kernel = kernel / total
    h, w = kernel.shape
    rows, cols = np.mgrid[0:h, 0:w]
    dy = (h - 1) / 2.0 - (kernel * rows).sum()
    dx = (w - 1) / 2.0 - (kernel * cols).sum()
    if abs(dx) > 1e-6 or abs(dy) > 1e-6:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        kernel = cv2.warpAffine(kernel, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        kernel = np.clip(kernel, 0, None)
        kernel /= kernel.sum()
    return kernel.astype(np.float32)


def gaussian_kernel(sigma, size=None):
    """An isotropic Gaussian (defocus) kernel, sum 1; size defaults to 2*ceil(3 sigma)+1."""
    sigma = float(sigma)
    if sigma <= 0:
        return np.ones((1, 1), dtype=np.float32)
    size = int(size or 2 * int(np.ceil(3 * sigma)) + 1)
    r = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def combine(kernel, other):
    """The kernel of blurring by ``kernel`` then ``other`` (full 2-D convolution), sum 1."""
    from scipy.signal import fftconvolve

    if other.size == 1:
        return kernel.astype(np.float32)
    k = np.clip(fftconvolve(kernel.astype(np.float64), other.astype(np.float64), mode="full"), 0, None)
    return (k / k.sum()).astype(np.float32)


def blur(image, kernel):
    """Convolve an HxW or HxWxC float image with ``kernel`` (true convolution, symmetric boundary)."""
    import cv2

    flipped = np.ascontiguousarray(np.asarray(kernel, dtype=np.float32)[::-1, ::-1])
    img = np.ascontiguousarray(image, dtype=np.float32)
    h, w = flipped.shape
    anchor = (w // 2, h // 2)
    if img.ndim == 3 and img.shape[2] > 4:
        return np.stack([blur(img[:, :, c], kernel) for c in range(img.shape[2])], axis=2)
    return cv2.filter2D(img, -1, flipped, anchor=anchor, borderType=cv2.BORDER_REFLECT)


# ------------------------------------------------------------------------------------------ more trajectories
TRAJECTORIES = ("random-walk", "linear", "curved", "frames")


def identity_kernel():
    """The 1x1 kernel: no blur at all (a sharp frame)."""
    return np.ones((1, 1), dtype=np.float32)


def _fit_points(pts, size, extent):
    """Centre ``pts`` (N x 2, x/y) on their mean and scale them to ``extent`` of the usable half-width."""
    pts = pts - pts.mean(axis=0)
    reach = np.abs(pts).max()
    half = (size - 3) / 2.0
    if reach < 1e-9 or half <= 0:
        return np.zeros_like(pts) + (size - 1) / 2.0
    return pts * (half * extent / reach) + (size - 1) / 2.0


def linear_kernel(rng, size, *, extent=None):
    """Straight-line motion (a pan or a steady drift): a uniform segment at a random angle."""
    size = int(size)
    extent = float(rng.uniform(0.4, 1.0)) if extent is None else float(extent)
    angle = rng.uniform(0.0, np.pi)
    t = np.linspace(-1.0, 1.0, 400)
    pts = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return center_kernel(_splat(_fit_points(pts, size, extent), size))


def curved_kernel(rng, size, *, extent=None):
    """Smooth curved motion: an arc of a circle (a rotation of the hand) with a speed ramp."""
    size = int(size)
    extent = float(rng.uniform(0.4, 1.0)) if extent is None else float(extent)
    span = rng.uniform(0.3, 1.5) * np.pi
    start = rng.uniform(0.0, 2.0 * np.pi)
    # non-uniform speed: the camera slows down at one end, so the kernel is brighter there
    u = np.linspace(0.0, 1.0, 600) ** float(rng.uniform(0.6, 1.6))
    a = start + span * u
    pts = np.stack([np.cos(a), np.sin(a)], axis=1)
    return center_kernel(_splat(_fit_points(pts, size, extent), size))


def frames_kernel(rng, size, *, extent=None):
    """Frame averaging (how the GoPro pairs were made): ``n`` sharp frames along a shake path, averaged.

    The kernel is ``n`` (3-15) discrete dots along a random-walk trajectory, not a continuous streak.
    """
    size = int(size)
    extent = float(rng.uniform(0.4, 1.0)) if extent is None else float(extent)
    path = trajectory(rng, steps=400)
    n = int(rng.integers(3, 16))
    keep = np.linspace(0, len(path) - 1, n).round().astype(int)
    pts = np.stack([path.real[keep], path.imag[keep]], axis=1)
    return center_kernel(_splat(_fit_points(pts, size, extent), size))


def sample_kernel(rng, size, kind):
    """A ``size`` x ``size`` kernel of trajectory ``kind`` (one of :data:`TRAJECTORIES`); size 1 is no blur."""
    if int(size) <= 1:
        return identity_kernel()
    if kind == "random-walk":
        return motion_kernel(rng, size)
    if kind == "linear":
        return linear_kernel(rng, size)
    if kind == "curved":
        return curved_kernel(rng, size)
    if kind == "frames":
        return frames_kernel(rng, size)
    raise ValueError(f"unknown trajectory {kind!r}; choose one of {', '.join(TRAJECTORIES)}")
