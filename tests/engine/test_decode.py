"""decode_image: every accepted format and mode → H×W×3 uint8, and every refusal → ImageError."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_engine.decode import decode_image, to_rgb
from face_engine.types import ImageError

MISC = Path(__file__).resolve().parents[1] / "data" / "misc"
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}
WHITE = (255, 255, 255)


def decode(data: bytes, **limits: int) -> np.ndarray:
    return decode_image(data, **{**LIMITS, **limits})


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def assert_rgb(array: np.ndarray, width: int, height: int) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)
    assert array.flags.c_contiguous


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def png_declaring(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of zeros: a few tens of KB that inflate to width×height pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    scanlines = bytes((1 + (width + 7) // 8) * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines, 9))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real 320×240 photo (RGB) to re-encode in every format and mode."""
    with Image.open(MISC / "obama_small.jpg") as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def pixels(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo)


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_lossless_formats_round_trip_exactly(photo, pixels, fmt):
    out = decode(encode(photo, fmt))
    assert_rgb(out, *photo.size)
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF"])
def test_lossy_formats_decode_close_to_the_source(photo, pixels, fmt):
    out = decode(encode(photo, fmt))
    assert_rgb(out, *photo.size)
    assert mean_abs_diff(out, pixels) < 6


def test_animated_gif_gives_its_first_frame():
    red, blue = (Image.new("RGB", (40, 30), colour) for colour in [(255, 0, 0), (0, 0, 255)])
    data = encode(red, "GIF", save_all=True, append_images=[blue])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode(data)
    assert_rgb(out, 40, 30)
    assert (out == (255, 0, 0)).all()


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)],
)
def test_exif_orientation_is_applied(photo, orientation, upright):
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = decode(encode(photo, "JPEG", exif=exif, quality=95))
    expected = np.asarray(photo.transpose(upright))
    assert out.shape == expected.shape
    assert mean_abs_diff(out, expected) < 3
    # ...and not merely some rotation: the opposite one is far off.
    if orientation != 3:
        assert mean_abs_diff(out, expected[::-1, ::-1]) > 20


def test_corrupt_exif_does_not_reject_a_good_image(photo):
    """exif_transpose rewrites the EXIF block and used to fail (struct.error) on a bad one."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "Maker"  # Make, an ASCII entry...
    data = encode(photo, "JPEG", exif=exif)
    endian = ">" if b"Exif\x00\x00MM" in data else "<"
    make, width = (struct.pack(f"{endian}HH", tag, 2) for tag in (0x010F, 0x0100))
    assert data.count(make) == 1
    out = decode(data.replace(make, width))  # ...renumbered ImageWidth, which must be a number
    assert out.shape == (320, 240, 3)  # still turned upright by its intact orientation tag


# --- modes -------------------------------------------------------------------------------------


def gray_of(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo.convert("L"))


def as_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_grayscale_l(photo):
    np.testing.assert_array_equal(decode(encode(photo.convert("L"), "PNG")), as_rgb(gray_of(photo)))


def test_bilevel_1(photo):
    out = decode(encode(photo.convert("1"), "PNG"))
    assert_rgb(out, *photo.size)
    assert set(np.unique(out)) == {0, 255}


def test_cmyk_jpeg(photo, pixels):
    out = decode(encode(photo.convert("CMYK"), "JPEG", quality=95))
    assert_rgb(out, *photo.size)
    assert mean_abs_diff(out, pixels) < 6


def test_16_bit_grayscale_png_is_rescaled(photo):
    gray = gray_of(photo)
    image = Image.fromarray(gray.astype(np.uint16) * 257)
    assert image.mode == "I;16"
    np.testing.assert_array_equal(decode(encode(image, "PNG")), as_rgb(gray))


@pytest.mark.parametrize("scale", [257, 1], ids=["16-bit-range", "8-bit-range"])
def test_32_bit_int_mode_i_is_rescaled(photo, scale):
    """No accepted format stores mode I any more (Pillow writes 16-bit PNGs as I;16): use to_rgb."""
    gray = gray_of(photo)
    image = Image.fromarray(gray.astype(np.int32) * scale)
    assert image.mode == "I"
    np.testing.assert_array_equal(to_rgb(image), as_rgb(gray))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(fmt):
    image = Image.new("P", (8, 6), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.putpixel((2, 3), 1)
    out = decode(encode(image, fmt, transparency=0))
    assert_rgb(out, 8, 6)
    assert tuple(out[3, 2]) == (0, 200, 0)
    assert (out[0, 0] == WHITE).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_white(mode):
    opaque, transparent, half_black = (10, 255), (10, 0), (0, 128)  # (gray level, alpha)
    image = Image.new("LA", (3, 1))
    image.putdata([opaque, transparent, half_black])
    out = decode(encode(image.convert(mode), "PNG"))
    assert_rgb(out, 3, 1)
    assert (out[0, 0] == 10).all()
    assert (out[0, 1] == WHITE).all()
    assert np.abs(out[0, 2].astype(int) - 127).max() <= 1


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_colour_key_transparency_becomes_white(mode):
    """A tRNS colour key on an L/RGB PNG is transparency too (it used to come out black)."""
    image = Image.new(mode, (2, 1))
    image.putpixel((1, 0), 90 if mode == "L" else (90, 90, 90))
    key = 0 if mode == "L" else (0, 0, 0)
    out = decode(encode(image, "PNG", transparency=key))
    assert (out[0, 0] == WHITE).all()
    assert (out[0, 1] == 90).all()


def test_real_32_bit_png():
    data = (MISC / "32bit.png").read_bytes()
    rgba = np.asarray(Image.open(io.BytesIO(data)))
    assert rgba.shape[2] == 4
    out = decode(data)
    assert_rgb(out, 626, 1200)
    np.testing.assert_array_equal(out, rgba[:, :, :3])  # it is fully opaque


# --- refusals ----------------------------------------------------------------------------------


def assert_refused(data: bytes, code: str, status: int, **limits: int) -> None:
    """Refused with exactly this code and status; pytest.raises lets no other exception through."""
    with pytest.raises(ImageError) as caught:
        decode(data, **limits)
    error = caught.value
    assert (error.code, error.status) == (code, status), error.message
    assert error.message


def test_empty_bytes():
    assert_refused(b"", "empty_file", 400)


def test_over_max_bytes():
    data = (MISC / "obama_small.jpg").read_bytes()
    assert_refused(data, "file_too_large", 413, max_bytes=len(data) - 1)
    assert decode(data, max_bytes=len(data)).shape == (240, 320, 3)


def test_over_max_pixels(photo):
    data = encode(photo, "PNG")
    assert_refused(data, "image_too_large", 413, max_pixels=320 * 240 - 1)
    assert decode(data, max_pixels=320 * 240).shape == (240, 320, 3)


@pytest.mark.parametrize(("side", "max_pixels"), [(20000, LIMITS["max_pixels"]), (8000, 60_000_000)])
def test_decompression_bomb(side, max_pixels):
    """A tiny file declaring a huge image is refused before its pixels are inflated — whether
    our limit or Pillow's own bomb guard (2 × 89 M pixels) is the one that trips."""
    data = png_declaring(side, side)
    assert len(data) < 100_000
    assert_refused(data, "image_too_large", 413, max_pixels=max_pixels)


