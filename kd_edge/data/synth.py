"""Synthetic blur: a DBlur-layout dataset from sharp images and random camera-shake kernels.

Every pair is generated from its own random stream ``numpy.random.default_rng([seed, index])``, so the
same options give byte-identical files, and ``synth.json`` records the seed and every parameter. The
kernel of each pair (motion, convolved with the defocus Gaussian when there is one) is saved as
``<split>/kernels/<stem>.npy``: ``blur = clip(convolve(sharp, kernel) + noise)`` with symmetric
boundaries, computed on a margin around the crop so the borders are real blur, not padding.

Sources: a folder of sharp images (each cut into ``size`` tiles; random crops when more pairs are
asked for than there are tiles), or with none the built-in offline set: the photographs bundled in
scikit-image's wheel plus procedurally generated dead-leaves images (unlimited); ``builtin_mix`` mixes
the built-in set into a folder-sourced one. Only image sizes are kept from the first pass and one source image is
decoded at a time (per worker), so a folder of thousands of photos costs no more memory than one.

``max_side`` shrinks (area filter) every folder photo whose longer side exceeds it before tiling. Without it a
high-resolution photo gives many tiles and each holds little structure: 204 studio portraits of 1350x1350 made 80%
of the 160-px tiles of ``../shared/data/sharp`` (728 photos), and a 160-px crop of one is mostly skin and backdrop.
Shrinking also makes every tile crisper than a photo at its own resolution; ``identity_native`` cuts the untouched
pairs around the same tile centre from the photo as stored, so that a model also sees soft, full-resolution photos
it must leave alone. (Measured in issue 13: at 15% of pairs it did not stop a teacher from sharpening sharp photos.)
``soft_sharp`` softens that share of sharp photos with a Gaussian before anything else and keeps the softness in
the target, so the pair says: remove the shake, keep the lens softness that is in the scene. Issue 13 found the
teachers sharpening sharp but soft photos (Levin's im4: 31.5 dB), which shrunk, crisp targets and Gaussian
``defocus`` on the blurred side both teach.

The camera model (all off by default, so older ``synth.json`` files regenerate the same bytes; ``--camera`` in
the CLI turns them on, see :data:`CAMERA_PRESET`): kernel sizes from 1 px (no blur) with most mass on mild shake
(``kernel_bias``), linear / curved / frame-averaged trajectories beside the random walk (``trajectories``),
blur in linear light with saturated highlights (``linear_light``, ``highlights``), signal-dependent sensor noise
(``shot_noise``), JPEG re-compression (``jpeg``, ``jpeg_min``) and untouched sharp pairs (``identity``) so a model
learns to leave a sharp photo alone (:mod:`kd_edge.data.camera`). ``moving_subject`` blurs only a subject
that moves over a static background in that share of the blurred pairs (:mod:`kd_edge.data.moving_subject`), and
``rotation`` adds an in-plane turn to the exposure of that share (:mod:`kd_edge.data.rotation`); those pairs have
no kernel file, since one kernel no longer describes the image.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from kd_edge.atomic import atomic_path, write_json
from kd_edge.data import camera, moving_subject, rotation
from kd_edge.data.kernels import TRAJECTORIES, combine, gaussian_kernel, motion_kernel, sample_kernel  # noqa: F401
from kd_edge.data.kernels import blur as convolve_kernel
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.images import IMAGE_SUFFIXES, image_files, read_image, to_uint, write_image

SYNTH_FORMAT = "kd-edge-synth"
SYNTH_VERSION = 2  # 2: the camera-model options (a version-1 file has none of them and regenerates the same)

# photographs shipped inside the scikit-image wheel (no pooch download); grey ones are expanded to RGB
BUILTIN_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "moon.png", "brick.png", "grass.png",
    "gravel.png", "coins.png", "page.png", "text.png",
)
DEFAULT_PHOTO_FRACTION = 0.35


@dataclass
class SynthParams:
    count: int = 64
    size: int = 256
    seed: int = 0
    test_fraction: float = 0.25
    kernel_min: int = 13
    kernel_max: int = 29
    defocus: float = 0.0  # max Gaussian defocus sigma (px); per pair uniform in [0, defocus]
    noise: float = 0.0  # max sensor-noise sigma (fraction of full scale); per pair uniform in [0, noise]
    photo_fraction: float = DEFAULT_PHOTO_FRACTION  # built-in source only: photographs vs dead leaves
    # camera model (see the module docstring); the defaults reproduce version 1 exactly
    kernel_bias: float = 1.0  # kernel size index ~ n * U**bias: 1 uniform, 2+ most pairs mildly blurred
    trajectories: str = "random-walk"  # comma-separated subset of kernels.TRAJECTORIES, drawn uniformly
    linear_light: bool = False  # blur (and noise) in linear intensity, then re-encode sRGB
    highlights: float = 0.0  # probability that highlights are boosted 1.5-4x before the blur (needs linear_light)
    srgb_blur: float = 0.0  # with linear_light: share of pairs blurred in sRGB values instead (as Levin et al. were)
    shot_noise: float = 0.0  # max Poisson coefficient (variance = a * linear value), per pair uniform in [0, max]
    jpeg: float = 0.0  # probability of JPEG re-compression of the blurred image
    jpeg_min: int = 60  # quality uniform in [jpeg_min, 95]
    identity: float = 0.0  # fraction of pairs with no degradation at all (blur == sharp)
    builtin_mix: float = 0.0  # with a source folder: fraction of pairs drawn from the built-in set instead
    max_side: int = 0  # with a source folder: shrink photos whose longer side exceeds this before tiling (0: off)
    identity_native: bool = False  # with max_side: untouched pairs are cut from the photo at its own resolution
    soft_sharp: float = 0.0  # share of pairs whose sharp photo is softened first (the softness stays in the target)
    soft_sigma: float = 1.2  # that softening: a Gaussian of sigma uniform in [SOFT_SIGMA_MIN, soft_sigma] px
    saturated: float = 0.0  # share of pairs whose sharp image is saturated dead leaves (colours on the gamut's faces)
    moving_subject: float = 0.0  # share of blurred pairs where only a subject moves over a static background
    rotation: float = 0.0  # share of blurred pairs that also turn in-plane during the exposure (non-uniform blur)
    rotation_max: float = 4.0  # that turn: uniform in [-rotation_max, rotation_max] degrees about a point of the crop

    def trajectory_kinds(self):
        return [t.strip() for t in str(self.trajectories).split(",") if t.strip()]

    def validate(self):
        if self.count < 0:
            raise KdEdgeError(f"--count must be >= 0 (0 = every tile of SRC_DIR), got {self.count}")
        if self.size < 16:
            raise KdEdgeError(f"--size must be at least 16 px, got {self.size}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise KdEdgeError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if self.kernel_min < 1 or self.kernel_max < self.kernel_min:
            raise KdEdgeError(f"kernel sizes must satisfy 1 <= --kernel-min <= --kernel-max, "
                              f"got {self.kernel_min} and {self.kernel_max}")
        if self.kernel_max >= self.size:
            raise KdEdgeError(f"--kernel-max {self.kernel_max} must be smaller than --size {self.size}")
        if self.defocus < 0 or self.noise < 0:
            raise KdEdgeError("--defocus and --noise must be >= 0")
        kinds = self.trajectory_kinds()
        unknown = [k for k in kinds if k not in TRAJECTORIES]
        if not kinds or unknown:
            raise KdEdgeError(f"--trajectories must be a comma-separated subset of {', '.join(TRAJECTORIES)}, "
                              f"got {self.trajectories!r}")
        if self.kernel_bias <= 0:
            raise KdEdgeError(f"--kernel-bias must be > 0, got {self.kernel_bias}")
        for name in ("highlights", "srgb_blur", "jpeg", "identity", "builtin_mix", "soft_sharp", "saturated",
                     "moving_subject", "rotation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise KdEdgeError(f"--{name.replace('_', '-')} is a probability in [0, 1], got {getattr(self, name)}")
        if self.srgb_blur > 0 and not self.linear_light:
            raise KdEdgeError("--srgb-blur needs --linear-light (it is the share of pairs that skip linear light)")
        if self.highlights > 0 and not self.linear_light:
            raise KdEdgeError("--highlights needs --linear-light (highlights saturate in linear light)")
        if self.shot_noise < 0:
            raise KdEdgeError(f"--shot-noise must be >= 0, got {self.shot_noise}")
        if self.max_side and self.max_side < self.size:
            raise KdEdgeError(f"--max-side {self.max_side} must be 0 (off) or at least --size {self.size}")
        if self.identity_native and not (self.max_side and self.identity > 0):
            raise KdEdgeError("--identity-native cuts the untouched pairs (--identity) from photos not shrunk by "
                              "--max-side: it needs both")
        if self.soft_sharp > 0 and not SOFT_SIGMA_MIN <= self.soft_sigma <= 3.0:
            raise KdEdgeError(f"--soft-sigma must be in [{SOFT_SIGMA_MIN}, 3] px, got {self.soft_sigma}")
        if not 0.0 < self.rotation_max <= MAX_ROTATION:
            raise KdEdgeError(f"--rotation-max must be in (0, {MAX_ROTATION:g}] degrees, got {self.rotation_max}")
        if not 1 <= self.jpeg_min <= 95:
            raise KdEdgeError(f"--jpeg-min must be a JPEG quality in [1, 95], got {self.jpeg_min}")

    def kernel_sizes(self):
        sizes = [k for k in range(self.kernel_min, self.kernel_max + 1) if k % 2 == 1]
        return sizes or [self.kernel_min | 1]

    def camera_options(self):
        """The camera-model options that differ from version 1's behaviour (recorded in synth.json)."""
        return {k: getattr(self, k) for k in CAMERA_KEYS}


