"""The catalog as the portal lists it (portal/listing.py): searched and paged."""

from __future__ import annotations

from exchange.portal.listing import EntryRow, FieldRow, search


def _row(n: int, provider: str = "gongan", sharing: str = "conditional") -> EntryRow:
    fields = (FieldRow("citizen_id", "公民身份号码", "sensitive"),)
    text = f"p.e{n} 人口{n}  citizen_id 公民身份号码".lower()
    return EntryRow(f"p.e{n}", f"人口{n}", provider, "", sharing, "daily", fields, text)


ROWS = [
    _row(n, "gongan" if n % 2 else "mzj", "none" if n % 10 == 0 else "conditional")
    for n in range(120)
]


def test_words_must_all_match_in_titles_ids_or_fields() -> None:
    assert [r.id for r in search(ROWS, "人口7 公民身份号码").rows][:2] == ["p.e7", "p.e70"]
    assert search(ROWS, "CITIZEN_ID").total == 120
    assert search(ROWS, "人口7 不存在").total == 0


def test_filters_and_pages() -> None:
    found = search(ROWS, provider="mzj", sharing="conditional")
    assert found.total == 48 and len(found.rows) == 48
    paged = search(ROWS, offset=100, limit=50)
    assert paged.total == 120 and len(paged.rows) == 20
    assert search(ROWS, limit=50).rows[49].id == ROWS[49].id
