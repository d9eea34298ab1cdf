"""Every kind of image input either becomes a sane RGB image or a clear InputError, fast."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError
from core.images import load_image


def _png_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, format=kw.pop("format", "PNG"), **kw)
    return b.getvalue()


def _bomb_png(w=30000, h=30000):
    """A valid PNG header announcing w x h pixels with almost no data (a decompression bomb)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + w // 8) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"", "empty"),
        (b"\x00\x01garbage" * 10, "not an image"),
        (b"%PDF-1.4 this is not a png", "not an image"),
        (_bomb_png(), "too large"),
        (_png_bytes(Image.new("RGB", (4000, 10))), "aspect ratio"),
    ],
)
def test_refused_with_clear_message(data, needle):
    t0 = time.time()
    with pytest.raises(InputError) as e:
        load_image(data)
    assert needle in str(e.value)
    assert time.time() - t0 < 2


def test_truncated_png_refused():
    data = _png_bytes(Image.new("RGB", (64, 64), "red"))
    with pytest.raises(InputError):
        load_image(data[: len(data) // 2])


def _exif_rotated():
    img = Image.new("RGB", (40, 20), "blue")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    return _png_bytes(img, format="JPEG", exif=exif)


@pytest.mark.parametrize(
    "make,size",
    [
        (lambda: _png_bytes(Image.new("CMYK", (30, 20)), format="JPEG"), (30, 20)),
        (lambda: _png_bytes(Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16))), (30, 20)),
        (lambda: _png_bytes(Image.new("P", (30, 20))), (30, 20)),
        (lambda: _png_bytes(Image.new("L", (30, 20), 128)), (30, 20)),
        (lambda: _png_bytes(Image.new("RGBA", (30, 20), (255, 0, 0, 0))), (30, 20)),
        (lambda: _png_bytes(Image.new("LA", (30, 20))), (30, 20)),
        (lambda: _png_bytes(Image.new("1", (30, 20))), (30, 20)),
        (_exif_rotated, (20, 40)),
    ],
)
def test_odd_modes_become_rgb(make, size):
    img = load_image(make())
    assert img.mode == "RGB" and img.size == size


def test_transparent_pixels_become_white():
    img = load_image(_png_bytes(Image.new("RGBA", (8, 8), (255, 0, 0, 0))))
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    b = io.BytesIO()
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:])
    img = load_image(b.getvalue())
    assert img.mode == "RGB" and img.getpixel((0, 0))[0] > 200


def test_large_image_is_downscaled(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), "green").save(p)
    img = load_image(str(p))
    assert max(img.size) == 2048


def test_missing_path():
    with pytest.raises(InputError, match="not found"):
        load_image("/no/such/file.png")
