"""VNC authentication (RFB security type 2): the 16-byte challenge encrypted with DES, keyed by
the password's first 8 bytes with each byte's bits reversed (a quirk of the original VNC)."""

from __future__ import annotations


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def response(password: str, challenge: bytes) -> bytes:
    from Cryptodome.Cipher import DES  # only a server that asks for a password needs it (QEMU's socket does not)

    key = bytes(_reverse_bits(b) for b in password.encode("latin-1", errors="replace")[:8].ljust(8, b"\0"))
    return DES.new(key, DES.MODE_ECB).encrypt(challenge)
