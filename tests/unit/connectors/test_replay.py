"""The HTTP push replay guard as a pure object, on a clock of the test's."""

from __future__ import annotations

from connectors.sources.replay import ReplayGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def guard() -> tuple[ReplayGuard, Clock]:
    clock = Clock()
    return ReplayGuard(300, clock), clock


def test_an_accepted_id_is_refused_again_within_the_window() -> None:
    g, clock = guard()
    assert g.admit("request-1", str(clock.now)) is None
    g.settle("request-1", accepted=True)
    refusal = g.admit("request-1", str(clock.now))
    assert refusal is not None and refusal.status == 409


def test_a_refused_or_failed_request_frees_its_id_for_a_resend() -> None:
    g, clock = guard()
    assert g.admit("request-2", str(clock.now)) is None
    g.settle("request-2", accepted=False)
    assert g.admit("request-2", str(clock.now)) is None


def test_the_same_id_in_flight_twice_is_refused() -> None:
    g, clock = guard()
    assert g.admit("request-3", str(clock.now)) is None
    refusal = g.admit("request-3", str(clock.now))
    assert refusal is not None and refusal.status == 409


def test_times_outside_the_window_are_refused_and_ids_are_forgotten_after_it() -> None:
    g, clock = guard()
    for sent in (clock.now - 301, clock.now + 301):
        refusal = g.admit("request-4", str(sent))
        assert refusal is not None and refusal.status == 409 and "current time" in refusal.message
    assert g.admit("request-5", str(clock.now)) is None
    g.settle("request-5", accepted=True)
    clock.now += 301  # the old request would now be refused by its time anyway
    assert g.admit("request-6", str(clock.now)) is None
    assert len(g) == 1  # request-5 forgotten, request-6 in flight


def test_missing_or_malformed_headers_are_a_bad_request() -> None:
    g, clock = guard()
    for request_id, sent in (
        (None, str(clock.now)),
        ("short", str(clock.now)),
        ("has space in it", str(clock.now)),
        ("request-7", None),
        ("request-7", "yesterday"),
        ("request-7", "nan"),
        ("request-7", "inf"),
    ):
        refusal = g.admit(request_id, sent)
        assert refusal is not None and refusal.status == 400, (request_id, sent)


def test_an_id_accepted_after_its_window_passed_is_still_forgotten() -> None:
    # A request slower than the window (Kafka away) must not leave its id behind for good.
    g, clock = guard()
    assert g.admit("request-8", str(clock.now)) is None
    clock.now += 400
    g.settle("request-8", accepted=True)
    clock.now += 1
    assert g.admit("request-9", str(clock.now)) is None
    assert len(g) == 1  # request-8 forgotten, request-9 in flight
