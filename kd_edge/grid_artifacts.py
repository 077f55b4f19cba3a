"""Grid artefacts: the part of a model's change to an image that repeats every ``period`` pixels.

A U-Net that down-samples with strided convolutions and up-samples with pixel shuffles (``kd_edge.models.edge``:
stride 8) can paint a grid locked to its stride: a pixel shuffle turns any constant in its input (a bias, a
saturated activation) into a pattern that repeats every stride. The v14 candidate student drew an 8-px lattice over
a saturated green disc of a synthetic probe scene (7.6 grey levels), the v13 default student one of 101 levels over
a noisy, clipped cyan field, while their PSNR on real photos and do no harm looked fine. This module measures it.

How: the image is cut into overlapping tiles (64 px, step 32, on multiples of the period, where the network's own
grid lies). A *phase pattern* of a block is the mean over its ``period x period`` cells (the value at each position
modulo the period), zero-mean per channel. A lattice gives the same pattern everywhere; an edge, a line or a texture
gives one that depends on where it lies. Two tests must both see the same pattern: (1) the four quadrants of the tile
agree, pair by pair, by more than three standard errors of their covariance (estimated from the spread of the
samples around each phase mean), which noise does not pass; (2) the median over the tile's sixteen 16-px sub-blocks
of each one's pattern projected on the mean of the others is positive, which an edge that sits in a few sub-blocks
does not pass (two parallel edges can pass the quadrant test by chance). The amplitude is the square root of the
smaller of the two (RMS of the pattern, image units).

``added_grid(inputs, outputs)`` is the largest increase of that amplitude from input to output over all tiles and
channels, in 8-bit grey levels (x 255): a model that removes JPEG's 8-px blocking lowers the amplitude and is not
flagged. The measure errs towards "no lattice": where a tile is busy with edges it reads low. Real content that is
nearly periodic at the stride (Levin's im2: three parallel bars) scored up to 2.7 levels with no lattice in it;
hence the 4-level line of ``VISIBLE_LEVELS``.
"""
from __future__ import annotations

import numpy as np

DEFAULT_PERIOD = 8
DEFAULT_TILE = 64
LEVELS = 255.0
VISIBLE_LEVELS = 4.0  # a lattice this strong (8-bit levels) is plain to see; content scored up to 2.7 (below)
SUB_CELLS = 2  # sub-blocks of 2 x 2 periods (16 px at period 8): 16 of them in a 64-px tile
SIGNIFICANCE = 3.0  # standard errors of a quadrant covariance that noise is allowed


def period_for(stride: int) -> int:
    """The period of the lattice a model with this stride could paint: the stride, DEFAULT_PERIOD when unknown (1)."""
    return int(stride) if int(stride) > 1 else DEFAULT_PERIOD


