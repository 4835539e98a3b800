"""hvdesk's data files (icons, OS presets), installed as the package hvdesk.resources.

This file makes it a regular package: without it, importlib.resources sees a namespace package
and hands back a MultiplexedPath, which is not a folder (the bug that broke `hvdesk create` in
every non-editable install)."""
