"""Tiled inference: deblur an image of any size with a model that takes fixed-size tiles.

Mobile artifacts (TFLite, Core ML, fixed-shape ONNX) take one input size, e.g. 256x256. To deblur a
4K photo with them, :func:`deblur` cuts the image into overlapping tiles of exactly that size, runs
them (batched when the runtime allows), and blends the outputs back together:

* **Tile grid.** Along each axis the tiles are spread evenly from the first to the last pixel with at
  least ``overlap`` pixels shared between neighbours. The last tile is shifted inward, so every tile
  is full size; an image smaller than a tile is reflect-padded up to the tile and cropped back.
  Tile origins are multiples of the model's stride (``2 ** levels`` of a U-Net) so that every tile
  sees the same down-sampling phase as a whole-image run: without this a strided network is not
  shift-equivariant and overlapping tiles disagree everywhere, not only at their borders. To keep
  the last tile aligned as well, the image is reflect-padded by less than one stride at its
  bottom/right edge (the same padding a whole-image run needs) and cropped back.
* **Blending.** Each tile gets a separable window: 1 in its interior and toward the image border,
  ramping down across the region it shares with a neighbour (``hann``: raised cosine, ``gaussian``:
  Gaussian-CDF cross-fade, steeper, ``linear``; ``none``: no blending, each pixel comes from the tile
  whose centre is nearest). The ramps are sampled at pixel centres, so they are never exactly 0, and
  the windows along each axis are divided by their sum: all weights covering a pixel add up to 1.
  An identity model therefore reconstructs the image exactly (to float32 rounding), including the
  image border, where a single tile covers.
* **Bounded memory.** Tiles are streamed row by row. Only one strip of ``tile_height x width x 3``
  float32 accumulates; when a tile row is finished, the rows that no later tile touches are final and
  are written to the output. Nothing else scales with the image: no list of tiles, no full-size weight
  map. The output may be the input array itself (``out=image``): a row is only overwritten after the
  last tile that reads it has run, so an in-place 4K run needs one float32 image (~100 MB) in total.

``tile=0`` runs the whole image at once on a dynamic-shape model (reflect-padded to a multiple of the
stride and cropped back); :func:`seam_psnr` compares that with the tiled output.

``model`` is a :class:`kd_edge.runtime.Runtime` (anything with ``predict(nhwc) -> nhwc``,
``input_size`` and ``max_batch``); a plain ``tf_keras.Model`` is wrapped automatically.
"""
import math
from dataclasses import dataclass

import numpy as np

from kd_edge.errors import KdEdgeError

BLENDS = ("hann", "gaussian", "linear", "none")
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
DEFAULT_BLEND = "hann"
DEFAULT_BATCH = 4
GAUSSIAN_SIGMA = 0.15  # of the overlap width, for the Gaussian-CDF cross-fade


# ----------------------------------------------------------------------------------------- tile grid
def tile_starts(length: int, tile: int, overlap: int, align: int = 1):
    """Origins of the tiles along one axis, and the padded length they cover.

    Returns ``(starts, padded)``: ``padded >= length`` is the extent the tiles cover exactly
    (``starts[0] == 0``, ``starts[-1] + tile == padded``); the image is reflect-padded up to it.
    ``padded == tile`` when ``length <= tile``; otherwise ``padded - length < align``. Every start is a
    multiple of ``align`` and neighbours share at least ``overlap`` pixels.
    """
    length, tile, overlap, align = int(length), int(tile), int(overlap), max(1, int(align))
    if length < 1 or tile < 1:
        raise KdEdgeError(f"tile_starts: length {length} and tile {tile} must be positive")
    if not 0 <= overlap < tile:
        raise KdEdgeError(f"overlap {overlap} must be at least 0 and smaller than the tile ({tile})")
    if length <= tile:
        return [0], tile
    step = tile - overlap
    if align > step:  # cannot keep the overlap on the stride grid: give up the alignment, keep the overlap
        align = 1
    padded = length + (-(length - tile)) % align  # smallest >= length with (padded - tile) % align == 0
    span = padded - tile
    units = span // align  # the last start, in units of align
    n = math.ceil(span / step) + 1
    while True:
        starts = sorted({int(round(i * units / (n - 1))) * align for i in range(n)})
        if max(b - a for a, b in zip(starts, starts[1:])) <= step or n > units:
            return starts, padded
        n += 1


