"""Reserved for a later layer (see ARCHITECTURE.md)."""
