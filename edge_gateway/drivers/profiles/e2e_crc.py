"""E2E-CRC of the CGM profile (CGMS §2.4, GSS "CRC calculation"), shared by its codecs.

CRC-CCITT polynomial x^16+x^12+x^5+1, seed 0xFFFF, bits processed LSB first, no final XOR — the
variant catalogued as CRC-16/MCRF4XX — over all fields before the CRC, sent little-endian.
A helper module: it declares no profile.
"""

from __future__ import annotations

import binascii

from edge_gateway.drivers.profiles.base import Reader, p16

#: Each byte's bits in reverse order.
_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def crc16_mcrf4xx(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX (poly 0x1021 reflected, init 0xFFFF, no xorout); check value 0x6F91.

    A reflected CRC is the plain one over bit-reversed bytes, bit-reversed at the end, so
    the C implementation of the plain CCITT CRC in ``binascii`` does the work (~10× faster
    than a Python loop; every CGM record goes through here).  0xFFFF is its own reverse.
    """
    rev = _REV8
    seed = rev[crc >> 8] | rev[crc & 0xFF] << 8
    out = binascii.crc_hqx(data.translate(rev), seed)
    return rev[out >> 8] | rev[out & 0xFF] << 8


def crc_ok(raw: bytes, start: int, end: int, crc: int | None) -> bool | None:
    """Whether ``crc`` matches ``raw[start:end]``; None when there is no CRC."""
    if crc is None:
        return None
    return crc16_mcrf4xx(raw[start:end]) == crc


def with_crc(body: bytes, crc: int | None, add_crc: bool) -> bytes:
    """Append the E2E-CRC: ``crc`` as given (to reproduce a frame) or computed when asked."""
    if crc is not None:
        return body + p16(crc)
    if add_crc:
        return body + p16(crc16_mcrf4xx(body))
    return body


def end_with_crc(r: Reader) -> tuple[int | None, bool | None]:
    """After a codec's last field: the optional E2E-CRC over everything before it, then the
    end of the payload.  Returns ``(crc, crc_ok)`` (``(None, None)`` without a CRC)."""
    body_end = r.pos
    crc = r.u16("E2E-CRC") if r.left >= 2 else None
    r.end()
    return crc, crc_ok(r.raw, 0, body_end, crc)
