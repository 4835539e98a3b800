"""The VM model and its storage. Imports nothing from the rest of hvdesk."""
