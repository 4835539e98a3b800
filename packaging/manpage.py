"""Write hvdesk(1), the man page, from the command line's own argparse parser, so the page lists
exactly the commands and options `hvdesk --help` does:

    python packaging/manpage.py OUT.1        (with hvdesk importable: the build venv)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from hvdesk import __version__
from hvdesk.cli.parser import build_parser

ENVIRONMENT = {
    "HVDESK_HOME": "the folder of hvdesk's VM library, instead of ~/.local/share/hvdesk",
    "HVDESK_RUNTIME_DIR": "the folder for the VMs' sockets and pid files, instead of $XDG_RUNTIME_DIR/hvdesk",
    "HVDESK_QEMU_DIR": "a folder holding qemu-system-x86_64 and qemu-img, instead of the PATH",
    "HVDESK_ACCEL": "the accelerator for new starts (tcg, kvm ...), instead of the one hvdesk probes",
}


def roff(text: str) -> str:
    """Text as roff: backslashes escaped, hyphens made minus signs (options are typed), no line
    starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage: ").split())


def arguments(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # argparse has no public API for its arguments
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
            takes_value = action.nargs != 0 and not isinstance(action, (argparse._StoreTrueAction,
                                                                        argparse._StoreConstAction))
            name = ", ".join(f"\\fB{roff(option)}\\fR" for option in action.option_strings)
            if takes_value:
                choices = "{" + ",".join(action.choices) + "}" if action.choices else metavar
                name += f" \\fI{roff(str(choices))}\\fR"
        else:
            name = f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
        lines += [".TP", name, roff(action.help or "")]
    return lines


def manpage(parser: argparse.ArgumentParser, date: str) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    lines = [
        f'.TH HVDESK 1 "{date}" "hvdesk {__version__}" "User Commands"',
        ".SH NAME",
        "hvdesk \\- " + roff(parser.description or ""),
        ".SH SYNOPSIS",
        "\\fBhvdesk\\fR [\\fBgui\\fR [\\fB\\-\\-interval\\fR \\fIS\\fR]]",
        ".br",
        "\\fBhvdesk\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        "hvdesk manages QEMU virtual machines: each VM is a QEMU process driven over QMP, which keeps",
        "running when hvdesk exits and is found again when it starts.",
        "With no arguments, or with \\fBgui\\fR, hvdesk opens its desktop window",
        "(\\fBhvdesk gui \\-\\-help\\fR lists its options); with a \\fICOMMAND\\fR it works on the command line.",
        "Exit status: 0 done, 1 an error (one line on standard error), 2 a usage error, 130 interrupted.",
        ".SH OPTIONS",
        *arguments(parser),
        ".SH COMMANDS",
    ]
    for name, command in sub.choices.items():
        lines += [f".SS {roff(name)}", roff(helps.get(name) or ""), ".PP",
                  f"\\fB{roff(usage(command))}\\fR", *arguments(command)]
    lines += [".SH ENVIRONMENT"]
    for variable, text in ENVIRONMENT.items():
        lines += [".TP", f"\\fB{variable}\\fR", roff(text)]
    lines += [".SH FILES", ".TP", "\\fI~/.local/share/hvdesk/VMs/NAME/vm.toml\\fR",
              "a VM's settings; its disks and logs are in the same folder",
              ".SH SEE ALSO", "\\fBqemu\\-system\\-x86_64\\fR(1), \\fBqemu\\-img\\fR(1)"]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    # A reproducible date: the release's (SOURCE_DATE_EPOCH), else today.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", datetime.datetime.now(datetime.UTC).timestamp()))
    date = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d")
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(manpage(build_parser(), date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