def _phase_patterns(blocks: np.ndarray, period: int, cells: int):
    """Phase patterns of the sub-blocks of (t, h, w, c) tiles, each sub-block ``cells x cells`` periods: the mean
    over its period x period cells, zero-mean per channel, shape (t, n, period, period, c); and the variance of each
    pattern value as an estimate (the samples' spread around their phase mean over the samples per phase), (t, n, c)."""
    t, h, w, c = blocks.shape
    side = cells * period
    subs = blocks.reshape(t, h // side, cells, period, w // side, cells, period, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    subs = subs.reshape(t, -1, cells * cells, period, period, c)
    means = subs.mean(axis=2)
    samples = cells * cells
    spread = ((subs - means[:, :, None]) ** 2).sum(axis=(2, 3, 4)) / (period * period * max(1, samples - 1))
    return means - means.mean(axis=(2, 3), keepdims=True), spread / samples


def _quadrant_agreement(blocks, period):
    """Per tile and channel: the smallest covariance between the phase patterns of the tile's four quadrants, less
    SIGNIFICANCE standard errors (so noise scores <= 0). (t, c)"""
    patterns, variances = _phase_patterns(blocks, period, blocks.shape[1] // (2 * period))
    values = []
    for i in range(4):
        for j in range(i + 1, 4):
            cov = (patterns[:, i] * patterns[:, j]).mean(axis=(1, 2))
            values.append(cov - SIGNIFICANCE * np.sqrt(variances[:, i] * variances[:, j]) / period)
    return np.min(values, axis=0)


def _sub_block_agreement(blocks, period):
    """Per tile and channel: the median over the tile's SUB_CELLS x SUB_CELLS-period sub-blocks of each one's
    pattern projected on the mean pattern of all the others (an edge or a line lies in a few sub-blocks, a lattice
    in all). (t, c)"""
    patterns, _ = _phase_patterns(blocks, period, SUB_CELLS)
    n = patterns.shape[1]
    others = (patterns.sum(axis=1, keepdims=True) - patterns) / (n - 1)
    return np.median((patterns * others).mean(axis=(2, 3)), axis=1)


def tile_amplitude(block: np.ndarray, period: int = DEFAULT_PERIOD) -> np.ndarray:
    """Per-channel RMS amplitude (image units) of the pattern that repeats every ``period`` px across a square tile
    (HxWxC, or a stack TxHxWxC).

    Two tests must both see it: the four quadrants' phase patterns agree beyond what the tile's noise explains,
    and so do most of the small sub-blocks (the median). Noise fails the first, an edge or a line that happens to
    sit at one phase fails the second (in the quadrants it can agree by chance); a lattice passes both."""
    blocks = np.asarray(block, np.float64)
    single = blocks.ndim == 3 or blocks.ndim == 2
    if blocks.ndim == 2:
        blocks = blocks[..., None]
    if single:
        blocks = blocks[None]
    h, w = blocks.shape[1:3]
    side = 2 * SUB_CELLS * period
    if h != w or h % side:
        raise ValueError(f"tiles must be square with sides a multiple of {side}, got {h}x{w}")
    agree = np.minimum(_quadrant_agreement(blocks, period), _sub_block_agreement(blocks, period))
    amplitude = np.sqrt(np.maximum(agree, 0.0))
    return amplitude[0] if single else amplitude


def _tiles(height: int, width: int, tile: int, period: int):
    """Top-left corners of overlapping tiles (step tile/2, on multiples of the period) and the tile side used."""
    unit = 2 * SUB_CELLS * period
    side = min(tile, height, width) // unit * unit
    if side < unit:
        return [], 0
    step = max(period, (side // 2) // period * period)
    ys = list(range(0, height - side + 1, step))
    xs = list(range(0, width - side + 1, step))
    return [(y, x) for y in ys for x in xs], side


def grid_map(image: np.ndarray, period: int = DEFAULT_PERIOD, tile: int = DEFAULT_TILE, batch: int = 256):
    """[(y, x, per-channel amplitude)] over the tiles of an HxWxC image in [0, 1]."""
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    corners, side = _tiles(image.shape[0], image.shape[1], tile, period)
    result = []
    for start in range(0, len(corners), batch):
        chunk = corners[start:start + batch]
        blocks = np.stack([image[y:y + side, x:x + side] for y, x in chunk])
        result += [(y, x, a) for (y, x), a in zip(chunk, tile_amplitude(blocks, period))]
    return result


def added_grid(inputs: np.ndarray, outputs: np.ndarray, period: int = DEFAULT_PERIOD,
               tile: int = DEFAULT_TILE) -> dict:
    """The worst increase of the stride-locked pattern from ``inputs`` to ``outputs`` (same HxWxC), in 8-bit levels.

    Returns {"levels", "y", "x", "channel", "tiles", "period"}; levels is 0.0 when no tile gained a lattice (or the
    image is smaller than one tile of 2 x SUB_CELLS periods, 32 px at period 8)."""
    inputs, outputs = np.asarray(inputs, np.float64), np.asarray(outputs, np.float64)
    if inputs.shape != outputs.shape:
        raise ValueError(f"input {inputs.shape} and output {outputs.shape} differ in shape")
    before = grid_map(np.clip(inputs, 0.0, 1.0), period, tile)
    after = grid_map(np.clip(outputs, 0.0, 1.0), period, tile)
    worst = {"levels": 0.0, "y": None, "x": None, "channel": None, "tiles": len(after), "period": int(period)}
    for (y, x, a_in), (_, _, a_out) in zip(before, after):
        gained = (a_out - a_in) * LEVELS
        c = int(np.argmax(gained))
        if gained[c] > worst["levels"]:
            worst.update(levels=float(gained[c]), y=int(y), x=int(x), channel=c)
    return worst


def summarize(levels) -> dict:
    """Worst, median and the count at or above VISIBLE_LEVELS of added_grid() levels (8-bit levels, NaN skipped)."""
    levels = [float(v) for v in levels if not np.isnan(v)]
    if not levels:
        return {"images": 0}
    worst = int(np.argmax(levels))
    return {"images": len(levels), "worst_levels": levels[worst], "worst_index": worst,
            "median_levels": float(np.median(levels)), "visible_threshold_levels": VISIBLE_LEVELS,
            "visible_count": int(sum(v >= VISIBLE_LEVELS for v in levels))}
