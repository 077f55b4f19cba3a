"""Input and output paths of the CLI, checked before anything heavy is loaded.

The rule (README "Commands"): an input that does not exist and an output folder that cannot be made or
written are one-line errors ``kd-edge: error: <path>: <problem>``, exit 1, like any other bad file.
Exit 2 is kept for a wrong command line (unknown option or target, malformed or out-of-range value).
"""
import errno
import os
import tempfile
from pathlib import Path

import click

from kd_edge.errors import InputFileError


class ExistingPath(click.Path):
    """``click.Path`` for an input that must exist: a missing one is exit 1 with ``<path>: no such file or
    folder`` (click's own check would make it a usage error, exit 2)."""

    def __init__(self, **kwargs):
        kwargs.pop("exists", None)
        super().__init__(exists=False, **kwargs)

    def convert(self, value, param, ctx):
        if not os.path.lexists(os.fspath(value)):
            raise InputFileError(value, "no such file or folder")
        if not self.dir_okay and os.path.isdir(value):
            raise InputFileError(value, "is a folder, expected a file")
        if not self.file_okay and not os.path.isdir(value):
            raise InputFileError(value, "is a file, expected a folder")
        return super().convert(value, param, ctx)


def ensure_output_dir(path, option="--out") -> Path:
    """Create the output folder ``path`` (and its parents) and prove it is writable with a probe file.

    Raises InputFileError naming the folder and the problem in plain words: ``afile/sub: afile is a file,
    not a folder``; ``/proc/nope: cannot create the folder (no such file or directory)``; ``ro: not
    writable (permission denied)``."""
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        what = "is a file, not a folder" if blocker == path else f"{blocker} is a file, not a folder"
        raise InputFileError(path, f"{what} ({option} must be a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(path, f"cannot create the folder ({os_reason(exc)})") from None
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".kd-edge-write-probe."):
            pass
    except OSError as exc:
        raise InputFileError(path, f"folder is not writable ({os_reason(exc)})") from None
    return path


def _file_in_the_way(path: Path):
    """The first existing component of ``path`` (itself included) that is not a folder, or None."""
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists():
            if not candidate.is_dir():
                return candidate
        else:
            return None
    return None


def os_reason(exc: OSError) -> str:
    """An OSError's reason in plain lower-case words: 'no such file or directory'."""
    text = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
    return text[:1].lower() + text[1:]


def ensure_output_parent(path, option="OUT_DIR"):
    """For an output folder that is built beside itself and renamed into place (a dataset): ``path`` must not be a
    file, and its parent is made and probed. Raises InputFileError naming ``path``."""
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker == path:
        raise InputFileError(path, f"is a file, not a folder ({option} must be a folder)")
    if blocker is not None:
        raise InputFileError(path, f"{blocker} is a file, not a folder")
    try:
        ensure_output_dir(path.parent, option=option)
    except InputFileError as exc:
        raise InputFileError(path, f"cannot be made: {exc.path}: {exc.problem}") from None
    return path
