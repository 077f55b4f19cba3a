"""Reading and writing images of any common format, mode and bit depth.

``read_image`` returns float32 RGB in [0, 1] whatever the file holds (grayscale is expanded to three
channels, 16-bit is scaled by 65535, EXIF orientation is applied) and keeps an alpha channel apart,
untouched. Pillow silently reduces 16-bit RGB PNG to 8 bits, so 16-bit PNG is decoded with OpenCV
and TIFF with tifffile. Any file that cannot be decoded (truncated, corrupt, unsupported) raises
``InputFileError`` naming the file and the problem.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd_edge.atomic import atomic_path
from kd_edge.errors import InputFileError, KdEdgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadedImage:
    rgb: np.ndarray  # float32 HxWx3 in [0,1]; grayscale expanded to 3 channels
    alpha: np.ndarray | None  # HxW alpha in its original dtype (uint8/uint16), untouched
    bit_depth: int  # 8 or 16
    mode: str  # source layout: "L", "LA", "RGB" or "RGBA"
    path: str | None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), like PIL."""
        return self.width, self.height


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder) -> list[Path]:
    """Every image file under ``folder`` (recursive, by suffix), in path order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))


# ----------------------------------------------------------------------------------------------- reading
def read_image(path) -> LoadedImage:
    """Decode ``path`` into a :class:`LoadedImage`. Raises InputFileError if it cannot be used."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if not path.is_file():
        raise InputFileError(path, "not a file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputFileError(path, f"unsupported image format '{suffix or '(no suffix)'}' "
                                   f"(supported: {', '.join(IMAGE_SUFFIXES)})")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise InputFileError(path, "empty file")
    if suffix in (".tif", ".tiff") and head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        channels, alpha, depth, mode, orientation = _decode_tiff(path)
    else:
        channels, alpha, depth, mode, orientation = _decode_pillow(path, head)
    channels = _orient(channels, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    scale = 65535.0 if depth == 16 else 255.0
    rgb = channels.astype(np.float32) / np.float32(scale)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return LoadedImage(np.ascontiguousarray(rgb), alpha, depth, mode, str(path))


def image_size(path) -> tuple[int, int]:
    """(width, height) from the header only (fast; orientation applied). InputFileError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_image(path).size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputFileError(path, f"not a readable image ({_short(exc)})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _short(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _decode_pillow(path, head):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
            orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            png16 = head.startswith(_PNG_SIGNATURE) and len(head) > 25 and head[24] == 16
            if png16:
                color_type = head[25]
            else:
                channels, alpha, depth, mode = _pillow_array(img, path)
    except UnidentifiedImageError:
        raise InputFileError(path, "not a recognised image (corrupt file or wrong suffix)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        msg = _short(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise InputFileError(path, f"truncated image ({msg})") from None
        raise InputFileError(path, f"corrupt image ({msg})") from None
    except Image.DecompressionBombError as exc:
        raise InputFileError(path, f"image too large ({_short(exc)})") from None
    if png16:
        channels, alpha, mode = _decode_png16(path, color_type)
        depth = 16
    return channels, alpha, depth, mode, orientation


def _pillow_array(img, path):
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    elif mode == "1":
        img, mode = img.convert("L"), "L"
    elif mode in ("CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
        img, mode = img.convert("RGB"), "RGB"
    elif mode == "La":
        img, mode = img.convert("LA"), "LA"
    elif mode == "RGBa":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.array(img).astype(np.uint16)
        return arr, None, 16, "L"
    if mode == "I":
        arr = np.array(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise InputFileError(path, "unsupported 32-bit integer image")
        return arr.astype(np.uint16), None, 16, "L"
    if mode == "F":
        raise InputFileError(path, "unsupported floating-point image")
    arr = np.array(img)
    if arr.dtype != np.uint8:
        raise InputFileError(path, f"unsupported pixel type {arr.dtype} (mode {mode})")
    if mode == "L":
        return arr, None, 8, "L"
    if mode == "LA":
        return arr[:, :, 0], arr[:, :, 1].copy(), 8, "LA"
    if mode == "RGB":
        return arr, None, 8, "RGB"
    if mode == "RGBA":
        return arr[:, :, :3], arr[:, :, 3].copy(), 8, "RGBA"
    raise InputFileError(path, f"unsupported image mode {mode}")


def _decode_png16(path, color_type):
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputFileError(path, "corrupt 16-bit PNG (OpenCV could not decode it)")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257
    if arr.ndim == 2:
        return arr, None, "L"
    if color_type == 4:  # grey + alpha: OpenCV returns it as BGRA (or 2 channels)
        return arr[:, :, 0].copy(), arr[:, :, -1].copy(), "LA"
    if arr.shape[2] == 4:
        return arr[:, :, 2::-1].copy(), arr[:, :, 3].copy(), "RGBA"
    return arr[:, :, ::-1].copy(), None, "RGB"


def _decode_tiff(path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tag = page.tags.get(274)  # Orientation
            orientation = int(tag.value) if tag is not None else 1
            arr = page.asarray()
            photometric = int(page.photometric)
            planar = int(page.planarconfig)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds; all mean "cannot decode"
        msg = _short(exc)
        kind = "truncated" if any(w in msg.lower() for w in ("truncat", "eof", "too short", "read ")) else "corrupt"
        raise InputFileError(path, f"{kind} TIFF ({msg})") from None
    if arr.ndim == 3 and planar == 2 and arr.shape[0] in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        depth = 8
    elif arr.dtype == np.uint16:
        depth = 16
    else:
        raise InputFileError(path, f"unsupported TIFF pixel type {arr.dtype} (only 8- and 16-bit integer)")
    if arr.ndim == 2:
        if photometric == 0:  # MINISWHITE
            arr = np.iinfo(arr.dtype).max - arr
        return arr, None, depth, "L", orientation
    if arr.ndim != 3:
        raise InputFileError(path, f"unsupported TIFF layout {arr.shape}")
    n = arr.shape[2]
    if n == 2:
        return arr[:, :, 0].copy(), arr[:, :, 1].copy(), depth, "LA", orientation
    if n == 3:
        return arr, None, depth, "RGB", orientation
    if n >= 4 and photometric == 5:  # CMYK (SEPARATED)
        raise InputFileError(path, "unsupported CMYK TIFF")
    if n >= 4:
        return arr[:, :, :3].copy(), arr[:, :, 3].copy(), depth, "RGBA", orientation
    raise InputFileError(path, f"unsupported TIFF layout {arr.shape}")


def _orient(arr, orientation):
    """Apply an EXIF orientation (1-8) to an HxW[xC] array, as PIL.ImageOps.exif_transpose does."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = np.swapaxes(arr, 0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = np.swapaxes(arr[::-1, ::-1], 0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------------------------- writing
def to_uint(rgb, bit_depth=8) -> np.ndarray:
    """Float [0,1] -> uint8/uint16 with rounding and clipping."""
    maxval = 65535 if bit_depth == 16 else 255
    arr = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0) * np.float32(maxval)
    return np.rint(arr).astype(np.uint16 if bit_depth == 16 else np.uint8)