CAMERA_KEYS = ("kernel_bias", "trajectories", "linear_light", "highlights", "shot_noise", "jpeg", "jpeg_min",
               "identity", "builtin_mix", "max_side", "srgb_blur", "identity_native", "soft_sharp", "soft_sigma",
               "saturated", "moving_subject", "rotation", "rotation_max")
SOFT_SIGMA_MIN = 0.3
MAX_ROTATION = 15.0  # degrees over one exposure
# what ``kd-edge data synth --camera`` sets (each can still be overridden by its own option). No Gaussian defocus
# on the blurred side and 40% of sharp photos softened in the target (issue 13, teachers v8-v12): defocus pairs and
# crisp targets taught the teachers to sharpen soft sharp photos (Levin's im4 at 31.5 dB); with --defocus 0
# --soft-sharp 0.4 the teacher kept every real sharp photo above 39 dB and gained more on every real set.
CAMERA_PRESET = {"kernel_min": 1, "kernel_max": 29, "kernel_bias": 2.0, "trajectories": ",".join(TRAJECTORIES),
                 "linear_light": True, "highlights": 0.3, "shot_noise": 0.002, "noise": 0.005, "defocus": 0.0,
                 "jpeg": 0.5, "jpeg_min": 60, "identity": 0.08, "soft_sharp": 0.4}


