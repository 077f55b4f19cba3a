"""Atomic artifact writes: write to a temporary file beside the target, then rename over it."""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, *, keep_suffix=True):
    """Yield a temporary path in the target's folder; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the target's suffix so that format-sniffing writers (PIL, OpenCV,
    Keras) pick the right format. On any exception the temporary file is removed and ``path``
    is left untouched. Works for files and for directories (e.g. a Core ML .mlpackage).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if keep_suffix else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create it themselves (some refuse existing files or need a directory)
    tmp = Path(tmp)
    try:
        yield tmp
        if path.is_dir() and not tmp.is_dir():
            raise IsADirectoryError(f"{path}: is a directory, refusing to replace it with a file")
        if tmp.is_dir() and path.exists():
            backup = path.with_name(f".{path.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, *, indent=2):
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
