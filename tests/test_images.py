"""kd_edge.images: every format, mode and bit depth read and written for real; bad files give InputFileError."""
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from kd_edge.errors import InputFileError, KdEdgeError
from kd_edge.images import IMAGE_SUFFIXES, image_size, read_image, write_image


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.random((24, 40, 3)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".webp"])
def test_lossless_8bit_round_trip(tmp_path, rgb, suffix):
    path = write_image(tmp_path / f"img{suffix}", rgb)
    img = read_image(path)
    assert img.mode == "RGB" and img.bit_depth == 8 and img.alpha is None
    assert img.rgb.dtype == np.float32 and img.rgb.shape == (24, 40, 3)
    assert np.array_equal(img.rgb, np.rint(rgb * 255) / np.float32(255))
    assert img.path == str(path)


def test_jpeg_round_trip_close(tmp_path):
    smooth = np.dstack([*np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 48)), np.full((48, 64), 0.5)])
    img = read_image(write_image(tmp_path / "a.jpg", smooth))
    assert img.mode == "RGB" and img.bit_depth == 8
    assert np.abs(img.rgb - smooth).max() < 0.03


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_keeps_full_precision(tmp_path, rgb, suffix):
    """Pillow silently reduces 16-bit RGB PNG to 8 bits; read_image must not."""
    path = write_image(tmp_path / f"deep{suffix}", rgb, bit_depth=16)
    img = read_image(path)
    assert img.bit_depth == 16 and img.mode == "RGB"
    expected = np.rint(rgb * 65535) / 65535
    assert np.abs(img.rgb - expected).max() < 1e-6
    # more than 8 bits of information survive: not all values are multiples of 1/255
    assert not np.allclose(img.rgb * 255, np.rint(img.rgb * 255), atol=1e-3)


def test_16bit_png_channel_order_is_rgb(tmp_path):
    red = np.zeros((8, 8, 3), np.float32)
    red[:, :, 0] = 1.0
    img = read_image(write_image(tmp_path / "red16.png", red, bit_depth=16))
    assert img.rgb[..., 0].min() == 1.0 and img.rgb[..., 1:].max() == 0.0
    # and the file really is 16-bit RGB on disk (tifffile/OpenCV-independent check via the PNG header)
    header = (tmp_path / "red16.png").read_bytes()[:26]
    assert header[24] == 16 and header[25] == 2


@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16)])
def test_grayscale_expanded_to_three_channels(tmp_path, rgb, suffix, depth):
    path = write_image(tmp_path / f"grey{suffix}", rgb, grayscale=True, bit_depth=depth)
    img = read_image(path)
    assert img.mode == "L" and img.bit_depth == depth and img.rgb.shape == (24, 40, 3)
    assert np.array_equal(img.rgb[..., 0], img.rgb[..., 1]) and np.array_equal(img.rgb[..., 1], img.rgb[..., 2])


def test_pillow_written_grayscale_and_16bit_grey(tmp_path):
    grey = (np.arange(30 * 20).reshape(20, 30) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    img = read_image(tmp_path / "l.png")
    assert img.mode == "L" and img.bit_depth == 8 and np.array_equal(img.rgb[..., 2] * 255, grey.astype(np.float32))
    deep = (np.arange(30 * 20).reshape(20, 30) * 97).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "i16.png")
    img16 = read_image(tmp_path / "i16.png")
    assert img16.mode == "L" and img16.bit_depth == 16
    assert np.allclose(img16.rgb[..., 0] * 65535, deep, atol=0.02)


@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".webp", 8)])
def test_alpha_kept_untouched(tmp_path, rgb, suffix, depth):
    dtype = np.uint16 if depth == 16 else np.uint8
    alpha = (np.arange(24 * 40).reshape(24, 40) * (1000 if depth == 16 else 7) % np.iinfo(dtype).max).astype(dtype)
    path = write_image(tmp_path / f"a{suffix}", rgb, bit_depth=depth, alpha=alpha)
    img = read_image(path)
    assert img.mode == "RGBA" and img.bit_depth == depth
    assert img.alpha.dtype == dtype and np.array_equal(img.alpha, alpha)
    assert img.rgb.shape == (24, 40, 3)


@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16)])
def test_grey_alpha(tmp_path, rgb, suffix, depth):
    dtype = np.uint16 if depth == 16 else np.uint8
    alpha = (np.arange(24 * 40).reshape(24, 40) * 31 % 250).astype(dtype)
    img = read_image(write_image(tmp_path / f"la{suffix}", rgb, grayscale=True, alpha=alpha, bit_depth=depth))
    assert img.mode == "LA" and img.bit_depth == depth and img.rgb.shape == (24, 40, 3)
    assert img.alpha.dtype == dtype and np.array_equal(img.alpha, alpha)
    grey = rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114
    assert np.abs(img.rgb[:, :, 1] - grey).max() < 0.6 / (65535 if depth == 16 else 255) + 1e-6


