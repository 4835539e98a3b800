"""The `hvdesk` command: the desktop app with no arguments (or `gui`), else the CLI.

It lives above both faces, so neither the CLI nor the UI imports the other, and the CLI never
loads Qt.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] == "gui":
        from hvdesk.ui.app import main as gui_main

        return gui_main(args[1:])
    from hvdesk.cli.main import main as cli_main

    return cli_main(args)
