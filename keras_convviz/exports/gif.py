"""Animated GIFs: one per picture, a frame per step, the epoch in the top-left corner."""

from __future__ import annotations

from PIL import Image

from keras_convviz.exports.draw import corner_label
from keras_convviz.exports.sections import Picture, epoch_of


def epoch_label(step: int) -> str:
    """`epoch k` for step `k - 1` (`sections.epoch_of`)."""
    return f"epoch {epoch_of(step)}"


def gif_frames(picture: Picture, steps: list[int]) -> list[Image.Image]:
    """The labelled RGB frames of `picture` at `steps`, padded to one size."""
    frames = [corner_label(picture.image(step), epoch_label(step))[0] for step in steps]
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    padded = []
    for frame in frames:
        if frame.size != (width, height):
            canvas = Image.new("RGB", (width, height), (255, 255, 255))
            canvas.paste(frame, (0, 0))
            frame = canvas
        padded.append(frame)
    return padded


def write_gif(picture: Picture, steps: list[int], path, duration: int = 500) -> None:
    """Writes `picture` at `steps` as a looping GIF.

    Each frame gets its own 256-colour palette (median cut, no dithering, so flat areas
    stay flat); the last frame is held three times as long, so a viewer sees the end state.

    Args:
        picture: The image series.
        steps: The steps to show, ascending; each must be one of the picture's.
        path: The file to write.
        duration: Milliseconds per frame.
    """
    frames = [
        frame.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        for frame in gif_frames(picture, steps)
    ]
    durations = [duration] * (len(frames) - 1) + [3 * duration]
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        disposal=1,
        optimize=False,
    )