def test_palette_png_becomes_rgb(tmp_path, rgb):
    Image.fromarray((rgb * 255).astype(np.uint8)).convert("P").save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.mode == "RGB" and img.rgb.shape == (24, 40, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    base = (np.random.default_rng(orientation).random((20, 30, 3)) * 255).astype(np.uint8)
    pil = Image.fromarray(base)
    exif = pil.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    pil.save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    img = read_image(path)
    assert np.array_equal(np.rint(img.rgb * 255).astype(np.uint8), expected)
    assert image_size(path) == img.size
    if orientation in (5, 6, 7, 8):
        assert img.rgb.shape[:2] == (30, 20)


def test_tiff_orientation_tag(tmp_path):
    base = (np.random.default_rng(1).random((10, 16, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "o.tif", base, photometric="rgb", extratags=[(274, 3, 1, 6, True)])
    img = read_image(tmp_path / "o.tif")
    assert np.array_equal(np.rint(img.rgb * 255).astype(np.uint8), np.rot90(base, -1))


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8), (".tif", 16),
                                          (".webp", 8), (".bmp", 8)])
def test_truncated_file_is_an_input_error_naming_the_file(tmp_path, suffix, depth):
    rng = np.random.default_rng(2)
    path = _truncate(write_image(tmp_path / f"cut{suffix}", rng.random((64, 64, 3)), bit_depth=depth))
    with pytest.raises(InputFileError) as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert err.value.path == str(path)


def test_corrupt_empty_missing_and_unsupported(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all" * 20)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    cases = {
        tmp_path / "junk.png": "not a recognised image",
        tmp_path / "empty.jpg": "empty file",
        tmp_path / "missing.png": "no such file",
        tmp_path / "anim.gif": "unsupported image format",
        tmp_path: "not a file",
    }
    for path, problem in cases.items():
        with pytest.raises(InputFileError) as err:
            read_image(path)
        assert problem in str(err.value) and str(path) in str(err.value)


def test_corrupt_png_body(tmp_path, rgb):
    path = write_image(tmp_path / "bad.png", rgb)
    data = bytearray(path.read_bytes())
    data[60:90] = b"\x00" * 30  # damage the compressed image data (CRC and zlib stream)
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="bad.png"):
        read_image(path)


def test_write_refuses_what_the_format_cannot_hold(tmp_path, rgb):
    with pytest.raises(KdEdgeError, match="16-bit"):
        write_image(tmp_path / "x.jpg", rgb, bit_depth=16)
    with pytest.raises(KdEdgeError, match="alpha"):
        write_image(tmp_path / "x.jpg", rgb, alpha=np.zeros((24, 40), np.uint8))
    with pytest.raises(KdEdgeError, match="unsupported"):
        write_image(tmp_path / "x.gif", rgb)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path, rgb):
    target = write_image(tmp_path / "out.png", rgb)
    before = target.read_bytes()
    with pytest.raises(KdEdgeError):
        write_image(tmp_path / "out.png", np.zeros((5, 5, 7)))  # bad shape: the old file survives
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_suffix_list_matches_the_contract():
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _raw_png(path, data, color_type):
    """A PNG written by hand (struct + zlib), independent of Pillow and OpenCV: 16-bit, no filtering."""
    import struct
    import zlib

    h, w = data.shape[:2]
    rows = data.reshape(h, -1).astype(">u2").tobytes()
    stride = data.reshape(h, -1).shape[1] * 2
    raw = b"".join(b"\x00" + rows[r * stride:(r + 1) * stride] for r in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("color_type,channels,mode", [(0, 1, "L"), (2, 3, "RGB"), (4, 2, "LA"), (6, 4, "RGBA")])
def test_hand_written_16bit_png_every_colour_type(tmp_path, color_type, channels, mode):
    rng = np.random.default_rng(color_type)
    data = rng.integers(0, 65536, size=(6, 9, channels), dtype=np.uint16)
    img = read_image(_raw_png(tmp_path / f"ct{color_type}.png", data, color_type))
    assert img.mode == mode and img.bit_depth == 16
    colour = data[:, :, :3] if channels >= 3 else np.repeat(data[:, :, :1], 3, axis=2)
    assert np.array_equal(np.rint(img.rgb * 65535).astype(np.uint16), colour)
    if channels in (2, 4):
        assert img.alpha.dtype == np.uint16 and np.array_equal(img.alpha, data[:, :, -1])
    else:
        assert img.alpha is None
