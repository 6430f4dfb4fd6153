"""Contact sheets: one PNG per kind and layer, probe images down and epochs across."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from keras_convviz.exports.draw import (
    GLYPH_HEIGHT,
    draw_text,
    label_scale,
    text_size,
    to_rgb,
)
from keras_convviz.exports.gif import epoch_label
from keras_convviz.exports.sections import Section

MARGIN = 8
GAP = 8
BACKGROUND = (200, 200, 200)  # darker than the panels' white, so each cell stands out


@dataclass(frozen=True)
class SheetLayout:
    """Where everything sits on a sheet of `rows` x `columns` cells of one size."""

    rows: int
    columns: int
    cell_width: int
    cell_height: int
    label_width: int  # of the row labels, 0 when no row has one
    scale: int  # of the text

    @property
    def top(self) -> int:
        """Height of the title and the epoch labels above the first row."""
        return MARGIN + 2 * (GLYPH_HEIGHT * self.scale + GAP)

    @property
    def left(self) -> int:
        return MARGIN + self.label_width

    @property
    def size(self) -> tuple[int, int]:
        """`(width, height)` of the sheet."""
        width = self.left + self.columns * (self.cell_width + GAP) - GAP + MARGIN
        height = self.top + self.rows * (self.cell_height + GAP) - GAP + MARGIN
        return width, height

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """`(x, y)` of the top-left corner of a cell."""
        return (
            self.left + column * (self.cell_width + GAP),
            self.top + row * (self.cell_height + GAP),
        )


def sheet_layout(section: Section, steps: list[int]) -> SheetLayout:
    """The layout of `section`'s sheet over `steps`."""
    sizes = [p.sizes[p.steps.index(s)] for p in section.pictures for s in steps if s in p.steps]
    cell_width = max(w for w, _ in sizes)
    cell_height = max(h for _, h in sizes)
    scale = label_scale(cell_width)
    widest = max(text_size(p.row, scale)[0] for p in section.pictures)
    return SheetLayout(
        rows=len(section.pictures),
        columns=len(steps),
        cell_width=cell_width,
        cell_height=cell_height,
        label_width=widest + 2 * GAP if widest else 0,
        scale=scale,
    )


def contact_sheet(section: Section, steps: list[int]) -> Image.Image:
    """The sheet of `section` at `steps`: a row per picture, a column per step, labelled.

    Each cell holds the picture as logged (pixel for pixel), top-left aligned; a step a
    picture lacks leaves its cell empty.
    """
    layout = sheet_layout(section, steps)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    scale = layout.scale
    title = section.heading if section.kind is None else f"{section.heading} ({section.run})"
    draw_text(sheet, (MARGIN, MARGIN), title, scale=scale)
    label_y = MARGIN + GLYPH_HEIGHT * scale + GAP
    for column, step in enumerate(steps):
        draw_text(sheet, (layout.cell(0, column)[0], label_y), epoch_label(step), scale=scale)
    for row, picture in enumerate(section.pictures):
        y = layout.cell(row, 0)[1]
        draw_text(sheet, (MARGIN, y), picture.row, scale=scale)
        for column, step in enumerate(steps):
            if step in picture.steps:
                sheet.paste(to_rgb(picture.image(step)), layout.cell(row, column))
    return sheet
