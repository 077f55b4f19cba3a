"""Classical deconvolution baselines given the true blur kernel (an upper bound for non-blind classical methods).

Wiener (scikit-image, balance 0.05) and Richardson-Lucy (scikit-image, 10 iterations), channel by channel, on the
image padded symmetrically by the kernel size and cropped back (limits ringing from the image border). The settings
are deliberately moderate: on 8-bit images more RL iterations or a smaller Wiener balance amplify the quantisation
noise and score below the blurred input.
"""
import numpy as np

from kd_edge.errors import InputFileError

WIENER_BALANCE = 0.05
RL_ITERATIONS = 10
BASELINES = ("wiener", "richardson-lucy")
DESCRIPTIONS = {
    "wiener": f"skimage.restoration.wiener, true kernel, balance {WIENER_BALANCE}",
    "richardson-lucy": f"skimage.restoration.richardson_lucy, true kernel, {RL_ITERATIONS} iterations",
}


def load_kernel(path) -> np.ndarray:
    """A 2-D blur kernel from <split>/kernels/<name>.npy, normalised to sum 1."""
    try:
        kernel = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read the blur kernel ({exc})") from exc
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim == 3:
        kernel = kernel.mean(axis=-1)
    total = kernel.sum() if kernel.ndim == 2 else 0.0
    if kernel.ndim != 2 or not np.isfinite(total) or total <= 0:
        raise InputFileError(path, f"not a 2-D blur kernel with a positive sum (shape {kernel.shape})")
    return kernel / total


def restore(name: str, blur: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Deconvolve a float HxWx3 image in [0, 1] with ``kernel``; float32 HxWx3 clipped to [0, 1]."""
    from skimage import restoration

    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    pad = max(kernel.shape)
    height, width = blur.shape[:2]
    padded = np.pad(np.asarray(blur, dtype=np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    channels = []
    for c in range(padded.shape[-1]):
        channel = padded[..., c]
        if name == "wiener":
            out = restoration.wiener(channel, kernel, balance=WIENER_BALANCE, clip=True)
        else:
            out = restoration.richardson_lucy(channel, kernel, num_iter=RL_ITERATIONS, clip=True)
        channels.append(out[pad: pad + height, pad: pad + width])
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def describe(name: str) -> str:
    return DESCRIPTIONS[name]
