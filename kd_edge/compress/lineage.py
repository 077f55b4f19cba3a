"""Lineage records of compressed models: parent hash, method, settings, steps (stored in the manifest)."""
import datetime
from pathlib import Path

from kd_edge.converters.manifest import sha256_of as sha256_file  # files and SavedModel folders


def compression_step(parent_path, parent_manifest, *, method, settings, steps=0, **more):
    """One lineage entry describing how a compressed model was made from ``parent_path``."""
    manifest = parent_manifest or {}
    record = {
        "method": method,
        "parent": {
            "path": str(Path(parent_path)),
            "sha256": manifest.get("sha256") or sha256_file(parent_path),
            "arch": manifest.get("arch"),
            "params": manifest.get("params"),
            "macs_256": manifest.get("macs_256"),
        },
        "settings": dict(settings),
        "steps": int(steps),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    record.update(more)
    return record


def extend(parent_manifest, record):
    """The parent's lineage list followed by ``record`` (a new list)."""
    previous = list((parent_manifest or {}).get("lineage") or [])
    return previous + [record]