def write_image(path, rgb, *, bit_depth=8, alpha=None, grayscale=False, png_compress_level=1):
    """Write float [0,1] ``rgb`` (HxWx3, or HxW / HxWx1 grey) atomically; the format comes from the suffix.

    ``bit_depth`` 16 is available for PNG and TIFF. ``alpha`` (HxW; uint8, uint16 or float in [0,1]) is
    stored as a fourth (or second, when ``grayscale``) channel; JPEG cannot hold it. ``grayscale`` writes
    one channel (Rec. 601 luma of the three). PNG uses zlib level ``png_compress_level`` (1: fast, about
    15% larger than 6, four times quicker to write).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise KdEdgeError(f"{path}: unsupported image format '{suffix}' (supported: {', '.join(IMAGE_SUFFIXES)})")
    if bit_depth not in (8, 16):
        raise KdEdgeError(f"{path}: bit depth must be 8 or 16, not {bit_depth}")
    if bit_depth == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise KdEdgeError(f"{path}: 16-bit images can be written as PNG or TIFF only")
    if alpha is not None and suffix in (".jpg", ".jpeg"):
        raise KdEdgeError(f"{path}: JPEG cannot store an alpha channel")
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        grayscale = True
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise KdEdgeError(f"{path}: expected an HxWx3 or HxW image, got shape {arr.shape}")
    elif grayscale:
        arr = arr[:, :, 0] * 0.299 + arr[:, :, 1] * 0.587 + arr[:, :, 2] * 0.114
    data = to_uint(arr, bit_depth)
    if alpha is not None:
        a = _alpha_as(np.asarray(alpha), bit_depth)
        if a.shape != data.shape[:2]:
            raise KdEdgeError(f"{path}: alpha shape {a.shape} does not match the image {data.shape[:2]}")
        data = np.dstack([data, a]) if data.ndim == 3 else np.dstack([data, a])
    with atomic_path(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            kwargs = {"photometric": "minisblack" if grayscale else "rgb"}
            if alpha is not None:
                kwargs["extrasamples"] = ["unassalpha"]
            tifffile.imwrite(tmp, data, **kwargs)
        elif bit_depth == 16 and data.ndim == 3 and data.shape[2] == 2:
            # grey + alpha: OpenCV has no 16-bit LA writer, so the PNG is encoded here
            Path(tmp).write_bytes(_png16_bytes(data, color_type=4, level=int(png_compress_level)))
        elif bit_depth == 16:
            import cv2

            if data.ndim == 3:
                bgr = data[:, :, [2, 1, 0, 3]] if data.shape[2] == 4 else data[:, :, ::-1]
            else:
                bgr = data
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr),
                                   [cv2.IMWRITE_PNG_COMPRESSION, int(png_compress_level)])
            if not ok:
                raise KdEdgeError(f"{path}: OpenCV could not encode the 16-bit PNG")
            Path(tmp).write_bytes(buf.tobytes())
        else:
            from PIL import Image

            if data.ndim == 2:
                img = Image.fromarray(data, "L")
            elif data.shape[2] == 2:
                img = Image.fromarray(data, "LA")
            elif data.shape[2] == 4:
                img = Image.fromarray(data, "RGBA")
            else:
                img = Image.fromarray(data, "RGB")
            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}[suffix]
            options = {"compress_level": int(png_compress_level)} if fmt == "PNG" else {}
            if fmt == "JPEG":
                options = {"quality": 95, "subsampling": 0}
            elif fmt == "WEBP":
                options = {"lossless": True}
            elif fmt == "BMP" and img.mode == "LA":
                warnings.warn(f"{path}: BMP cannot store grey+alpha; writing RGBA", stacklevel=2)
                img = img.convert("RGBA")
            img.save(tmp, format=fmt, **options)
    return path


def _png16_bytes(data, *, color_type, level=1):
    """Encode a 16-bit PNG directly (no row filters) for layouts OpenCV cannot write (grey + alpha)."""
    import struct
    import zlib

    h, w = data.shape[:2]
    rows = np.ascontiguousarray(data.reshape(h, -1).astype(">u2")).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (_PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, max(1, level)))
            + chunk(b"IEND", b""))


def _alpha_as(alpha, bit_depth):
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if np.issubdtype(alpha.dtype, np.floating):
        return to_uint(alpha, bit_depth)
    if bit_depth == 16:
        return alpha.astype(np.uint16) * 257 if alpha.dtype == np.uint8 else alpha.astype(np.uint16)
    if alpha.dtype == np.uint16:
        return np.rint(alpha / 257.0).astype(np.uint8)
    return alpha.astype(np.uint8)
