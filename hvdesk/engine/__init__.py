"""The services the faces (CLI, UI) use: the Manager and what it needs."""
