"""The bundle's entry point (PyInstaller runs a script, not a console_scripts entry)."""

import sys

from hvdesk.launcher import main

if __name__ == "__main__":
    sys.exit(main())