@dataclass
class SynthPair:
    index: int
    sharp: np.ndarray  # float32 SxSx3, already quantised to 8 bits
    blur: np.ndarray  # float32 SxSx3, already quantised to 8 bits
    kernel: np.ndarray  # float32 kxk, sum 1
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ sources
class _BuiltinSource:
    name = "builtin"

    def __init__(self, photo_fraction):
        import skimage

        self.folder = Path(skimage.__file__).parent / "data"
        self.photos = [p for p in BUILTIN_PHOTOS if (self.folder / p).is_file()]
        self.photo_fraction = photo_fraction if self.photos else 0.0
        self._cache = {}

    def describe(self):
        return {"kind": "builtin", "photos": self.photos, "photo_fraction": self.photo_fraction,
                "skimage_data": str(self.folder)}

    def _photo(self, name):
        if name not in self._cache:
            self._cache[name] = read_image(self.folder / name).rgb
        return self._cache[name]

    def region(self, index, rng, side):
        """A side x side float32 RGB region and a description of where it came from."""
        import cv2

        from kd_edge.data.dead_leaves import dead_leaves

        if rng.uniform() < self.photo_fraction:
            name = self.photos[int(rng.integers(len(self.photos)))]
            img = self._photo(name)
            h, w = img.shape[:2]
            low = side / min(h, w)
            scale = float(rng.uniform(max(low, 0.45), max(low, 1.0)))
            if abs(scale - 1.0) > 1e-3:
                img = cv2.resize(img, (max(side, round(w * scale)), max(side, round(h * scale))),
                                 interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            h, w = img.shape[:2]
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = img[y:y + side, x:x + side]
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.uniform() < 0.5:
                crop = crop[:, ::-1]
            return np.ascontiguousarray(crop), {"source": f"skimage:{name}", "scale": round(scale, 4), "x": x, "y": y}
        return dead_leaves(rng, side), {"source": "dead_leaves"}


class _FolderSource:
    name = "folder"

    def __init__(self, src_dir, size, margin, max_side=0):
        self.root = Path(src_dir)
        if not self.root.is_dir():
            raise InputFileError(self.root, "not a directory of sharp images")
        self.files = image_files(self.root)
        if not self.files:
            raise InputFileError(self.root, f"no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.size = size
        self.max_side = int(max_side or 0)
        self.tiles = []  # (file index, y, x), in the coordinates of the (possibly shrunk) photo
        self.skipped = []
        self.sizes = []  # (h, w) after shrinking to max_side, or None when unreadable
        self.native_sizes = []  # (h, w) as stored, or None when unreadable
        self.shrunk = 0

        for i, path in enumerate(self.files):
            try:
                decoded = read_image(path)  # decoded in full: a truncated JPEG is skipped here, like a corrupt PNG
                w, h = decoded.width, decoded.height
                del decoded
            except InputFileError as exc:
                self.skipped.append({"file": str(path.relative_to(self.root)), "reason": exc.problem})
                self.sizes.append(None)
                self.native_sizes.append(None)
                continue
            self.native_sizes.append((h, w))
            if self._shrunk_size(h, w) != (h, w):
                h, w = self._shrunk_size(h, w)
                self.shrunk += 1
            self.sizes.append((h, w))
            if h < size or w < size:
                self.skipped.append({"file": str(path.relative_to(self.root)),
                                     "reason": f"{w}x{h} is smaller than --size {size}"})
                continue
            ny, nx = h // size, w // size
            oy, ox = (h - ny * size) // 2, (w - nx * size) // 2
            self.tiles += [(i, oy + r * size, ox + c * size) for r in range(ny) for c in range(nx)]
        for s in self.skipped:
            warnings.warn(f"{self.root / s['file']}: skipped ({s['reason']})", stacklevel=3)
        if not self.tiles:
            raise InputFileError(self.root, f"no usable image of at least {size}x{size} px (use a smaller --size)")
        self.margin = margin
        self._cache = {}  # native flag -> (file index, padded image): one decoded photo per resolution

    def describe(self):
        return {"kind": "folder", "path": str(self.root.resolve()), "files": len(self.files),
                "tiles": len(self.tiles), "skipped": self.skipped,
                **({"max_side": self.max_side, "shrunk": self.shrunk} if self.max_side else {})}

    def _shrunk_size(self, h, w):
        """(h, w) after shrinking to ``max_side``; unchanged when off or already small enough."""
        if not self.max_side or max(h, w) <= self.max_side:
            return h, w
        s = self.max_side / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))

    def _padded(self, i, native=False):
        key, img = self._cache.get(native, (None, None))
        if key != i:
            img = read_image(self.files[i]).rgb
            h, w = self.native_sizes[i] if native else self.sizes[i]  # native: as stored; else as the tiles were cut
            if img.shape[:2] != (h, w):
                import cv2

                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            m = self.margin
            img = np.pad(img, ((m, m), (m, m), (0, 0)), mode="symmetric")
            self._cache[native] = (i, img)
        return img

    def plan(self, count, rng):
        """Which tile (or random crop) each pair uses: every tile once in random order, then random crops."""
        order = rng.permutation(len(self.tiles))
        if count == 0:
            count = len(self.tiles)
        plan = [self.tiles[j] for j in order[:count]]
        usable = [i for i, s in enumerate(self.sizes) if s is not None and s[0] >= self.size and s[1] >= self.size]
        while len(plan) < count:
            i = usable[int(rng.integers(len(usable)))]
            h, w = self.sizes[i]
            plan.append((i, int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))))
        return plan

    def region(self, spec, side, native=False):
        """The ``side`` x ``side`` region around tile ``spec``; ``native``: around the same centre in the photo
        at its own resolution (not shrunk by max_side), recorded as ``native_x``/``native_y``."""
        i, y, x = spec
        info = {"source": str(self.files[i].relative_to(self.root)), "x": int(x), "y": int(y)}
        native = native and self.native_sizes[i] != self.sizes[i]
        if native:  # the tile's centre, scaled into the photo as stored
            (h, w), (nh, nw) = self.sizes[i], self.native_sizes[i]
            y = min(max(0, round((y + self.size / 2) * nh / h - self.size / 2)), nh - self.size)
            x = min(max(0, round((x + self.size / 2) * nw / w - self.size / 2)), nw - self.size)
            info.update(native_x=int(x), native_y=int(y))
        pad = (side - self.size) // 2
        img = self._padded(i, native)
        m = self.margin
        y0, x0 = y + m - pad, x + m - pad
        return img[y0:y0 + side, x0:x0 + side], info


