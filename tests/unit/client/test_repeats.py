from exchange.client.repeats import METADATA_LIMIT, RepeatFilter

SRC = "src.gongan.people/1"


def test_a_change_handled_once_is_a_repeat_after() -> None:
    marks = RepeatFilter()
    assert not marks.is_repeat("g1", f"{SRC}/10")
    marks.handled("g1", f"{SRC}/10")
    assert marks.is_repeat("g1", f"{SRC}/10")
    assert marks.is_repeat("g1", f"{SRC}/9")  # an earlier one, delivered again
    assert not marks.is_repeat("g1", f"{SRC}/11")
    # Another grant or another source partition has its own order.
    assert not marks.is_repeat("g2", f"{SRC}/10")
    assert not marks.is_repeat("g1", "src.gongan.people/0/3")


def test_not_handled_means_not_a_repeat() -> None:
    marks = RepeatFilter()
    assert not marks.is_repeat("g1", f"{SRC}/10")  # the handler failed: no `handled`
    assert not marks.is_repeat("g1", f"{SRC}/10")


def test_records_without_router_headers_always_pass() -> None:
    marks = RepeatFilter()
    for grant, source in ((None, f"{SRC}/1"), ("g", None), ("g", "no-offset"), ("g", "t/0/x")):
        marks.handled(grant, source)
        assert not marks.is_repeat(grant, source)


def test_marks_survive_a_restart_through_commit_metadata() -> None:
    marks = RepeatFilter()
    marks.handled("g1", f"{SRC}/10")
    again = RepeatFilter.from_metadata(marks.metadata())
    assert again.is_repeat("g1", f"{SRC}/10")
    for junk in (None, "", "{", "[]", '{"marks": 3}'):
        assert RepeatFilter.from_metadata(junk).marks == {}


def test_metadata_stays_within_kafkas_limit() -> None:
    marks = RepeatFilter({f"grant-{i:04d}|src.some.long.entry.name/{i}": i for i in range(500)})
    text = marks.metadata()
    assert len(text.encode()) <= METADATA_LIMIT
    kept = RepeatFilter.from_metadata(text)
    assert kept.marks and max(kept.marks.values()) == 499
