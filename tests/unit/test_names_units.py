import pytest

from hvdesk.core.errors import ConfigError
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.units import format_approx, format_size, parse_size


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
    ("x\n", "'\\n' not allowed"),
    ("x\r\n", "not allowed"),
    ("x\u0663", "not allowed"),
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
    ("512B", "M", 512),
    ("1024b", "G", 1024),
    ("1024", "G", 1024**4),
    ("2KiB", "M", 2048),
    ("1.5K", "", 1536),
    ("9007199254740993", "", 9007199254740993),  # beyond a float's 53 bits: still exact
])
def test_parse_size(text, unit, expected):
    assert parse_size(text, default_unit=unit) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "ten", "1.5.2G", "20X", "1e3M", "0.3", "5iB", "5BB", "\u0663G",
                                  "1.5B"])
def test_parse_size_rejects(text):
    with pytest.raises(ConfigError, match="invalid size"):
        parse_size(text)


def test_format_size():
    assert format_size(512 * 1024**2) == "512 MiB"
    assert format_size(1536 * 1024**2) == "1.5 GiB"
    assert format_size(100) == "100 B"
    assert format_size(1024**4) == "1 TiB"


@pytest.mark.parametrize("num_bytes, text", [
    (4194303 * 1024**2, "4194303 MiB"),  # not "4.0 TiB": one decimal would round it up to a size it is not
    (1023 * 1024**2, "1023 MiB"),
    (1300 * 1024**2, "1300 MiB"),  # 1.26953125 GiB: "1.3 GiB" would be a different size
    (20 * 1024**3 + 1, "21474836481 B"),
    (2560 * 1024**3, "2.5 TiB"),
])
def test_format_size_never_rounds(num_bytes, text):
    assert format_size(num_bytes) == text


@pytest.mark.parametrize("num_bytes, text", [
    (4194303 * 1024**2, "4.0 TiB"),
    (1300 * 1024**2, "1.3 GiB"),
    (123456789, "117.7 MiB"),
    (100, "100 B"),
])
def test_format_approx_is_for_measurements(num_bytes, text):
    assert format_approx(num_bytes) == text
