"""Fen (integer) ⇄ yuan (decimal string), the only place money leaves integers."""

from decimal import Decimal, DecimalException

FEN_PER_YUAN = 100


def fen_to_yuan(amount_fen: int) -> str:
    """12345 → "123.45"; -5 → "-0.05"."""
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise TypeError("amount_fen must be an int")
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{fen:02d}"


def yuan_to_fen(amount_yuan: str) -> int:
    """"123.45" → 12345. Refuses floats and anything finer than one fen."""
    if not isinstance(amount_yuan, str):
        raise TypeError("amount_yuan must be a str (never a float)")
    try:
        value = Decimal(amount_yuan.strip())
        if not value.is_finite():
            raise ValueError(f"not an amount: {amount_yuan!r}")
        fen = value * FEN_PER_YUAN
        whole = fen == fen.to_integral_value()
    except DecimalException:  # malformed, or an exponent past what the context holds ("1e999999")
        raise ValueError(f"not an amount: {amount_yuan!r}") from None
    if not whole:
        raise ValueError(f"finer than one fen: {amount_yuan!r}")
    return int(fen)
