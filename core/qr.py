"""QR codes as PNG or SVG, from the ``qrcode`` package.

Rendering is a pure function of the content, so results are memoised per process:
a plaza's check-in code or a shop's payment code is drawn once, however often it is
printed. (A memo of a pure function is not state: every process computes the same.)
"""

import io
from functools import lru_cache

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M

MAX_CONTENT = 1024


def _qr(content: str) -> qrcode.QRCode:
    if not content or len(content) > MAX_CONTENT:
        raise ValueError(f"QR content must be 1 to {MAX_CONTENT} characters")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(content)
    code.make(fit=True)
    return code


@lru_cache(maxsize=512)
def qr_png(content: str, *, box_size: int = 10) -> bytes:
    code = _qr(content)
    code.box_size = box_size
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg_once(content: str) -> str:
    """For content that changes every minute (member codes): drawn, not memoised, so it
    does not push the printed codes out of the memo."""
    image = _qr(content).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


@lru_cache(maxsize=512)
def qr_svg(content: str) -> str:
    return qr_svg_once(content)
