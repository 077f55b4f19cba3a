"""Artifact manifests: ``<artifact>.json`` beside every converted model, enough to embed it in an app.

Also the hashing used to verify artifacts (``kd_edge.runtime`` checks it before loading): a file hashes
its bytes; a directory (Core ML ``.mlpackage``) hashes every file's relative path and bytes in sorted order.
No TensorFlow import here.
"""
import gzip
import hashlib
import io
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import kd_edge

MANIFEST_FORMAT = "kd-edge-artifact/1"
LAYOUT = "NHWC"
VALUE_RANGE = [0.0, 1.0]
NORMALISATION = "RGB float32 in [0, 1] (pixel / 255); no mean/std; output is the deblurred RGB image in [0, 1], clip it"
TOOL_PACKAGES = ("tensorflow", "tf-keras", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime",
                 "onnxconverter-common", "coremltools", "numpy")


def manifest_path(artifact) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def _walk_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def sha256_of(path) -> str:
    """sha256 of a file, or of a directory's files (relative POSIX path + NUL + bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in _walk_files(path):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            with open(file, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def size_of(path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in _walk_files(path))
    return path.stat().st_size


def gzip_size_of(path) -> int:
    """Bytes after gzip -9 (what an app store download costs); a directory is gzipped as one stream."""
    path = Path(path)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        files = _walk_files(path) if path.is_dir() else [path]
        for file in files:
            gz.write(Path(file).read_bytes())
    return len(buf.getvalue())


def tool_versions() -> dict:
    versions = {"kd-edge": kd_edge.__version__, "python": platform.python_version(), "platform": sys.platform}
    for name in TOOL_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def recommended_tiling(input_size, stride: int) -> dict:
    """Tile size and overlap for kd_edge.tiling.deblur: the fixed input size, else 256; overlap 32 px
    rounded up to the model stride (enough context for the small receptive fields of the edge students)."""
    stride = max(1, int(stride or 1))
    overlap = -(-32 // stride) * stride
    tile = int(input_size[0]) if input_size else 256
    return {"tile": tile, "overlap": overlap}


def file_facts(artifact) -> dict:
    return {"sha256": sha256_of(artifact), "file_size": size_of(artifact), "gzip_size": gzip_size_of(artifact)}


def write_manifest_file(path, manifest):
    """Write the manifest JSON (atomically) at ``path``."""
    from kd_edge.atomic import write_json

    write_json(path, manifest)
