"""Dispatch of a command line. Exit codes: 0 done, 1 a user error (one line on stderr), 2 a usage
error (argparse), 130 interrupted."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hvdesk import __version__
from hvdesk.cli import reading
from hvdesk.core.errors import user_message
from hvdesk.core.paths import cache_dir

if TYPE_CHECKING:
    import argparse


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    request = reading.plain_request(words)  # `list` and `info NAME` skip argparse (its import: ~8 ms)
    if request is None:
        args = _parse(words)
        if args is None:
            return 2
        if args.command not in reading.HANDLERS:
            return _acting(args)
        request = reading.Request(args.command, getattr(args, "name", None), args.json)
    return _guarded(lambda: reading.run(request))  # read-only: no event loop (see cli/reading.py)


def _acting(args: argparse.Namespace) -> int:
    """A command that may change something: through the engine, on an event loop."""
    def act() -> int:
        import asyncio

        from hvdesk.cli import commands

        return asyncio.run(commands.run(args))

    code = _guarded(act)
    if args.command == "start" and code == 0:
        # QEMU runs on by itself and this process only exits now: spare its last garbage
        # collection over every object the engine made (20-80 ms, while the guest boots on the same cores).
        gc.freeze()
    return code


def _guarded(command: Callable[[], int]) -> int:
    """Every path ends in one line: ours, the system's, or a bug's (its traceback kept in a file)."""
    try:
        return command()
    except KeyboardInterrupt:
        print("hvdesk: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            message = f"unexpected error ({type(exc).__name__}: {exc}); {_crash_report(exc)}"
        print(f"hvdesk: {message}", file=sys.stderr)
        return 1


def _parse(words: list[str]) -> argparse.Namespace | None:
    """The command line parsed (argparse exits on a usage error), or None after printing the help."""
    from hvdesk.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return None
    if args.command == "stop" and args.timeout == 0 and not args.force:
        parser.error("stop: --timeout 0 only makes sense with --force")
    if args.command == "send-keys" and not args.keys and not args.text:
        parser.error("send-keys: give at least one KEY or --text")
    if args.command == "modify":
        from hvdesk.cli import modify

        modify.check(parser, args)
    return args


def _crash_report(error: BaseException) -> str:
    """Keep a bug's traceback in a file for its report, instead of on the user's terminal."""
    import traceback

    text = "".join(traceback.format_exception(error))
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        report = folder / "crash.log"
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(f"--- hvdesk {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}")
        return f"please report it with {report}"
    except OSError:
        return "please report it; the details:\n" + text.strip().splitlines()[-1]