class _Sources:
    """A folder source, the built-in source, or both (``builtin_mix``): ``spec`` None means built-in."""

    def __init__(self, folder=None, builtin=None):
        self.folder, self.builtin = folder, builtin

    def describe(self):
        if self.folder is None or self.builtin is None:
            return (self.folder or self.builtin).describe()
        return {**self.folder.describe(), "builtin": self.builtin.describe()}

    def region(self, index, rng, side, spec, native=False):
        if spec is not None:
            return self.folder.region(spec, side, native)
        return self.builtin.region(index, rng, side)


# ------------------------------------------------------------------------------------------------ synthesis
def _quantise(img):
    return to_uint(img, 8).astype(np.float32) / np.float32(255.0)


def _kernel_size(rng, params):
    sizes = params.kernel_sizes()
    if params.kernel_bias == 1.0:
        return int(rng.choice(sizes))  # version 1's draw, kept for byte-identical regeneration
    return int(sizes[min(len(sizes) - 1, int(rng.uniform() ** params.kernel_bias * len(sizes)))])


def _shot_noise(lin, rng, params, extra):
    """Signal-dependent sensor noise on linear intensities, its strength drawn per pair and recorded in ``extra``."""
    if params.shot_noise <= 0:
        return lin
    extra["shot_noise"] = round(float(rng.uniform(0.0, params.shot_noise)), 6)
    return camera.sensor_noise(lin, rng, extra["shot_noise"], 0.0)


