"""The Code 128 drawing of the member code (core.barcode), read back symbol by symbol."""

import re

import pytest

from core.barcode import (
    PATTERNS,
    QUIET_ZONE,
    STOP,
    code128_modules,
    code128_svg,
    code128_values,
)

START_B, START_C, CODE_B, CODE_C = 104, 105, 100, 99


def decode(modules: str) -> str:
    """An independent reader: modules → symbol values → text, checking the checksum."""
    widths = {pattern: value for value, pattern in enumerate(PATTERNS)}
    runs = [len(run) for run in re.findall(r"1+|0+", modules)]
    assert modules[0] == "1" and modules[-1] == "1"
    values = []
    while len(runs) > 7:
        values.append(widths["".join(map(str, runs[:6]))])
        runs = runs[6:]
    assert widths["".join(map(str, runs))] == STOP
    *symbols, checksum = values
    assert checksum == (symbols[0] + sum(i * v for i, v in enumerate(symbols[1:], start=1))) % 103
    text, code_set = [], {START_B: "B", START_C: "C"}[symbols[0]]
    for value in symbols[1:]:
        if code_set == "B" and value == CODE_C:
            code_set = "C"
        elif code_set == "C" and value == CODE_B:
            code_set = "B"
        else:
            text.append(f"{value:02d}" if code_set == "C" else chr(value + 32))
    return "".join(text)


def test_the_table_is_code_128s():
    assert len(PATTERNS) == 107
    assert len(set(PATTERNS)) == 107
    for pattern in PATTERNS[:STOP]:
        assert len(pattern) == 6 and sum(map(int, pattern)) == 11
        assert sum(map(int, pattern[::2])) % 2 == 0  # bars take an even number of modules
    assert PATTERNS[STOP] == "2331112"
    # Spot checks against ISO/IEC 15417 Table 1.
    assert (PATTERNS[0], PATTERNS[16], PATTERNS[99], PATTERNS[104], PATTERNS[105]) == ("212222", "123122", "113141", "211214", "211232")


@pytest.mark.parametrize("data", ["12345678901234567890123", "1234", "42", "7", "PJJ123C", "A1234567B", "mk_x-9 ~"])
def test_every_code_reads_back(data):
    assert decode(code128_modules(data)) == data


def test_a_member_code_is_start_b_one_digit_then_code_c_pairs():
    values = code128_values("12345678901234567890123")

    assert values[:3] == [START_B, ord("1") - 32, CODE_C]
    assert values[3:14] == [23, 45, 67, 89, 1, 23, 45, 67, 89, 1, 23]
    assert values[-1] == STOP and len(values) == 16


def test_checksum_of_a_known_symbol():
    # Start B (104) + P·1 + J·2 + J·3 + 1·4 + 2·5 + 3·6 + C·7 = 879 ≡ 55 (mod 103)
    assert code128_values("PJJ123C")[-2] == 55


def test_svg_has_quiet_zones_and_one_bar_per_run():
    modules = code128_modules("12345678901234567890123")
    svg = code128_svg("12345678901234567890123")

    assert f'viewBox="0 0 {len(modules) + 2 * QUIET_ZONE} 50"' in svg
    bars = re.findall(r"M(\d+),0h(\d+)", svg)
    assert len(bars) == len(re.findall("1+", modules))
    assert int(bars[0][0]) == QUIET_ZONE
    assert int(bars[-1][0]) + int(bars[-1][1]) == QUIET_ZONE + len(modules)


@pytest.mark.parametrize("data", ["", "中文", "tab\there", "x" * 81])
def test_refuses_what_code_128_b_and_c_cannot_carry(data):
    with pytest.raises(ValueError):
        code128_values(data)
