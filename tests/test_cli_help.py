"""Every command's --help: options in named groups, defaults shown, and examples that are real command lines."""

from __future__ import annotations

import argparse
import shlex

import pytest

from cellscreen.cli import build_parser
from cellscreen.config import list_presets
from cellscreen.data.sources import PROFILES

UNGROUPED = ("options", "positional arguments")


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    """The top parser and every command's and sub-command's, by their command line."""
    found = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    walk(build_parser(), "cellscreen")
    return found


PARSERS = all_parsers()


def examples_of(parser: argparse.ArgumentParser) -> list[str]:
    """The command lines of the help's closing ``examples:`` section (comments after ``#`` removed)."""
    text = parser.format_help().rstrip()
    head, found, section = text.rpartition("\nexamples:\n")
    assert found, f"{parser.prog}: the help does not end with an examples section"
    lines = [line.split("  #")[0].strip() for line in section.splitlines()]
    return [line for line in lines if line]


def test_every_command_is_walked():
    assert {"cellscreen train", "cellscreen data fetch", "cellscreen bench ceiling",
            "cellscreen bench compare-reference", "cellscreen demo"} <= PARSERS.keys()
    assert len(PARSERS) > 20


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_help_ends_with_two_or_three_examples_of_this_command(path):
    examples = examples_of(PARSERS[path])
    assert 2 <= len(examples) <= 3, examples
    assert all(line.startswith("cellscreen ") for line in examples), examples
    assert any(line.startswith(path + " ") or line == path for line in examples), (path, examples)


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_options_are_in_named_groups(path):
    parser = PARSERS[path]
    for group in parser._action_groups:
        for action in group._group_actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            name = f"{path}: {action.option_strings or action.dest}"
            assert group.title not in UNGROUPED, f"{name} has no group"
            assert action.help or isinstance(action, argparse._SubParsersAction), f"{name} has no help"


def test_defaults_are_shown():
    train = " ".join(PARSERS["cellscreen train"].format_help().split())  # as read, without the line breaks
    assert "(default: 1000)" in train and "(default: auto)" in train
    assert "seed_malaria_cnn" in train  # --preset lists the presets
    serve = " ".join(PARSERS["cellscreen serve"].format_help().split())
    assert "(default: 8000)" in serve and "(default: 127.0.0.1)" in serve


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_examples_parse_and_name_real_datasets_and_presets(path):
    for line in examples_of(PARSERS[path]):
        argv = shlex.split(line)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse refused the line
            raise AssertionError(f"{line!r} does not parse") from exc
        if getattr(args, "dataset", None) is not None:
            assert args.dataset in PROFILES, line
        if getattr(args, "preset", None) is not None:
            assert args.preset in list_presets(), line


def test_examples_name_registered_models():
    from cellscreen.models import list_models

    for path, parser in PARSERS.items():
        for line in examples_of(parser):
            argv = shlex.split(line)
            for flag in ("--model", "--features"):
                if flag in argv:
                    name = argv[argv.index(flag) + 1]
                    assert name in list_models() or name == "malaria" or "/" in name or name == "handcrafted", line