def _soften(region, sigma, linear_light):
    """A lens-soft version of a sharp photo (in linear light when the set blurs there): the pair's target."""
    if not linear_light:
        return convolve_kernel(region.astype(np.float32), gaussian_kernel(sigma))
    return camera.linear_to_srgb(convolve_kernel(camera.srgb_to_linear(region.astype(np.float32)),
                                                 gaussian_kernel(sigma)))


def _move(image, kernel, turn, pad):
    """The exposure of ``image`` (a region with ``pad`` px around the crop): the turn about a point of the crop,
    if any, then the kernel's translation."""
    if turn is not None:
        image = rotation.rotational_blur(image, np.asarray(turn["centre"]) + pad, turn["degrees"])
    return convolve_kernel(image, kernel)


def _rotation_margin(params):
    """The farthest a turn of ``rotation_max`` about any point of the crop moves a pixel of its padded region."""
    if params.rotation <= 0:
        return 0
    padded = params.size + params.kernel_max + 2  # the crop and the widest kernel's pad; a centre in a corner
    return int(np.ceil(rotation.reach(padded, (0.0, 0.0), params.rotation_max))) + 2


def _make_pair(index, params: SynthParams, source, spec=None):
    """One pair. The random draws happen in a fixed order, and an option that is off draws nothing."""
    rng = np.random.default_rng([int(params.seed), int(index)])
    untouched = params.identity > 0 and rng.uniform() < params.identity
    ksize = 1 if untouched else _kernel_size(rng, params)
    kinds = params.trajectory_kinds()
    kind = kinds[0] if len(kinds) == 1 else kinds[int(rng.integers(len(kinds)))]
    kernel = sample_kernel(rng, ksize, kind)  # size 1 (untouched pairs too) is the identity, no draw
    sigma = float(rng.uniform(0.0, params.defocus)) if params.defocus > 0 and not untouched else 0.0
    if sigma > 0.05:
        kernel = combine(kernel, gaussian_kernel(sigma))
    srgb_blur = params.srgb_blur > 0 and not untouched and rng.uniform() < params.srgb_blur
    pad = kernel.shape[0] // 2 + 1
    turn = None
    if params.rotation > 0 and not untouched and rng.uniform() < params.rotation:
        degrees = float(rng.uniform(-params.rotation_max, params.rotation_max))
        centre = rng.uniform(0.0, params.size, size=2)  # in the crop
        turn = {"degrees": round(degrees, 4), "centre": [round(float(c), 2) for c in centre]}
        pad += int(np.ceil(rotation.reach(params.size + 2 * pad, centre + pad, degrees))) + 1
    side = params.size + 2 * pad
    region, info = source.region(index, rng, side, spec, native=untouched and params.identity_native)
    if params.saturated > 0 and rng.uniform() < params.saturated:
        from kd_edge.data.dead_leaves import dead_leaves

        region, info = dead_leaves(rng, side, palette="saturated"), {"source": "dead_leaves_saturated"}
    if params.soft_sharp > 0 and rng.uniform() < params.soft_sharp:
        info["soft_sigma"] = round(float(rng.uniform(SOFT_SIGMA_MIN, params.soft_sigma)), 4)
        region = _soften(region, info["soft_sigma"], params.linear_light)
    sharp_full = _quantise(region)
    sharp = sharp_full[pad:-pad, pad:-pad]
    extra = {"srgb_blur": True} if srgb_blur else {}
    if turn is not None:
        extra["rotation"] = turn
    spread = partial(_move, kernel=kernel, turn=turn, pad=pad)  # the whole frame moves (camera shake)
    if params.moving_subject > 0 and not untouched and rng.uniform() < params.moving_subject:
        matte, extra["moving_subject"] = moving_subject.subject_matte(rng, side, params.size)
        spread = partial(moving_subject.blur_moving_subject, matte=matte, move=spread)  # only the subject moves
    if untouched:
        blurred = sharp.copy()
    elif params.linear_light and not srgb_blur:
        lin = camera.srgb_to_linear(sharp_full)
        if params.highlights > 0 and rng.uniform() < params.highlights:
            extra["highlight_gain"] = round(float(rng.uniform(1.5, 4.0)), 4)
            lin = camera.boost_highlights(lin, extra["highlight_gain"])
        lin = spread(lin)[pad:-pad, pad:-pad]
        blurred = camera.linear_to_srgb(_shot_noise(lin, rng, params, extra))
    else:  # blur the encoded values: version 1, and the --srgb-blur share (its sensor noise still in linear light)
        blurred = spread(sharp_full)[pad:-pad, pad:-pad]
        if srgb_blur and params.shot_noise > 0:
            blurred = camera.linear_to_srgb(_shot_noise(camera.srgb_to_linear(blurred), rng, params, extra))
    noise_sigma = float(rng.uniform(0.0, params.noise)) if params.noise > 0 and not untouched else 0.0
    if noise_sigma > 0:
        blurred = blurred + rng.normal(0.0, noise_sigma, blurred.shape).astype(np.float32)
    blurred = _quantise(blurred)
    if params.jpeg > 0 and not untouched and rng.uniform() < params.jpeg:
        extra["jpeg_quality"] = int(rng.integers(params.jpeg_min, 96))
        blurred = _quantise(camera.jpeg_roundtrip(blurred, extra["jpeg_quality"]))
    mse = float(np.mean((blurred.astype(np.float64) - sharp) ** 2))
    info.update({"kernel_size": ksize, "kernel_shape": list(kernel.shape), "defocus_sigma": round(sigma, 4),
                 "noise_sigma": round(noise_sigma, 5), "psnr": round(10 * np.log10(1.0 / max(mse, 1e-10)), 3)})
    if len(kinds) > 1 or kinds != ["random-walk"]:
        info["trajectory"] = kind if ksize > 1 else "none"
    if params.identity > 0:
        info["untouched"] = bool(untouched)
    info.update(extra)
    return SynthPair(index, np.ascontiguousarray(sharp), np.ascontiguousarray(blurred), kernel, info)


