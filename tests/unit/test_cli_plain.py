"""`list` and `info NAME` are recognised without argparse (cli/reading.py): for every command line,
the quick reading either agrees with the argparse grammar (cli/parser.py) or leaves it to argparse."""

from __future__ import annotations

import pytest

from hvdesk.cli.parser import build_parser
from hvdesk.cli.reading import Request, plain_request

LINES = [
    ["list"], ["list", "--json"], ["--json", "list"], ["info", "vm"], ["info", "vm", "--json"],
    ["info", "--json", "vm"], ["info", "my vm"], ["info", "-vm"], ["info"], ["list", "x"], ["list", "--js"],
    ["list", "--json", "--json"], ["info", "a", "b"], ["list", "-h"], ["--version"], [], ["start", "vm"],
    ["info", "--", "vm"], ["info", ""], ["lis"], ["info", "vm", "--jso"],
]


def argparse_reading(words: list[str]) -> Request | None:
    """What argparse makes of the line, as a reading Request (None: an error, help, or another command)."""
    try:
        args = build_parser().parse_args(words)
    except SystemExit:
        return None
    if args.command not in ("list", "info"):
        return None
    return Request(args.command, getattr(args, "name", None), args.json)


@pytest.mark.parametrize("words", LINES, ids=" ".join)
def test_the_quick_reading_agrees_with_argparse_or_defers(words, capsys):
    quick = plain_request(words)
    if quick is not None:
        assert quick == argparse_reading(words)


def test_the_plain_forms_are_recognised():
    assert plain_request(["list"]) == Request("list", None, False)
    assert plain_request(["info", "vm", "--json"]) == Request("info", "vm", True)
    assert plain_request(["list", "--help"]) is None
