"""Code 128 barcodes as SVG, for the member code a POS scans with a 1-D scanner.

Table-driven (ISO/IEC 15417): every symbol is six bar/space widths totalling 11
modules, the stop symbol seven (13 modules). Printable ASCII goes in code set B;
runs of digits go in code set C, two digits a symbol, so the 23-digit member code is
a short, easily scanned symbol.
"""

from itertools import groupby

# Widths of bar, space, bar, space, bar, space for symbol values 0–105, then stop.
PATTERNS = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213",
    "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132",
    "221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211",
    "212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331",
    "231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111",
    "314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214",
    "112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141",
    "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
)
CODE_B, CODE_C = 100, 99  # "switch to code set B / C" (as seen from the other set)
START_B, START_C, STOP = 104, 105, 106
# A scanner needs at least ten modules of white either side of the symbol.
QUIET_ZONE = 10
# Runs of at least this many digits are cheaper in code set C than in B.
MIN_DIGIT_RUN = 4
MAX_CONTENT = 80


def _digit_run(data: str, start: int) -> int:
    end = start
    while end < len(data) and data[end].isdigit():
        end += 1
    return end - start


def code128_values(data: str) -> list[int]:
    """Symbol values of ``data``: start, data, checksum and stop."""
    if not data or len(data) > MAX_CONTENT or any(not 32 <= ord(ch) <= 126 for ch in data):
        raise ValueError(f"Code 128 content must be 1 to {MAX_CONTENT} printable ASCII characters")
    values: list[int] = []
    code_set = None
    i = 0
    while i < len(data):
        run = _digit_run(data, i)
        if run >= MIN_DIGIT_RUN or (run == len(data) and run % 2 == 0):
            if run % 2:  # an odd run: its first digit goes in B, the even rest in C
                values += [START_B] if code_set is None else ([CODE_B] if code_set == "C" else [])
                values.append(ord(data[i]) - 32)
                code_set, i, run = "B", i + 1, run - 1
            values += [START_C] if code_set is None else ([CODE_C] if code_set == "B" else [])
            code_set = "C"
            values += [int(data[j : j + 2]) for j in range(i, i + run, 2)]
            i += run
        else:
            values += [START_B] if code_set is None else ([CODE_B] if code_set == "C" else [])
            code_set = "B"
            values.append(ord(data[i]) - 32)
            i += 1
    checksum = (values[0] + sum(position * value for position, value in enumerate(values[1:], start=1))) % 103
    return [*values, checksum, STOP]


def code128_modules(data: str) -> str:
    """The symbol as a string of modules, ``1`` for bar and ``0`` for space, quiet zones excluded."""
    modules = []
    for value in code128_values(data):
        for index, width in enumerate(PATTERNS[value]):
            modules.append(("1" if index % 2 == 0 else "0") * int(width))
    return "".join(modules)


def code128_svg(data: str, *, height: int = 50) -> str:
    """An SVG drawing of ``data``: one path, the viewBox in modules, quiet zones included.

    It scales to any width (``preserveAspectRatio="none"``), so CSS sizes it; bars keep
    their proportions because every module scales alike.
    """
    modules = code128_modules(data)
    bars = []
    x = QUIET_ZONE
    for bit, run in groupby(modules):
        width = len(list(run))
        if bit == "1":
            bars.append(f"M{x},0h{width}v{height}h-{width}z")
        x += width
    total = len(modules) + 2 * QUIET_ZONE
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total} {height}" preserveAspectRatio="none" '
        f'shape-rendering="crispEdges" role="img"><rect width="{total}" height="{height}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(bars)}"/></svg>'
    )