def _ramp(n: int, blend: str) -> np.ndarray:
    """Rising weights over the ``n`` pixels two tiles share (sampled at pixel centres, in (0, 1)).

    ``ramp(t) + ramp(1 - t) == 1`` for every blend, so a pair of neighbours cross-fades to exactly 1.
    """
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    if blend == "hann":
        return np.sin(0.5 * np.pi * t) ** 2
    if blend == "linear":
        return t
    if blend == "gaussian":
        erf = np.vectorize(math.erf)
        return 0.5 * (1.0 + erf((t - 0.5) / (GAUSSIAN_SIGMA * math.sqrt(2.0))))
    raise KdEdgeError(f"unknown blend {blend!r}; expected one of {', '.join(BLENDS)}")


def axis_windows(starts, tile: int, padded: int, blend: str = DEFAULT_BLEND):
    """One 1-D weight vector (length ``tile``) per tile; at every position the weights add up to 1."""
    if blend not in BLENDS:
        raise KdEdgeError(f"unknown blend {blend!r}; expected one of {', '.join(BLENDS)}")
    windows = []
    if blend == "none":  # each position belongs to the tile whose centre is nearest (ties: the earlier)
        pos = np.arange(padded, dtype=np.float64) + 0.5
        centres = np.asarray(starts, np.float64) + tile / 2.0
        owner = np.argmin(np.abs(pos[:, None] - centres[None, :]), axis=1)
        for i, s in enumerate(starts):
            windows.append((owner[s : s + tile] == i).astype(np.float64))
    else:
        for i, s in enumerate(starts):
            w = np.ones(tile, np.float64)
            if i > 0:
                n = starts[i - 1] + tile - s
                if n > 0:
                    w[:n] *= _ramp(n, blend)
            if i + 1 < len(starts):
                n = s + tile - starts[i + 1]
                if n > 0:
                    w[tile - n :] *= _ramp(n, blend)[::-1]
            windows.append(w)
    total = np.zeros(padded, np.float64)
    for s, w in zip(starts, windows):
        total[s : s + tile] += w
    if np.any(total <= 0):  # cannot happen for a valid grid; guard against a silent division by zero
        raise KdEdgeError("internal error: a pixel is covered by no tile window")
    return [(w / total[s : s + tile]).astype(np.float32) for s, w in zip(starts, windows)]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go. ``ys``/``xs``: tile origins; ``padded``: (H, W) they cover."""

    height: int
    width: int
    tile: tuple
    overlap: int
    align: int
    blend: str
    ys: tuple
    xs: tuple
    padded: tuple
    wy: tuple
    wx: tuple

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def plan_tiles(height, width, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP, *, blend=DEFAULT_BLEND, align=1) -> TilePlan:
    """The tile grid and blend windows for an image of ``height x width`` (``tile``: int or (h, w))."""
    th, tw = (tile, tile) if np.isscalar(tile) else tuple(tile)
    th, tw = int(th), int(tw)
    if overlap >= min(th, tw):
        raise KdEdgeError(f"overlap {overlap} must be smaller than the tile ({th}x{tw})")
    ys, ph = tile_starts(height, th, overlap, align)
    xs, pw = tile_starts(width, tw, overlap, align)
    return TilePlan(height=int(height), width=int(width), tile=(th, tw), overlap=int(overlap), align=int(align),
                    blend=blend, ys=tuple(ys), xs=tuple(xs), padded=(ph, pw),
                    wy=tuple(axis_windows(ys, th, ph, blend)), wx=tuple(axis_windows(xs, tw, pw, blend)))


# ------------------------------------------------------------------------------------------- models
class _KerasModelRuntime:
    """Minimal runtime view of an in-memory ``tf_keras.Model`` (a Runtime is preferred)."""

    kind = "keras"

    def __init__(self, model):
        self.model = model
        shape = model.input_shape
        self.input_size = (int(shape[1]), int(shape[2])) if shape[1] is not None and shape[2] is not None else None
        self.max_batch = None if shape[0] is None else int(shape[0])
        self.manifest = {}
        try:
            from kd_edge.models import model_stride

            self.stride = int(model_stride(model))
        except Exception:  # noqa: BLE001 - the stride is an optimisation hint; 1 is always valid
            self.stride = None

    def predict(self, x):
        return np.asarray(self.model(np.asarray(x, np.float32), training=False), np.float32)


def as_runtime(model):
    """``model`` itself if it looks like a Runtime, a wrapper for a ``tf_keras.Model``; else TypeError."""
    if hasattr(model, "predict") and hasattr(model, "input_size"):
        return model
    if hasattr(model, "input_shape") and callable(model):
        return _KerasModelRuntime(model)
    raise TypeError(f"expected a kd_edge Runtime or a tf_keras.Model, got {type(model).__name__}")


def model_stride(model) -> int:
    """The factor the model's input size must be a multiple of (from the runtime or its manifest); 1 if unknown."""
    manifest = getattr(model, "manifest", None) or {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    for value in (getattr(model, "stride", None), manifest.get("stride"), source.get("stride")):
        if value:
            return int(value)
    keras_model = getattr(model, "model", None)
    if keras_model is not None and hasattr(keras_model, "input_shape"):
        try:
            from kd_edge.models import model_stride as keras_stride

            return int(keras_stride(keras_model))
        except Exception:  # noqa: BLE001 - the stride only aligns tiles; 1 is always valid
            pass
    return 1


def _model_name(model) -> str:
    path = getattr(model, "path", None)
    return getattr(path, "name", None) or str(path or type(model).__name__)


def resolve_tile(model, tile=None):
    """The tile size (h, w) to use with ``model``: its fixed input size, else ``tile`` (default 256).

    An explicit ``tile`` that disagrees with a fixed-size model is an error; ``tile=0`` means the whole
    image and needs a dynamic-shape model. Returns ``None`` for whole-image mode.
    """
    fixed = getattr(model, "input_size", None)
    if tile is not None and not np.isscalar(tile):
        tile = tuple(int(v) for v in tile)
    if tile == 0:
        if fixed is not None:
            raise KdEdgeError(f"{_model_name(model)} has a fixed input size {fixed[0]}x{fixed[1]}: it cannot run "
                              "the whole image (tile 0); use tiles of that size")
        return None
    if fixed is not None:
        fixed = (int(fixed[0]), int(fixed[1]))
        if tile is not None and (tile, tile) != fixed and tile != fixed:
            raise KdEdgeError(f"{_model_name(model)} has a fixed input size {fixed[0]}x{fixed[1]}; "
                              f"tile {tile} does not match it (leave the tile out to use the model's size)")
        return fixed
    if tile is None:
        tile = DEFAULT_TILE
    th, tw = (tile, tile) if np.isscalar(tile) else tile
    if th < 1 or tw < 1:
        raise KdEdgeError(f"tile must be positive (or 0 for the whole image), got {tile}")
    check_tile_stride(model, int(th), int(tw))
    return int(th), int(tw)


def check_tile_stride(model, height, width):
    """KdEdgeError unless a tile of ``height`` x ``width`` is a multiple of the model's stride (a U-Net's skip
    connections cannot add feature maps of another size). A tile is never rounded silently: the message names
    the nearest valid sizes."""
    stride = model_stride(model)
    if height % stride == 0 and width % stride == 0:
        return
    sizes = sorted({max(stride, v // stride * stride) for v in (height, width)}
                   | {-(-v // stride) * stride for v in (height, width)})
    given = str(height) if height == width else f"{height}x{width}"
    raise KdEdgeError(f"{_model_name(model)}: tile {given} is not a multiple of the model's stride {stride}: "
                      f"use e.g. {' or '.join(str(v) for v in sizes)}")


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise KdEdgeError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise KdEdgeError(f"expected a float image in [0, 1], got {image.dtype} (kd_edge.images.read_image gives one)")
    return image


def _predict(model, x):
    y = model.predict(x)
    y = np.asarray(y, np.float32)
    if y.shape != x.shape:
        raise KdEdgeError(f"{_model_name(model)}: output shape {y.shape} differs from input shape {x.shape}; "
                          "tiling needs an image-to-image model of the same size")
    return y


def _padded_crop(image, y0, x0, th, tw):
    """``image[y0:y0+th, x0:x0+tw]`` as float32, reflect-padded (from the crop itself) where it passes the edge."""
    crop = image[y0 : y0 + th, x0 : x0 + tw]
    h, w = crop.shape[:2]
    if h < th or w < tw:
        crop = np.pad(crop, ((0, th - h), (0, tw - w), (0, 0)), mode="reflect")
    return crop.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- API
def deblur(image, model, *, tile=None, overlap=DEFAULT_OVERLAP, blend=DEFAULT_BLEND, batch=DEFAULT_BATCH,
           stride=None, out=None, clip=True, progress=None):
    """Deblur an HxWx3 float32 image in [0, 1] of any size; returns HxWx3 float32 (``out`` if given).

    ``tile``: None = the model's fixed input size, or 256 for a dynamic-shape model; an int or (h, w);
    0 = the whole image at once (dynamic-shape models only). ``overlap``: minimum pixels shared by
    neighbouring tiles. ``blend``: one of :data:`BLENDS`. ``batch``: tiles per ``predict`` call (capped
    by the runtime's ``max_batch``). ``stride``: tile-origin alignment (None = the model's stride).
    ``out``: a preallocated HxWx3 float32 array to write into; it may be ``image`` itself (in place).
    ``clip``: clip the result to [0, 1]. ``progress``: called with the number of tiles just finished.
    """
    model = as_runtime(model)
    image = _check_image(image)
    sizes = resolve_tile(model, tile)
    stride = model_stride(model) if stride is None else max(1, int(stride))
    if sizes is None:
        result = deblur_whole(image, model, clip=clip)
        if progress:
            progress(1)
        if out is None:
            return result
        out[...] = result
        return out
    if blend not in BLENDS:
        raise KdEdgeError(f"unknown blend {blend!r}; expected one of {', '.join(BLENDS)}")
    h, w = image.shape[:2]
    plan = plan_tiles(h, w, sizes, overlap, blend=blend, align=stride)
    if out is None:
        out = np.empty((h, w, 3), np.float32)
    elif out.shape != (h, w, 3):
        raise KdEdgeError(f"out has shape {out.shape}, expected {(h, w, 3)}")
    max_batch = getattr(model, "max_batch", None)
    batch = max(1, int(batch))
    if max_batch:
        batch = min(batch, int(max_batch))
    run_tiles(image, model, plan, out, batch=batch, clip=clip, progress=progress)
    return out


def run_tiles(image, model, plan: TilePlan, out, *, batch=DEFAULT_BATCH, clip=True, progress=None):
    """Stream the tiles of ``plan`` through ``model``, accumulating one strip of rows at a time into ``out``."""
    th, tw = plan.tile
    h, w = plan.height, plan.width
    pw = plan.padded[1]
    strip = np.zeros((th, pw, 3), np.float32)  # rows [y0, y0 + th) of the running tile row
    ys, xs = plan.ys, plan.xs
    for i, y0 in enumerate(ys):
        wy = plan.wy[i][:, None, None]
        for j0 in range(0, len(xs), batch):
            js = range(j0, min(j0 + batch, len(xs)))
            tiles = np.stack([_padded_crop(image, y0, xs[j], th, tw) for j in js])
            pred = _predict(model, tiles)
            for k, j in enumerate(js):
                weight = wy * plan.wx[j][None, :, None]
                strip[:, xs[j] : xs[j] + tw] += pred[k] * weight
            if progress:
                progress(len(js))
            del tiles, pred
        # Rows [y0, y_next) get no contribution from later tile rows: they are final.
        y_next = ys[i + 1] if i + 1 < len(ys) else y0 + th
        done = min(y_next, h) - y0
        if done > 0:
            rows = strip[:done, :w]
            out[y0 : y0 + done] = np.clip(rows, 0.0, 1.0) if clip else rows
        shift = y_next - y0
        if shift < th:
            strip[: th - shift] = strip[shift:].copy()
        strip[max(0, th - shift) :] = 0.0
    return out


def deblur_whole(image, model, *, stride=None, clip=True):
    """Run the whole image at once (dynamic-shape models): reflect-pad to a multiple of the stride, crop back.

    ``stride``: pad to a multiple of this (None = the model's stride; a value that is not a multiple of
    the model's stride is raised to their least common multiple, since the model needs it).
    """
    model = as_runtime(model)
    image = _check_image(image)
    fixed = getattr(model, "input_size", None)
    h, w = image.shape[:2]
    needed = model_stride(model)
    stride = needed if stride is None else math.lcm(max(1, int(stride)), needed)
    ph, pw = -h % stride, -w % stride
    if fixed is not None and tuple(fixed) != (h + ph, w + pw):
        raise KdEdgeError(f"{_model_name(model)} has a fixed input size {fixed[0]}x{fixed[1]}: it cannot run "
                          f"a {h}x{w} image whole; tile it (kd_edge.tiling.deblur)")
    x = image.astype(np.float32, copy=False)
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    y = _predict(model, x[None])[0, :h, :w]
    return np.clip(y, 0.0, 1.0) if clip else np.ascontiguousarray(y)


def seam_psnr(image, model, *, tile=None, overlap=DEFAULT_OVERLAP, blend=DEFAULT_BLEND, batch=DEFAULT_BATCH,
              stride=None):
    """PSNR (dB) of the tiled output against the whole-image output of a dynamic-shape model.

    Measures only what tiling changes (seams, lost context at tile borders); 100 dB means identical.
    Returns ``(psnr_db, tiled, whole)``.
    """
    from kd_edge.metrics import psnr

    model = as_runtime(model)
    if getattr(model, "input_size", None) is not None:
        raise KdEdgeError(f"the seam check needs a dynamic-shape model (e.g. the .keras model); "
                          f"{_model_name(model)} has a fixed input size {model.input_size[0]}x{model.input_size[1]}")
    if tile == 0:
        raise KdEdgeError("the seam check compares tiles with the whole image: it needs a tile size, not 0")
    tiled = deblur(image, model, tile=tile, overlap=overlap, blend=blend, batch=batch, stride=stride)
    whole = deblur_whole(image, model)
    return psnr(tiled, whole), tiled, whole
