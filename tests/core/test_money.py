import pytest

from core.money import fen_to_yuan, yuan_to_fen


@pytest.mark.parametrize("fen, yuan", [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-5, "-0.05"), (100_000_000, "1000000.00")])
def test_fen_to_yuan(fen, yuan):
    assert fen_to_yuan(fen) == yuan


@pytest.mark.parametrize("yuan, fen", [("123.45", 12345), ("0.1", 10), ("7", 700), (" 1.50 ", 150), ("-0.05", -5)])
def test_yuan_to_fen(yuan, fen):
    assert yuan_to_fen(yuan) == fen


@pytest.mark.parametrize("bad", ["1.005", "abc", "", "NaN", "Infinity", "1e-3"])
def test_yuan_to_fen_refuses_what_is_not_a_whole_fen(bad):
    with pytest.raises(ValueError):
        yuan_to_fen(bad)


def test_floats_are_refused_both_ways():
    with pytest.raises(TypeError):
        yuan_to_fen(1.5)
    with pytest.raises(TypeError):
        fen_to_yuan(1.5)
    with pytest.raises(TypeError):
        fen_to_yuan(True)
