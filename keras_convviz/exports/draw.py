"""Labels on exported pictures: Pillow's 6x11 bitmap font (the one the panels use), no TF."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GLYPH_WIDTH, GLYPH_HEIGHT = 6, 11
INK = (20, 20, 20)
PAPER = (244, 244, 244)

_FONT: list = []


def _font():
    if not _FONT:
        _FONT.append(ImageFont.load_default_imagefont())
    return _FONT[0]


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """`(width, height)` in pixels of one line of `text` drawn at `scale`."""
    return len(text) * GLYPH_WIDTH * scale, GLYPH_HEIGHT * scale


def draw_text(canvas: Image.Image, xy: tuple[int, int], text: str, fill=INK, scale: int = 1):
    """Draws one line of ASCII text (others become `?`, "×" `x`) with its top-left corner
    at `xy`."""
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text.replace("×", "x"))
    width, height = text_size(clean)
    if not clean:
        return
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text((0, 0), clean, fill=255, font=_font())
    if scale != 1:
        mask = mask.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    canvas.paste(Image.new(canvas.mode, mask.size, fill), xy, mask)


def label_scale(width: int) -> int:
    """Text twice the font's size on pictures wide enough to keep it from covering them."""
    return 2 if width >= 240 else 1


def corner_label(image: np.ndarray, text: str) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The picture as RGB with `text` in a dark box in its top-left corner.

    Args:
        image: `(height, width[, channels])` uint8.
        text: The label.

    Returns:
        The labelled RGB image and the box `(left, top, right, bottom)` the label covers.
    """
    picture = to_rgb(image)
    scale = label_scale(picture.width)
    width, height = text_size(text, scale)
    box = (0, 0, min(width + 4 * scale, picture.width), min(height + 2 * scale, picture.height))
    ImageDraw.Draw(picture).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0))
    draw_text(picture, (2 * scale, scale), text, fill=(255, 255, 255), scale=scale)
    return picture, box


def to_rgb(image: np.ndarray) -> Image.Image:
    """A decoded picture (grey, grey + alpha, RGB or RGBA) as an RGB Pillow image."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (2, 4):  # drop alpha over the paper colour
        alpha = array[..., -1:].astype(np.float32) / 255.0
        colour = array[..., :-1].astype(np.float32)
        paper = np.asarray(PAPER[: colour.shape[-1]] if colour.shape[-1] == 3 else PAPER[:1])
        array = np.round(colour * alpha + paper * (1 - alpha)).astype(np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return Image.fromarray(array).convert("RGB")
