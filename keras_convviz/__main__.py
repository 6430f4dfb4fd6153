"""Command line `convviz` (or `python -m keras_convviz`).

- `convviz demo`: train the demo CNN with `ConvViz` logging to TensorBoard;
- `convviz tensorboard LOGDIR`: start TensorBoard serving every snapshot of the logs;
- `convviz export LOGDIR --out DIR [--compare RUN]`: GIFs, contact sheets and an offline
  HTML report, with another run's pictures under each one's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convviz",
        description="Keras callbacks that show inside a CNN while it trains, in TensorBoard.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo_parser = commands.add_parser(
        "demo",
        help="train a small CNN on synthetic shapes, logging ConvViz images to TensorBoard",
        description=(
            "Train a small CNN on synthetic shapes (circle, square, triangle, cross) with "
            "ConvViz writing feature maps, filters, occlusion and Grad-CAM images, then "
            "print the tensorboard command that shows them."
        ),
    )
    demo_parser.add_argument(
        "--log-dir", default="logs/demo", help="TensorBoard log directory (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: 6)"
    )
    demo_parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and training (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--shortcut",
        action="store_true",
        help=(
            "give every image a small square of its class's colour in a corner, a cue easier "
            "to learn than the shape: see the maps leave the shapes and the alert "
            "evidence_off_region fire"
        ),
    )
    board = commands.add_parser(
        "tensorboard",
        help="start TensorBoard serving every snapshot of the logs",
        description=(
            "Start TensorBoard on LOGDIR with --samples_per_plugin images=N, N at least the "
            "number of snapshots in the logs (TensorBoard keeps 10 per tag otherwise), and "
            "--load_fast=false when a run holds several event files; print its address."
        ),
    )
    board.add_argument("logdir", metavar="LOGDIR", help="the log directory")
    board.add_argument("--port", type=int, default=None, help="port (default: 6006 or next free)")
    board.add_argument("--host", default=None, help="host to bind (default: localhost)")
    export = commands.add_parser(
        "export",
        help="write GIFs, contact sheets and an offline HTML report from the logs",
        description=(
            "Read the event files under LOGDIR and write into DIR: an animated GIF per image "
            "tag (gif/<tag>.gif), a contact sheet per kind and layer (sheet/<run>/<layer>.png, "
            "probe images down, epochs across) and report.html, one self-contained page "
            "with an epoch slider per kind and layer and the scalars as small plots."
        ),
    )
    export.add_argument("logdir", metavar="LOGDIR", help="the log directory")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    export.add_argument(
        "--tags", default=None, metavar="REGEX", help="export only image tags matching REGEX"
    )
    export.add_argument(
        "--format",
        default="gif,sheet,html",
        metavar="LIST",
        help="comma-separated: gif, sheet, html (default: %(default)s)",
    )
    export.add_argument(
        "--every",
        type=_positive_int,
        default=1,
        metavar="N",
        help="every N-th epoch, the last always (default: %(default)s)",
    )
    export.add_argument(
        "--duration",
        type=_positive_int,
        default=500,
        metavar="MS",
        help="milliseconds per GIF frame (default: %(default)s)",
    )
    export.add_argument(
        "--compare",
        default=None,
        metavar="RUN",
        help=(
            "in the report, put RUN's picture of the same kind and layer under each probe "
            "image and its scalars in the same plots; RUN is a run of LOGDIR (the folder "
            "above its kinds' runs, e.g. lr=1e-2) or another log directory"
        ),
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `convviz` command line.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`.

    Returns:
        The process exit status, 0 on success.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from keras_convviz import demo

        options = {} if args.epochs is None else {"epochs": args.epochs}
        demo.run_demo(log_dir=args.log_dir, seed=args.seed, shortcut=args.shortcut, **options)
    elif args.command == "tensorboard":
        from keras_convviz import _serve

        return _serve.serve(args.logdir, port=args.port, host=args.host)
    elif args.command == "export":
        from keras_convviz.exports import export

        try:
            written = export(
                args.logdir,
                args.out,
                tags=args.tags,
                formats=args.format,
                every=args.every,
                duration=args.duration,
                compare=args.compare,
            )
        except ValueError as error:
            message = str(error)
            for name, option in _OPTIONS.items():
                message = message.replace(name, option)
            print(f"convviz export: error: {message}", file=sys.stderr)
            return 2
        for kind, what in (("gif", "GIF"), ("sheet", "contact sheet"), ("html", "report")):
            if written[kind]:
                count = len(written[kind])
                print(f"{count} {what}{'s' * (count != 1)}: {_common(written[kind])}")
    return 0


# The messages of `export` name its Python arguments; the command line names its options.
_OPTIONS = {
    "`logdir`": "LOGDIR",
    "logdir=": "LOGDIR=",
    "`out`": "--out",
    "out=": "--out=",
    "`tags`": "--tags",
    "tags=": "--tags=",
    "`formats`": "--format",
    "formats=": "--format=",
    "`every`": "--every",
    "every=": "--every=",
    "`duration`": "--duration",
    "duration=": "--duration=",
    "`compare`": "--compare",
    "compare=": "--compare=",
}


def _common(paths) -> str:
    """One path, or the folder the paths share."""
    return str(paths[0]) if len(paths) == 1 else os.path.commonpath(paths) + os.sep


if __name__ == "__main__":
    raise SystemExit(main())