_WORKER = {}


def _init_worker(params, source, out):
    _WORKER.update(params=params, source=source, out=Path(out))


def _write_pair(job):
    index, spec, split, name = job
    pair = _make_pair(index, _WORKER["params"], _WORKER["source"], spec)
    folder = _WORKER["out"] / split
    write_image(folder / "sharp" / name, pair.sharp)
    write_image(folder / "blur" / name, pair.blur)
    if not {"moving_subject", "rotation"} & set(pair.info):  # one kernel does not describe those images
        np.save(folder / "kernels" / f"{Path(name).stem}.npy", pair.kernel)
    return {"name": name, "split": split, **pair.info}


def synth_pairs(count=16, size=256, seed=0, **options):
    """Yield ``count`` in-memory :class:`SynthPair` from the built-in source (nothing is written)."""
    params = SynthParams(count=count, size=size, seed=seed, **options)
    params.validate()
    source = _Sources(builtin=_BuiltinSource(params.photo_fraction))
    for i in range(count):
        yield _make_pair(i, params, source)


def builtin_crops(count, side, *, seed=0, photo_fraction=DEFAULT_PHOTO_FRACTION):
    """``count`` sharp ``side`` x ``side`` float32 crops of the built-in sources (scikit-image photos, dead leaves)
    from one seeded stream, and the name of the source of each."""
    source, rng = _BuiltinSource(photo_fraction), np.random.default_rng(seed)
    regions = [source.region(i, rng, side) for i in range(count)]
    return [np.asarray(r, dtype=np.float32) for r, _ in regions], [info["source"] for _, info in regions]


def split_test_indices(count, test_fraction, seed):
    """Indices of the pairs that go to test/: a seeded random subset of round(count * fraction)."""
    n_test = int(round(count * test_fraction))
    if test_fraction > 0 and count >= 2:
        n_test = min(max(n_test, 1), count - 1)
    rng = np.random.default_rng([int(seed), 0x5E1])
    return set(int(i) for i in rng.permutation(count)[:n_test])


