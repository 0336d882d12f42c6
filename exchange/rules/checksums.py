"""Check digits of Chinese identification numbers.

- GB 11643-1999, 公民身份号码: 6-digit address code, 8-digit birth date, 3-digit sequence, and a
  check character over ISO 7064 MOD 11-2 (``X`` stands for 10).
- GB 32100-2015, 统一社会信用代码: 18 characters from a 31-character alphabet (no I, O, S, V, Z),
  with a MOD 31 check character.

Each function returns ``None`` for a valid number, else the reason in plain words.
"""

from __future__ import annotations

import datetime as dt
import time
from operator import mul

_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"
# Digits as ASCII bytes: sum(byte * weight) minus this is sum(digit * weight), without int().
_ID_ZERO = ord("0") * sum(_ID_WEIGHTS)
# First two digits of the address code: provinces, plus Taiwan, Hong Kong and Macao.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
# A sanity bound, not a policy: the standard's own example was born in 1880.
_EARLIEST_BIRTH = dt.date(1800, 1, 1)

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}
_CC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))


_TODAY: tuple[float, dt.date] = (float("-inf"), dt.date.min)


def _today() -> dt.date:
    """``date.today()``, asked again at most once a second (it costs a fifth of a check)."""
    global _TODAY
    now = time.monotonic()
    if now - _TODAY[0] >= 1.0:
        _TODAY = (now, dt.date.today())
    return _TODAY[1]


def today_ordinal() -> int:
    """Today's ``date.toordinal()`` (the compiled kernel checks birth dates against it)."""
    return _today().toordinal()


def citizen_id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"need 17 digits, not {first17!r}")
    total = sum(map(mul, first17.encode("ascii"), _ID_WEIGHTS)) - _ID_ZERO
    return _ID_CHECK[total % 11]


def make_citizen_id(region_code: str, birth: dt.date, sequence: int) -> str:
    """A well-formed citizen ID (for sample data and tests)."""
    first17 = f"{region_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + citizen_id_check_char(first17)


def citizen_id_problem(value: str, today: dt.date | None = None) -> str | None:
    """Why ``value`` is not a valid 18-digit citizen ID, or ``None`` if it is."""
    if len(value) != 18:
        return f"citizen ID must have 18 characters, not {len(value)}"
    if not value[:17].isascii() or not value[:17].isdigit():
        return "citizen ID must have 17 digits before the check character"
    check = value[17].upper()
    if not (check.isdigit() or check == "X"):
        return "citizen ID check character must be a digit or X"
    if int(value[:2]) not in _PROVINCES:
        return f"citizen ID address code {value[:6]} has no province {value[:2]}"
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return f"citizen ID birth date {value[6:14]} is not a date"
    if not _EARLIEST_BIRTH <= birth <= (today or _today()):
        return f"citizen ID birth date {birth.isoformat()} is out of range"
    expected = citizen_id_check_char(value[:17])
    if check != expected:
        return f"citizen ID check character is {check}, expected {expected}"
    return None


def credit_code_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters."""
    total = sum(_CC_VALUE[c] * w for c, w in zip(first17, _CC_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def make_credit_code(first17: str) -> str:
    """A well-formed credit code from its first 17 characters (for sample data and tests)."""
    return first17 + credit_code_check_char(first17)


def credit_code_problem(value: str) -> str | None:
    """Why ``value`` is not a valid unified social credit code, or ``None`` if it is."""
    if len(value) != 18:
        return f"credit code must have 18 characters, not {len(value)}"
    bad = sorted({c for c in value if c not in _CC_VALUE})
    if bad:
        return f"credit code has characters outside GB 32100's alphabet: {''.join(bad)}"
    if not value[2:8].isdigit():
        return f"credit code region part {value[2:8]} must be 6 digits"
    expected = credit_code_check_char(value[:17])
    if value[17] != expected:
        return f"credit code check character is {value[17]}, expected {expected}"
    return None