@pytest.mark.parametrize("name", ["obama.jpg", "lin-manuel-miranda.png"])
def test_truncated_file(name):
    data = (MISC / name).read_bytes()
    assert_refused(data[: len(data) // 2], "corrupt_image", 400)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "WEBP"])
def test_truncated_generated_file(photo, fmt):
    data = encode(photo, fmt)
    assert_refused(data[: len(data) // 2], "corrupt_image", 400)


@pytest.mark.parametrize(
    "data",
    [b"hello", b"<html><body>not a photo</body></html>", random.Random(7).randbytes(4096)],
    ids=["text", "html", "random"],
)
def test_not_an_image(data):
    assert_refused(data, "not_an_image", 400)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO"])
def test_unsupported_format(photo, fmt):
    assert_refused(encode(photo, fmt), "unsupported_format", 415)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP"])
def test_damaged_headers_decode_or_raise_image_error_only(photo, fmt):
    """Bytes flipped in the first few hundred bytes: any outcome but a non-ImageError exception."""
    rng = random.Random(fmt)
    original = encode(photo.resize((64, 48)), fmt)
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(min(len(data), 300))] = rng.randrange(256)
        try:
            out = decode(bytes(data), max_pixels=1_000_000)
        except ImageError as error:
            assert error.code in {"not_an_image", "corrupt_image", "unsupported_format", "image_too_large"}
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_a_batch_is_cut_where_its_declared_pixels_pass_the_limit():
    """A batch's images are decoded and held together: the pipeline cuts it into runs whose declared
    pixels stay within MAX_IMAGE_PIXELS, so a batch costs what its largest image costs."""
    import io

    from PIL import Image

    from face_engine.decode import declared_pixels
    from face_engine.pipeline import _chunks_by_pixels

    def png(width: int, height: int) -> bytes:
        out = io.BytesIO()
        Image.new("L", (width, height)).save(out, format="PNG")
        return out.getvalue()

    small, large = png(100, 100), png(1000, 600)
    assert declared_pixels(small) == 10_000 and declared_pixels(large) == 600_000
    assert declared_pixels(b"not an image") == 0
    blobs = [small, small, large, small, large, b"junk"]
    chunks = _chunks_by_pixels(blobs, 620_000)
    assert chunks == [[small, small, large], [small, large, b"junk"]]
    assert [b for chunk in chunks for b in chunk] == blobs, "every image, in order"
    assert _chunks_by_pixels([large, large], 100) == [[large], [large]], "an image over the budget goes alone"
