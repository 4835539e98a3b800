import pytest

from hvdesk.core.errors import ConfigError
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.units import format_size, parse_size


@pytest.mark.parametrize("name", ["a", "Debian 12", "win-11_test.2", "x" * 64, "A.b c-d_e"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name, problem", [
    ("", "empty"),
    ("x" * 65, "longer than 64"),
    (".hidden", "must not start"),
    (" lead", "must not start"),
    ("trail.", "must not end"),
    ("a/b", "'/' not allowed"),
    ("a\\b", "not allowed"),
    ("tab\there", "not allowed"),
    ("naïve", "'ï' not allowed"),
    ("con", "reserved"),
    ("NUL.txt", "reserved"),
])
def test_invalid_names_say_why(name, problem):
    with pytest.raises(ConfigError, match="invalid VM name") as info:
        validate_name(name)
    assert problem in str(info.value)


def test_names_compare_without_case():
    assert name_key("Debian") == name_key("DEBIAN") != name_key("Debian2")


@pytest.mark.parametrize("text, unit, expected", [
    ("512", "M", 512 * 1024**2),
    ("512M", "", 512 * 1024**2),
    ("20G", "", 20 * 1024**3),
    ("20GiB", "", 20 * 1024**3),
    ("1.5g", "", 1536 * 1024**2),
    ("1T", "", 1024**4),
    ("4096", "", 4096),
    (" 2 G ", "", 2 * 1024**3),
])
def test_parse_size(text, unit, expected):
    assert parse_size(text, default_unit=unit) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "ten", "1.5.2G", "20X", "1e3M", "0.3"])
def test_parse_size_rejects(text):
    with pytest.raises(ConfigError, match="invalid size"):
        parse_size(text)


def test_format_size():
    assert format_size(512 * 1024**2) == "512 MiB"
    assert format_size(1536 * 1024**2) == "1.5 GiB"
    assert format_size(100) == "100 B"