def synthesize(out_dir, src_dir=None, *, count=64, size=256, seed=0, test_fraction=0.25, kernel_min=13,
               kernel_max=29, defocus=0.0, noise=0.0, photo_fraction=DEFAULT_PHOTO_FRACTION, force=False,
               progress=False, workers=1, **camera_options):
    """Write a DBlur-layout dataset to ``out_dir`` (``train/`` and ``test/``) and return the synth.json dict.

    ``count`` pairs of ``size`` x ``size`` (``count=0`` with ``src_dir``: one pair per tile). The folder is
    built beside ``out_dir`` and renamed into place at the end; an existing non-empty ``out_dir`` is only
    replaced with ``force=True``. ``workers`` > 1 generates in that many processes; the files are the
    same whatever the number of workers.
    """
    out_dir = Path(out_dir)
    params = SynthParams(count=int(count), size=int(size), seed=int(seed), test_fraction=float(test_fraction),
                         kernel_min=int(kernel_min), kernel_max=int(kernel_max), defocus=float(defocus),
                         noise=float(noise), photo_fraction=float(photo_fraction), **_camera_kwargs(camera_options))
    params.validate()
    if src_dir is not None and out_dir.resolve() == Path(src_dir).resolve():
        raise InputFileError(out_dir, "the output folder is the source folder; refusing to overwrite inputs")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(out_dir, "exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputFileError(out_dir, "already exists and is not empty (use --force to replace it)")
    if src_dir is not None and Path(src_dir).resolve() in out_dir.resolve().parents and force:
        pass  # writing inside the source tree is allowed; the source files themselves are never touched
    margin = params.kernel_max // 2 + 1 + int(np.ceil(3 * params.defocus)) + 1 + _rotation_margin(params)
    if src_dir is None:
        if params.count == 0:
            raise KdEdgeError("--count 0 (every tile) needs a SRC_DIR; give the number of pairs to generate")
        if params.builtin_mix > 0:
            raise KdEdgeError("--builtin-mix mixes the built-in set into a SRC_DIR set; give a SRC_DIR")
        if params.max_side:
            raise KdEdgeError("--max-side shrinks the photos of a SRC_DIR; give a SRC_DIR")
        source = _Sources(builtin=_BuiltinSource(params.photo_fraction))
        plan = [None] * params.count
    else:
        folder = _FolderSource(src_dir, params.size, margin, params.max_side)
        plan_rng = np.random.default_rng([params.seed, 0x7A11])
        if params.builtin_mix > 0:
            if params.count == 0:
                raise KdEdgeError("--builtin-mix needs a --count (the number of pairs in all)")
            builtin = np.random.default_rng([params.seed, 0xB17]).uniform(size=params.count) < params.builtin_mix
            specs = iter(folder.plan(int(params.count - builtin.sum()), plan_rng) if not builtin.all() else [])
            plan = [None if b else next(specs) for b in builtin]
            source = _Sources(folder, _BuiltinSource(params.photo_fraction))
        else:
            plan = folder.plan(params.count, plan_rng)
            source = _Sources(folder)
    total = len(plan)
    test_set = split_test_indices(total, params.test_fraction, params.seed)
    digits = max(6, len(str(total - 1)))
    started = time.perf_counter()
    records = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="synth", unit="pair", leave=False, disable=None)
    with atomic_path(out_dir, keep_suffix=False) as tmp:
        tmp.mkdir(parents=True)
        for split in sorted({"test" if i in test_set else "train" for i in range(total)}):
            for sub in ("blur", "sharp", "kernels"):
                (tmp / split / sub).mkdir(parents=True, exist_ok=True)
        jobs = [(i, plan[i], "test" if i in test_set else "train", f"{i:0{digits}d}.png") for i in range(total)]
        if source.folder is not None:  # group by source file so each is decoded once per worker
            jobs.sort(key=lambda job: (-1 if job[1] is None else job[1][0], job[0]))
        workers = max(1, min(int(workers or 1), total))
        if workers == 1:
            _init_worker(params, source, tmp)
            results = map(_write_pair, jobs)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(params, source, tmp))
            results = pool.map(_write_pair, jobs, chunksize=max(1, min(16, total // (4 * workers))))
        try:
            for record in results:
                records.append(record)
                if bar is not None:
                    bar.update(1)
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
        records.sort(key=lambda r: r["name"])
        elapsed = time.perf_counter() - started
        psnrs = np.array([r["psnr"] for r in records], dtype=np.float64)
        meta = {
            "format": SYNTH_FORMAT, "version": SYNTH_VERSION, "kd_edge_version": _version(),
            "count": params.count, "size": params.size, "seed": params.seed,
            "test_fraction": params.test_fraction, "kernel_min": params.kernel_min,
            "kernel_max": params.kernel_max, "defocus": params.defocus, "noise": params.noise,
            "photo_fraction": params.photo_fraction if src_dir is None or params.builtin_mix > 0 else None,
            **({"camera": params.camera_options()} if params.camera_options() != SynthParams().camera_options()
               else {}),
            "source": source.describe(),
            "pairs": total, "train": total - len(test_set), "test": len(test_set),
            "blur_model": _blur_model(params),
            "psnr_blur_vs_sharp": _stats(psnrs),
            "seconds": round(elapsed, 3),
            "workers": workers,
            "images": records,
        }
        write_json(tmp / "synth.json", meta)
    if bar is not None:
        bar.close()
    return meta


PARAMETER_KEYS = ("count", "size", "seed", "test_fraction", "kernel_min", "kernel_max", "defocus", "noise")


def regenerate(synth_json, out_dir, *, src_dir=None, force=False, progress=False, workers=1):
    """Write the dataset described by an existing ``synth.json`` again (identical image and kernel files).

    A folder-sourced set reads its sharp images from the recorded path unless ``src_dir`` is given.
    """
    path = Path(synth_json)
    if path.is_dir():
        path = path / "synth.json"
    meta = load_synth_json(path.parent) if path.name == "synth.json" else None
    if meta is None:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"not a readable synth.json ({exc})") from None
    if meta.get("format") != SYNTH_FORMAT:
        raise InputFileError(path, f"not a kd-edge synth.json (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > SYNTH_VERSION:
        raise InputFileError(path, f"written by a newer kd-edge (synth format {meta['version']})")
    missing = [k for k in PARAMETER_KEYS if k not in meta]
    if missing:
        raise InputFileError(path, f"missing parameters: {', '.join(missing)}")
    source = meta.get("source") or {}
    if source.get("kind") == "folder" and src_dir is None:
        src_dir = source.get("path")
    elif source.get("kind") != "folder":
        src_dir = None
    kwargs = {k: meta[k] for k in PARAMETER_KEYS}
    if meta.get("photo_fraction") is not None:
        kwargs["photo_fraction"] = meta["photo_fraction"]
    kwargs.update(_camera_kwargs(meta.get("camera") or {}))
    return synthesize(out_dir, src_dir, force=force, progress=progress, workers=workers, **kwargs)


def _camera_kwargs(options):
    unknown = sorted(set(options) - set(CAMERA_KEYS))
    if unknown:
        raise KdEdgeError(f"unknown synthesis option(s): {', '.join(unknown)}")
    return dict(options)


def _blur_model(params):
    if params.camera_options() == SynthParams().camera_options():
        return ("motion kernel (Boracchi & Foi random-walk trajectory) [* Gaussian defocus], "
                "symmetric boundary on a margin, + Gaussian noise, 8-bit PNG")
    parts = [f"kernels {params.kernel_min}-{params.kernel_max} px (size ~ U^{params.kernel_bias:g}), "
             f"trajectories {params.trajectories}"]
    if params.defocus:
        parts.append(f"* Gaussian defocus (sigma <= {params.defocus:g} px)")
    if params.linear_light:
        parts.append("in linear light" + (f", highlights boosted with p={params.highlights:g}" if params.highlights
                                          else "") + (f" ({params.srgb_blur:g} of pairs in sRGB values)"
                                                      if params.srgb_blur else ""))
    if params.shot_noise:
        parts.append(f"shot noise (variance a*x, a <= {params.shot_noise:g})")
    parts.append("+ Gaussian noise, 8-bit")
    if params.jpeg:
        parts.append(f"JPEG q{params.jpeg_min}-95 with p={params.jpeg:g}")
    if params.identity:
        parts.append(f"{params.identity:g} of pairs untouched" + (" (cut from the photos at their own resolution)"
                                                                  if params.identity_native else ""))
    if params.soft_sharp:
        parts.append(f"{params.soft_sharp:g} of sharp photos softened first (Gaussian sigma {SOFT_SIGMA_MIN:g}-"
                     f"{params.soft_sigma:g} px, kept in the target)")
    if params.saturated:
        parts.append(f"{params.saturated:g} of sharp images saturated dead leaves (colours on the gamut's faces)")
    if params.moving_subject:
        parts.append(f"{params.moving_subject:g} of blurred pairs with only a subject moving over a static background "
                     "(no kernel file for those)")
    if params.rotation:
        parts.append(f"{params.rotation:g} of blurred pairs turning up to {params.rotation_max:g} degrees about a point "
                     "of the crop during the exposure (non-uniform; no kernel file for those)")
    return ", ".join(parts)


def _stats(values):
    if len(values) == 0:
        return {}
    return {"mean": round(float(values.mean()), 3), "median": round(float(np.median(values)), 3),
            "min": round(float(values.min()), 3), "max": round(float(values.max()), 3),
            "p05": round(float(np.percentile(values, 5)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


def _version():
    from kd_edge import __version__

    return __version__


def load_synth_json(root):
    """The synth.json of a synthetic dataset root, or None."""
    path = Path(root) / "synth.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"unreadable synth.json ({exc})") from None
