"""tf.data pipelines over DBlur-layout folders, whole-image evaluation pairs and calibration images.

Images are decoded in Python with :func:`kd_edge.images.read_image` (any format, mode or bit depth:
grayscale becomes 3 channels, alpha is dropped with a warning, 16-bit is scaled to float). When the
decoded set fits in ``cache_bytes`` it is kept in memory (as uint8/uint16) after first use, so
training is not I/O bound. A pair whose sizes differ raises InputFileError naming both files; it is
never resized.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kd_edge.data.dblur import HELDOUT_SPLITS, find_pairs, is_split_dir, resolve_split
from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.images import image_files, image_size, read_image

DEFAULT_CACHE_BYTES = 2 * 1024**3


def _size_mismatch(blur_path, sharp_path, bsize, ssize):
    return InputFileError(blur_path, f"size {bsize[0]}x{bsize[1]} differs from its sharp image {sharp_path} "
                                     f"({ssize[0]}x{ssize[1]}); pairs are never resized")


def load_rgb(path):
    """float32 HxWx3 of any image file; alpha dropped with a warning naming the file."""
    img = read_image(path)
    if img.alpha is not None:
        warnings.warn(f"{path}: alpha channel dropped ({img.mode})", stacklevel=2)
    return img


def load_pair(blur_path, sharp_path):
    """(blur, sharp) float32 HxWx3; InputFileError naming both files when their sizes differ."""
    b, s = load_rgb(blur_path), load_rgb(sharp_path)
    if b.rgb.shape != s.rgb.shape:
        raise _size_mismatch(blur_path, sharp_path, b.size, s.size)
    return b.rgb, s.rgb


class _PairStore:
    """Decoded pairs (plus the teacher's output of each, with ``teacher_dir``), cached in memory as integers
    when they fit."""

    def __init__(self, pairs, cache, teacher_dir=None):
        self.pairs = pairs
        self.cache = cache
        self.teacher_dir = Path(teacher_dir) if teacher_dir is not None else None
        self._mem = {}

    def get(self, i):
        hit = self._mem.get(i)
        if hit is not None:
            return hit
        pair = self.pairs[i]
        images = [load_rgb(pair.blur), load_rgb(pair.sharp)]
        if images[0].rgb.shape != images[1].rgb.shape:
            raise _size_mismatch(pair.blur, pair.sharp, images[0].size, images[1].size)
        if self.teacher_dir is not None:  # checked up front by _check_teacher_outputs
            from kd_edge.distill.teacher_cache import output_name

            images.append(load_rgb(self.teacher_dir / output_name(pair)))
        if self.cache:
            item = tuple(_compact(img) for img in images)
            self._mem[i] = item
            return item
        return tuple(img.rgb for img in images)


def _compact(img):
    if img.bit_depth == 16:
        return np.rint(img.rgb * 65535.0).astype(np.uint16)
    return np.rint(img.rgb * 255.0).astype(np.uint8)


def _to_float(arr):
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * np.float32(1 / 255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) * np.float32(1 / 65535.0)
    return arr.astype(np.float32, copy=False)


def training_pairs(data_dir, *, patch=128):
    """The pairs of the training split that can give a ``patch`` crop; checks every pair's sizes (headers)."""
    split = resolve_split(data_dir, prefer=("train",))
    pairs = find_pairs(split)
    if not pairs:
        raise InputFileError(split, "no blurred/sharp pairs with matching file names")
    usable, small = [], []
    for p in pairs:
        bsize, ssize = image_size(p.blur), image_size(p.sharp)
        if bsize != ssize:
            raise _size_mismatch(p.blur, p.sharp, bsize, ssize)
        if bsize[0] < patch or bsize[1] < patch:
            small.append(p)
            continue
        usable.append((p, bsize))
    if small:
        warnings.warn(f"{split}: {len(small)} pair(s) smaller than the {patch}px patch left out "
                      f"(first: {small[0].blur})", stacklevel=2)
    if not usable:
        raise InputFileError(split, f"no pair is at least {patch}x{patch} px (use a smaller --patch)")
    return split, usable


def _check_teacher_outputs(teacher_dir, usable):
    """Every usable pair has its teacher output, of its size (headers only): fail before training starts."""
    from kd_edge.distill.teacher_cache import output_name

    for pair, size in usable:
        path = Path(teacher_dir) / output_name(pair)
        if not path.is_file():
            raise InputFileError(path, f"missing from the teacher cache (the teacher output for {pair.blur})")
        found = image_size(path)
        if found != size:
            raise InputFileError(path, f"size {found[0]}x{found[1]} differs from {pair.blur} "
                                       f"({size[0]}x{size[1]}); rebuild the teacher cache")


def patch_stream(data_dir, *, patch=128, seed=0, augment=True, repeat=True, cache_bytes=DEFAULT_CACHE_BYTES,
                 crops_per_image=None, teacher_dir=None):
    """A re-startable numpy generator factory of aligned (blur, sharp) float32 patches, or (blur, sharp,
    teacher output) with ``teacher_dir`` (a :mod:`kd_edge.distill.teacher_cache` folder).

    Each epoch visits every pair once in an order drawn from ``numpy.random.default_rng(seed)``; the
    crop offset, 90-degree rotation and horizontal flip are drawn from the same stream and applied to
    both images, so a given seed gives the same sequence every time.

    ``crops_per_image`` (default: 1 when the set is cached in memory, 4 when it is too large and must
    be decoded from disk each time) takes that many crops from each decoded pair; the crops then pass
    through a seeded shuffle buffer so that one batch does not hold crops of a single image.
    """
    patch = int(patch)
    if patch < 1:
        raise KdEdgeError(f"--patch must be positive, got {patch}")
    split, usable = training_pairs(data_dir, patch=patch)
    if teacher_dir is not None:
        _check_teacher_outputs(teacher_dir, usable)
    images_per_pair = 2 if teacher_dir is None else 3
    total_bytes = sum(w * h * 3 * images_per_pair for _, (w, h) in usable)
    store = _PairStore([p for p, _ in usable], cache=total_bytes <= cache_bytes, teacher_dir=teacher_dir)
    per_image = int(crops_per_image or (1 if store.cache else 4))
    if per_image < 1:
        raise KdEdgeError(f"crops_per_image must be >= 1, got {per_image}")
    buffer_size = 1 if per_image == 1 else max(64, 8 * per_image)

    def crops(rng):
        while True:
            for i in rng.permutation(len(store.pairs)):
                images = store.get(int(i))
                h, w = images[0].shape[:2]
                for _ in range(per_image):
                    y = int(rng.integers(0, h - patch + 1))
                    x = int(rng.integers(0, w - patch + 1))
                    views = [img[y:y + patch, x:x + patch] for img in images]
                    if augment:
                        k = int(rng.integers(4))
                        flip = bool(rng.integers(2))
                        views = [np.rot90(c, k) for c in views]
                        if flip:
                            views = [c[:, ::-1] for c in views]
                    yield tuple(np.ascontiguousarray(_to_float(c)) for c in views)
            if not repeat:
                return

    def generate():
        rng = np.random.default_rng(int(seed))
        if buffer_size == 1:
            yield from crops(rng)
            return
        pool = []
        for item in crops(rng):
            if len(pool) < buffer_size:
                pool.append(item)
                continue
            j = int(rng.integers(buffer_size))
            yield pool[j]
            pool[j] = item
        order = rng.permutation(len(pool))
        for j in order:
            yield pool[int(j)]

    generate.split = split
    generate.pairs = len(store.pairs)
    generate.cached = store.cache
    generate.crops_per_image = per_image
    return generate


def train_dataset(data_dir, *, patch=128, batch=8, seed=0, augment=True, repeat=True,
                  cache_bytes=DEFAULT_CACHE_BYTES, crops_per_image=None, teacher_dir=None):
    """tf.data.Dataset of ``(blur, sharp)`` float32 NHWC batches in [0,1] with aligned random crops
    (``(blur, sharp, teacher)`` with ``teacher_dir``, a teacher-output cache).

    ``data_dir`` is a split folder (``blur/`` + ``sharp/``) or a root whose ``train/`` is used. With
    ``repeat=False`` the dataset is one epoch (``crops_per_image`` crops per pair; the last batch may
    be smaller). Sets larger than ``cache_bytes`` are decoded from disk, several crops per decode.
    """
    import kd_edge  # noqa: F401  (tf_keras switch before TensorFlow)
    import tensorflow as tf

    generate = patch_stream(data_dir, patch=patch, seed=seed, augment=augment, repeat=repeat,
                            cache_bytes=cache_bytes, crops_per_image=crops_per_image, teacher_dir=teacher_dir)
    spec = tf.TensorSpec(shape=(int(patch), int(patch), 3), dtype=tf.float32)
    signature = (spec, spec) if teacher_dir is None else (spec, spec, spec)
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    ds = ds.batch(int(batch), drop_remainder=bool(repeat))
    return ds.prefetch(tf.data.AUTOTUNE)


def heldout_split(data_dir):
    """``data_dir`` if it is a split, else its test/ (validation/, val/, valid/) split; never train/."""
    return resolve_split(data_dir, prefer=HELDOUT_SPLITS, any_split=False)


def eval_pairs(data_dir, *, limit=None):
    """Yield ``(name, blur, sharp)`` float32 HxWx3 whole images, sorted by name.

    ``data_dir`` is a split folder or a root (its test/ or validation/ split is used).
    """
    split = heldout_split(data_dir)
    pairs = find_pairs(split)
    if not pairs:
        raise InputFileError(split, "no blurred/sharp pairs with matching file names")
    for n, pair in enumerate(pairs):
        if limit is not None and n >= int(limit):
            return
        blur, sharp = load_pair(pair.blur, pair.sharp)
        yield pair.name, blur, sharp


def _calibration_files(data_dir):
    root = Path(data_dir)
    if not root.exists():
        raise InputFileError(root, "no such file or directory")
    if root.is_file():
        return [root]
    if is_split_dir(root):
        folder = root / "blur"
    else:
        try:
            folder = resolve_split(root, prefer=("train",)) / "blur"
        except InputFileError:
            folder = root
    files = image_files(folder)
    if not files:
        raise InputFileError(root, "no images found for calibration")
    return files


def representative_images(data_dir=None, *, count=32, size=256, seed=0):
    """float32 N x size x size x 3 in [0,1]: blurred images for int8 calibration.

    ``data_dir`` None uses built-in synthetic blurred images (scikit-image photographs and dead leaves,
    motion blur); otherwise random crops of the blurred images of a DBlur split/root or of any folder of
    images (smaller images are padded symmetrically). Deterministic for a given seed.
    """
    count, size = int(count), int(size)
    if count < 1 or size < 1:
        raise KdEdgeError("representative_images needs count >= 1 and size >= 1")
    if data_dir is None:
        from kd_edge.data.synth import synth_pairs

        kmax = min(29, max(3, (size // 2) | 1) - 2) if size < 32 else 29
        kmin = min(13, kmax)
        return np.stack([p.blur for p in synth_pairs(count, size, seed, kernel_min=kmin, kernel_max=kmax)])
    files = _calibration_files(data_dir)
    rng = np.random.default_rng([int(seed), 0xCA1])
    order = rng.permutation(len(files))
    out = []
    while len(out) < count:
        for j in order:
            if len(out) >= count:
                break
            img = load_rgb(files[int(j)]).rgb
            h, w = img.shape[:2]
            if h < size or w < size:
                py, px = max(0, size - h), max(0, size - w)
                img = np.pad(img, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode="symmetric")
                h, w = img.shape[:2]
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            out.append(img[y:y + size, x:x + size])
    return np.stack(out).astype(np.float32)
