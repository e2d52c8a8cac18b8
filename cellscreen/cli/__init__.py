"""The ``cellscreen`` command: parses arguments and calls one library function per command.

Each command group lives in its own module, its parser beside its handlers: ``data`` (datasets, data
fetch/info, split, cache, models), ``train`` (train, svm, explain, compare, ensemble), ``evaluate``
(evaluate, demo), ``labels`` (labels audit, review, export), ``predict`` (predict, merge, export, serve),
``screen`` (screen, cells score) and ``bench``.  ``options`` holds what they share.

Errors the user can fix (a missing folder, a leaky split, a file that would be
overwritten) are printed as one line and exit with status 2; a traceback means
a bug in cellscreen.
"""

from __future__ import annotations

import argparse
import sys

from cellscreen import __version__
from cellscreen.cli import bench, data, evaluate, labels, predict, screen, train
from cellscreen.cli.options import HelpFormatter
from cellscreen.cpu import keep_freed_memory
from cellscreen.errors import UserError

__all__ = ["build_parser", "main"]

DESCRIPTION = "Screen blood-cell images with deep learning.\nEach command's --help shows its options and examples."

EXAMPLES = """\
examples:
  cellscreen demo                        # the whole job on the NIH malaria cells
  cellscreen split --dataset malaria-nih --out runs/split.csv
  cellscreen train --dataset malaria-nih --split runs/split.csv --out runs/m1"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellscreen", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"cellscreen {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    data.add_parsers(commands)
    train.add_parsers(commands)
    evaluate.add_parsers(commands)
    labels.add_parsers(commands)
    predict.add_parsers(commands)
    screen.add_parsers(commands)
    bench.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # every command frees and allocates large arrays (cellscreen/cpu.py); denormals are flushed by train(),
    # since importing PyTorch here would add about two seconds to commands that do not need it
    keep_freed_memory()
    try:
        args.func(args)
    except UserError as exc:
        print(f"cellscreen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cellscreen: interrupted", file=sys.stderr)
        return 130
    return 0
