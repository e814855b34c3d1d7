"""Profile pictures with Pillow: JPEG, PNG or WebP by content (the name and ``Content-Type``
are not trusted), at most 2 MB and 25 megapixels (decompression bombs are refused before
decoding the pixels), EXIF and every other metadata dropped, cropped to a square and
re-encoded as JPEG at 125×125 (003's size) and 400×400."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from issuer.errors import InvalidInput

MAX_BYTES = 2 * 1024 * 1024
MAX_PIXELS = 25_000_000
FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
SIZES = {"small": 125, "large": 400}
NOT_A_PICTURE = "The picture must be a JPEG, PNG or WebP image."


@dataclass(frozen=True, slots=True)
class Pictures:
    small: bytes
    large: bytes
    etag: str


def process(data: bytes) -> Pictures:
    """Both sizes of an uploaded picture; :class:`InvalidInput` (422) for anything else.
    CPU-bound: run it in a thread."""
    if len(data) > MAX_BYTES:
        raise InvalidInput("The picture must be at most 2 MB.", code="picture_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=sorted(FORMATS))
            if opened.width * opened.height > MAX_PIXELS:
                raise InvalidInput(
                    "The picture has too many pixels (at most 25 megapixels).",
                    code="picture_too_large",
                )
            opened.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(
            "The picture has too many pixels (at most 25 megapixels).", code="picture_too_large"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(NOT_A_PICTURE, code="not_a_picture") from exc
    image: Image.Image = ImageOps.exif_transpose(opened)  # as the camera meant it; no EXIF
    if image.mode not in ("RGB", "L"):
        background = Image.new("RGB", image.size, "white")
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        image = background
    encoded = {}
    for name, side in SIZES.items():
        square = ImageOps.fit(image.convert("RGB"), (side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        square.save(out, "JPEG", quality=88, optimize=True)  # no exif= : nothing carried over
        encoded[name] = out.getvalue()
    etag = hashlib.sha256(encoded["large"] + encoded["small"]).hexdigest()[:32]
    return Pictures(encoded["small"], encoded["large"], etag)
