"""Do-no-harm validation while training: how much a model changes photos that are already sharp.

A deblurring model that only sees blurred crops at validation can win its best step by sharpening harder; on
real photos that are already sharp it then adds halos (issue 13: teacher v8 gained 1.1 dB on held-out blurred
crops while its PSNR on sharp photos fell to 31.5 dB, 1.86x the input's gradient variance). ``--val-sharp DIR``
gives the trainer a folder of sharp photos (training-side photos such as the synthesis sources; never the
measuring sets); at every validation it runs the model on their centre crops at native resolution and scores
PSNR(model(sharp), sharp). The best step is then chosen by

    score = held-out PSNR - max(0, floor - do-no-harm PSNR)

so a step that keeps the sharp crops above ``floor`` (35 dB, the issue's target) is ranked by its held-out PSNR
alone, and one below pays a dB for every dB it is short.

What it sees is a model that damages crisp photos. The teachers of issue 13 sharpened *soft* sharp photos instead
(v11 kept crisp training photos at 44 dB while Levin's soft im4 stayed at 31.5 dB); that was fixed in the data
(``kd-edge data synth --soft-sharp``), not by selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kd_edge import metrics
from kd_edge.distill.datasets import center_crop
from kd_edge.errors import InputFileError
from kd_edge.images import image_files, read_image

DEFAULT_FLOOR_DB = 35.0


def sharp_photo_files(folder) -> list[Path]:
    """Image files under ``folder`` (recursive), in path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "--val-sharp must be a folder of sharp photos")
    files = image_files(folder)
    if not files:
        raise InputFileError(folder, "no image files (.png, .jpg, ...) under this --val-sharp folder")
    return files


def load_sharp_crops(folder, *, count=12, crop=160, stride=16) -> list[tuple[str, np.ndarray]]:
    """``count`` (name, crop) pairs: centre crops (sides multiples of ``stride``) of photos spread evenly over the
    folder's sorted file list, at native resolution (no resize, so no resampling softens or sharpens them)."""
    files = sharp_photo_files(folder)
    count = min(int(count), len(files))
    picks = sorted({int(i) for i in np.linspace(0, len(files) - 1, count).round()})
    out = []
    for i in picks:
        cut = center_crop(read_image(files[i]).rgb, crop, stride)
        if cut is not None:
            out.append((str(files[i].relative_to(folder)), np.ascontiguousarray(cut)))
    return out


def harm_psnr(model, crops) -> dict | None:
    """Mean and min PSNR(model(sharp), sharp) over the crops (output clipped to [0, 1]); None without crops."""
    if not crops:
        return None
    values = []
    for _, sharp in crops:
        pred = np.clip(np.asarray(model(sharp[None], training=False))[0], 0.0, 1.0)
        values.append(metrics.psnr(pred, sharp))
    return {"mean": float(np.mean(values)), "min": float(np.min(values))}


def selection_score(psnr: float, harm_mean: float | None, floor: float = DEFAULT_FLOOR_DB) -> float:
    """The held-out PSNR, less how far the do-no-harm PSNR falls below ``floor`` (no harm set: the PSNR)."""
    if harm_mean is None:
        return float(psnr)
    return float(psnr) - max(0.0, float(floor) - float(harm_mean))
