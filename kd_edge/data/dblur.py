"""The DBlur layout: ``<split>/blur/<name>`` and ``<split>/sharp/<name>`` with the same file names.

A dataset root holds split folders (``train/``, ``test/``, ``validation/``; any sub-folder with
``blur/`` and ``sharp/`` counts). ``find_pairs`` lists the pairs of one split; ``check`` decodes every
file and reports counts, sizes and each problem by file (errors make a pair unusable, warnings are
normalised by the pipeline: grayscale, alpha, 16-bit).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kd_edge.errors import InputFileError
from kd_edge.images import IMAGE_SUFFIXES, read_image

HELDOUT_SPLITS = ("test", "validation", "val", "valid")  # held-out data: never train/
SPLIT_ORDER = ("train",) + HELDOUT_SPLITS
ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Pair:
    name: str  # file name in blur/ (e.g. "0001.png")
    blur: Path
    sharp: Path


def is_split_dir(path) -> bool:
    path = Path(path)
    return (path / "blur").is_dir() and (path / "sharp").is_dir()


def split_dirs(root) -> list[Path]:
    """The split folders of ``root``: ``[root]`` if it is itself a split, else its sub-folders with
    ``blur/`` and ``sharp/`` (train, test, validation first, then the others by name)."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "not a directory")
    if is_split_dir(root):
        return [root]
    subs = [p for p in sorted(root.iterdir()) if p.is_dir() and is_split_dir(p)]
    rank = {name: i for i, name in enumerate(SPLIT_ORDER)}
    return sorted(subs, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def _images(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _match(split_dir):
    """(pairs, blur files without sharp, sharp files without blur). Same name first, then same stem."""
    split_dir = Path(split_dir)
    blurs, sharps = _images(split_dir / "blur"), _images(split_dir / "sharp")
    by_name = {p.name: p for p in sharps}
    by_stem = {}
    for p in sharps:
        by_stem.setdefault(p.stem, []).append(p)
    used, pairs, lonely_blur = set(), [], []
    for b in blurs:
        s = by_name.get(b.name)
        if s is None:
            candidates = [c for c in by_stem.get(b.stem, []) if c not in used and c.name not in {x.name for x in blurs}]
            s = candidates[0] if len(candidates) == 1 else None
        if s is None or s in used:
            lonely_blur.append(b)
            continue
        used.add(s)
        pairs.append(Pair(b.name, b, s))
    lonely_sharp = [s for s in sharps if s not in used]
    return pairs, lonely_blur, lonely_sharp


def find_pairs(split_dir) -> list[Pair]:
    """The blurred/sharp pairs of one split folder, sorted by name (files without a counterpart are left out;
    ``check`` reports them)."""
    split_dir = Path(split_dir)
    if not is_split_dir(split_dir):
        raise InputFileError(split_dir, "no blur/ and sharp/ folders (DBlur layout expected)")
    return _match(split_dir)[0]


def resolve_split(data_dir, prefer=("train",), *, any_split=True) -> Path:
    """``data_dir`` if it is a split, else its first split named in ``prefer``, else (with ``any_split``) any
    split. ``any_split=False`` is for held-out data, which must never silently fall back to train/."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        problem = "not a directory" if data_dir.exists() else "not a directory (it does not exist)"
        raise InputFileError(data_dir, problem)
    if is_split_dir(data_dir):
        return data_dir
    for name in prefer:
        if is_split_dir(data_dir / name):
            return data_dir / name
    splits = split_dirs(data_dir) if any_split else []
    if not splits:
        wanted = "split folder (train/, test/)" if any_split else "/ or ".join(prefer) + "/ split"
        raise InputFileError(data_dir, f"no blur/ and sharp/ folders, and no {wanted} holding them")
    return splits[0]


# ------------------------------------------------------------------------------------------------ check
@dataclass
class Problem:
    file: str
    severity: str  # "error" (pair unusable), "warning" (normalised by the pipeline), "note"
    message: str

    def line(self):
        return f"  {self.severity.upper():7s} {self.file}: {self.message}"


@dataclass
class SplitReport:
    path: Path
    blur_files: int = 0
    sharp_files: int = 0
    pairs: int = 0
    usable: int = 0
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    problems: list = field(default_factory=list)
    psnr: list = field(default_factory=list)
    grey_as_rgb: int = 0

    @property
    def unusable(self):
        return self.pairs - self.usable

    @property
    def errors(self):
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self):
        return [p for p in self.problems if p.severity == WARNING]

    def to_dict(self):
        ps = np.array(self.psnr) if self.psnr else None
        return {
            "path": str(self.path), "blur_files": self.blur_files, "sharp_files": self.sharp_files,
            "pairs": self.pairs, "usable": self.usable, "unusable": self.unusable,
            "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
            "modes": dict(self.modes.most_common()),
            "grey_as_rgb_pairs": self.grey_as_rgb,
            "psnr_blur_vs_sharp": None if ps is None else {
                "mean": round(float(ps.mean()), 3), "min": round(float(ps.min()), 3), "max": round(float(ps.max()), 3)},
            "problems": [p.__dict__ for p in self.problems],
        }

    def summary_lines(self):
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(4))
        if len(self.sizes) > 4:
            sizes += f", ... ({len(self.sizes)} sizes)"
        lines = [f"{self.path}: {self.pairs} pairs ({self.blur_files} blur, {self.sharp_files} sharp files), "
                 f"{self.usable} usable"]
        if sizes:
            lines.append(f"  sizes: {sizes}")
        if self.modes:
            lines.append("  modes: " + ", ".join(f"{m} ({n})" for m, n in self.modes.most_common()))
        if self.psnr:
            ps = np.array(self.psnr)
            lines.append(f"  blur vs sharp PSNR: mean {ps.mean():.2f} dB (min {ps.min():.2f}, max {ps.max():.2f})")
        if self.grey_as_rgb:
            lines.append(f"  note: {self.grey_as_rgb} pair(s) hold grey content stored as RGB (identical channels)")
        lines += [p.line() for p in self.problems]
        return lines


@dataclass
class CheckReport:
    path: Path
    splits: list
    ignored: list = field(default_factory=list)  # sub-folders of a root that are not splits

    @property
    def problems(self):
        return [p for s in self.splits for p in s.problems]

    @property
    def pairs(self):
        return sum(s.pairs for s in self.splits)

    @property
    def usable(self):
        return sum(s.usable for s in self.splits)

    @property
    def ok(self):
        return bool(self.splits) and self.usable > 0 and not any(p.severity == ERROR for p in self.problems)

    def to_dict(self):
        return {"path": str(self.path), "ok": self.ok, "pairs": self.pairs, "usable": self.usable,
                "errors": sum(p.severity == ERROR for p in self.problems),
                "warnings": sum(p.severity == WARNING for p in self.problems),
                "splits": [s.to_dict() for s in self.splits], "ignored_folders": [str(p) for p in self.ignored]}

    def format(self):
        lines = []
        for s in self.splits:
            lines += s.summary_lines()
        if self.ignored:
            lines.append("note: ignored folders without blur/ and sharp/: " + ", ".join(p.name for p in self.ignored))
        n_err = sum(p.severity == ERROR for p in self.problems)
        n_warn = sum(p.severity == WARNING for p in self.problems)
        if self.pairs == 0:
            lines.append(f"FAILED: no blur/sharp pairs here ({self._why_no_pairs()})")
            return "\n".join(lines)
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {self.usable} usable pairs of {self.pairs}, {n_err} error(s), {n_warn} warning(s)")
        return "\n".join(lines)

    def _why_no_pairs(self):
        layout = "DBlur layout: DIR/blur + DIR/sharp with the same file names, or DIR/train/blur + DIR/train/sharp ..."
        if self.splits:
            return f"blur/ and sharp/ hold no images; {layout}"
        if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in self.path.iterdir()):
            return (f"{self.path} holds images but no blur/ and sharp/ folders; for sharp photos, "
                    f"`kd-edge data synth {self.path} OUT` makes pairs from them")
        return f"no blur/ and sharp/ folders; {layout}"


def _rel(path, base):
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def _describe(img, rel, problems):
    if img.mode in ("L", "LA"):
        problems.append(Problem(rel, WARNING, f"grayscale ({img.mode}): expanded to 3 channels"))
    if img.alpha is not None:
        problems.append(Problem(rel, WARNING, f"has an alpha channel ({img.mode}): dropped"))
    if img.bit_depth == 16:
        problems.append(Problem(rel, WARNING, "16-bit: scaled to float [0,1]"))


def check_split(split_dir, *, decode=True) -> SplitReport:
    """Check one split folder. ``decode=False`` reads headers only (fast, misses truncated data)."""
    split_dir = Path(split_dir)
    report = SplitReport(split_dir)
    pairs, lonely_blur, lonely_sharp = _match(split_dir)
    report.blur_files = len(pairs) + len(lonely_blur)
    report.sharp_files = len(pairs) + len(lonely_sharp)
    report.pairs = len(pairs) + len(lonely_blur) + len(lonely_sharp)
    for sub in ("blur", "sharp"):
        for p in sorted((split_dir / sub).iterdir()):
            if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."):
                report.problems.append(Problem(_rel(p, split_dir), WARNING, "not an image file: ignored"))
    for b in lonely_blur:
        report.problems.append(Problem(_rel(b, split_dir), ERROR, f"no sharp counterpart (sharp/{b.name} missing)"))
    for s in lonely_sharp:
        report.problems.append(Problem(_rel(s, split_dir), ERROR, f"no blurred counterpart (blur/{s.name} missing)"))
    for pair in pairs:
        loaded, bad = {}, False
        for role, path in (("blur", pair.blur), ("sharp", pair.sharp)):
            rel = _rel(path, split_dir)
            try:
                if decode:
                    img = read_image(path)
                else:
                    from kd_edge.images import image_size

                    img = image_size(path)
            except InputFileError as exc:
                report.problems.append(Problem(rel, ERROR, exc.problem))
                bad = True
                continue
            loaded[role] = img
            if decode:
                _describe(img, rel, report.problems)
                report.modes[f"{img.mode}{'/16-bit' if img.bit_depth == 16 else ''}"] += 1
        if bad:
            continue
        if decode:
            (bw, bh), (sw, sh) = loaded["blur"].size, loaded["sharp"].size
        else:
            (bw, bh), (sw, sh) = loaded["blur"], loaded["sharp"]
        if (bw, bh) != (sw, sh):
            report.problems.append(Problem(_rel(pair.blur, split_dir), ERROR,
                                           f"size {bw}x{bh} differs from sharp/{pair.sharp.name} ({sw}x{sh})"))
            continue
        report.sizes[(bw, bh)] += 1
        report.usable += 1
        if decode:
            b, s = loaded["blur"].rgb, loaded["sharp"].rgb
            mse = float(np.mean((b.astype(np.float64) - s) ** 2))
            report.psnr.append(min(100.0, 10 * np.log10(1.0 / mse)) if mse > 0 else 100.0)
            if mse == 0:
                report.problems.append(Problem(_rel(pair.blur, split_dir), WARNING, "identical to its sharp image"))
            if loaded["blur"].mode == "RGB" and _grey_content(b) and _grey_content(s):
                report.grey_as_rgb += 1
    return report


def _grey_content(rgb):
    return bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]))


def check(path, *, decode=True) -> CheckReport:
    """Check a split folder, or every split of a dataset root."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such directory")
    if not path.is_dir():
        raise InputFileError(path, "not a directory")
    splits = split_dirs(path)
    ignored = [] if is_split_dir(path) else [p for p in sorted(path.iterdir())
                                             if p.is_dir() and p not in splits and not p.name.startswith(".")]
    return CheckReport(path, [check_split(s, decode=decode) for s in splits], ignored)
