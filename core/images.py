"""Safe image loading: every input either becomes a sane RGB image or a clear InputError."""

from __future__ import annotations

import io
import os
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_BYTES = 50 * 1024 * 1024
MAX_SIDE = 2048  # larger images are downscaled (models resize anyway)
MAX_ASPECT = 20.0


def load_image(src) -> Image.Image:
    """``src``: a path, bytes, or a PIL image. Returns an RGB image or raises InputError."""
    if src is None:
        raise InputError("no image given")
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (bytes, bytearray)):
            data = bytes(src)
        else:
            path = os.fspath(src)
            if not os.path.isfile(path):
                raise InputError(f"image file not found: {path}")
            if os.path.getsize(path) > MAX_BYTES:
                raise InputError(f"image file too large (> {MAX_BYTES // 2**20} MB)")
            with open(path, "rb") as f:
                data = f.read()
        if not data:
            raise InputError("the image file is empty")
        if len(data) > MAX_BYTES:
            raise InputError(f"image file too large (> {MAX_BYTES // 2**20} MB)")
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise InputError("this file is not an image PIL can read (PNG, JPEG, GIF, WebP, BMP, ...)") from None
        except Image.DecompressionBombError:
            raise InputError(f"image too large (limit {MAX_PIXELS // 1_000_000} megapixels)") from None
        except Exception as e:
            raise InputError(f"cannot read the image: {e}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise InputError("the image has no pixels")
    if w * h > MAX_PIXELS:
        raise InputError(f"image too large: {w}x{h} pixels (limit {MAX_PIXELS // 1_000_000} megapixels)")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InputError(f"extreme aspect ratio {w}x{h} (limit {MAX_ASPECT:g}:1)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if getattr(img, "is_animated", False):
                img.seek(0)  # first frame of an animation
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot decode the image: {e}") from None
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L") if img.mode != "I" else img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        bg.alpha_composite(img.convert("RGBA"))
        return bg.convert("RGB")
    return img.convert("RGB")
