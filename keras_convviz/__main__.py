"""Command line: `python -m keras_convviz demo` (or `convviz demo`) trains the demo CNN."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from keras_convviz import demo


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
    args = _parser().parse_args(argv)
    if args.command == "demo":
        options = {} if args.epochs is None else {"epochs": args.epochs}
        demo.run_demo(log_dir=args.log_dir, seed=args.seed, **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
