"""The shared real blurred/sharp photographs (``../shared/data/realblur`` beside the checkout): where they are, which
sets hold pairs, and what MANIFEST.tsv says about each file.

These pairs were made by others (GoPro, Levin et al. 2009, 300VW faces). They are for measuring only: never train
or tune hyper-parameters on them (their README says so too). Nothing here copies them anywhere.
"""
from __future__ import annotations

import csv
from pathlib import Path

from kd_edge.images import is_image_file

# Sets scored at the best integer shift within +-N px (the README: "the kernels are off-centre by up to about 7 px:
# score with a small shift search (standard for this benchmark)").
SHIFT_SEARCH_PX = {"levin09_gray": 7}


def default_dir() -> Path:
    """``<checkout>/../shared/data/realblur`` (or ``./../shared/data/realblur`` when kd-edge is not run from a
    checkout); the folder may not exist."""
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "setup.cfg").is_file() else Path.cwd()
    return base.parent / "shared" / "data" / "realblur"


def paired_sets(root) -> list[Path]:
    """The set folders directly under ``root`` that hold ``blur/`` and ``sharp/`` (DBlur layout), sorted by name."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "blur").is_dir() and (p / "sharp").is_dir())


def unpaired_photos(root) -> list[Path]:
    """Blurred photos without ground truth: image files directly inside set folders that have no ``sharp/``."""
    root = Path(root)
    photos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not (p / "sharp").is_dir()):
        photos += sorted(f for f in folder.iterdir() if f.is_file() and is_image_file(f) and not f.name.startswith("."))
    return photos


def read_manifest(root) -> dict:
    """{(set, file): row} from ``root/MANIFEST.tsv`` (empty when there is none). Rows keep the TSV's columns."""
    path = Path(root) / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {(row["set"], row["file"]): row for row in csv.DictReader(fh, delimiter="\t")}
