"""QEMU's key=value option syntax as QEMU itself reads it (util/qemu-option.c: opts_do_parse,
get_opt_name_value, get_opt_value), written out again so tests can check what hvdesk builds
without trusting hvdesk's own escaping."""

from __future__ import annotations


def parse_options(text: str, implied: str | None = None) -> list[tuple[str, str]]:
    """[(key, value), ...] in order. A value runs to the next single ',' (',,' is a literal comma).
    An element with no '=' before its first ',' is the value of the `implied` key when it comes
    first, and a flag (key=on) anywhere else, as QEMU reads it."""
    pairs: list[tuple[str, str]] = []
    pos, first = 0, True
    while pos < len(text):
        name_end = _first_of(text, "=,", pos)
        if name_end < len(text) and text[name_end] == "=":
            name = text[pos:name_end]
            value, pos = _value(text, name_end + 1)
            pairs.append((name, value))
        elif first and implied:
            value, pos = _value(text, pos)
            pairs.append((implied, value))
        else:
            pairs.append((text[pos:name_end], "on"))
            pos = name_end
        first = False
        if pos < len(text):
            pos += 1  # the separating comma
    return pairs


def _first_of(text: str, chars: str, start: int) -> int:
    found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
    return min(found) if found else len(text)


def _value(text: str, pos: int) -> tuple[str, int]:
    """The value starting at `pos` and the index of the ',' (or end) that ends it."""
    parts = []
    while True:
        comma = text.find(",", pos)
        if comma < 0:
            parts.append(text[pos:])
            return "".join(parts), len(text)
        if text[comma + 1:comma + 2] == ",":
            parts.append(text[pos:comma + 1])
            pos = comma + 2
            continue
        parts.append(text[pos:comma])
        return "".join(parts), comma
