"""hvdesk: a desktop manager for QEMU virtual machines."""

__version__ = "0.1.0"
APP_NAME = "hvdesk"
