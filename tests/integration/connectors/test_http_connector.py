"""HTTP push against the real broker: 202 after acknowledgement, 400 per record, 401, 403,
409 for a replay, and HTTPS."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.config import load_connector_config
from connectors.runner import Connector
from connectors.sources.http import HttpPushSource
from exchange.devplatform.tls import TlsFiles, ensure_tls
from samples.generate import population_rows
from tests.integration.connectors.conftest import ConnectorEnv

TOKEN = "test-token-of-the-provider"


@pytest.fixture
def endpoint(env: ConnectorEnv) -> Iterator[str]:
    yield from serving(env, {})


@pytest.fixture
def tls_endpoint(env: ConnectorEnv) -> Iterator[tuple[str, TlsFiles]]:
    """HTTPS with a certificate of a CA of the test's own (the platform's kind of CA)."""
    files = ensure_tls(env.project.root / "tls")
    tls = {"tls_cert_file": str(files.server_cert), "tls_key_file": str(files.server_key)}
    for url in serving(env, tls):
        yield url, files


def serving(env: ConnectorEnv, extra: dict[str, Any]) -> Iterator[str]:
    tokens = env.project.write(
        "config/connectors/tokens.yaml",
        f"tokens: {{{env.uid}: {TOKEN}, other: other-token}}\n",
    )
    path = env.connector_file({"type": "http", "port": 0, "tokens_file": str(tokens), **extra})
    connector = Connector(env.settings, load_connector_config(path))
    source = connector.source
    assert isinstance(source, HttpPushSource)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            connector.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert source.ready.wait(30), failure
    scheme = "https" if extra else "http"
    yield f"{scheme}://127.0.0.1:{source.port}/v1/entries/{env.project.entry_id}/records"
    connector.stop.set()
    thread.join(30)
    assert not failure, failure


def post(
    url: str,
    body: Any,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST as a department system does: a new request id and the current time unless
    ``headers`` say otherwise (an empty value leaves the header out)."""
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    sent = {"X-Request-Id": uuid.uuid4().hex, "X-Request-Time": f"{time.time():.3f}"}
    for name, value in {**sent, **(headers or {})}.items():
        if value:
            request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def person(i: int) -> dict[str, Any]:
    p = list(population_rows(i + 1))[i]
    return {
        "citizen_id": p[0],
        "name": p[1],
        "gender": "1",
        "birth_date": "1980年1月2日",
        "region_code": p[6],
        "address": p[5],
    }


def test_one_record_and_a_batch_are_accepted_after_kafka_acknowledged(
    env: ConnectorEnv, endpoint: str
) -> None:
    status, body = post(endpoint, person(0))
    assert status == 202 and body["accepted"] == 1
    status, body = post(endpoint, [person(1), {**person(2), "_op": "c", "_id": "r-2"}])
    assert status == 202 and body["accepted"] == 2
    # The records are on the topic as soon as the 202 came: no waiting needed.
    values = {c.key: c.value for c in env.changes() if c.value}
    assert set(values) == {person(i)["citizen_id"] for i in range(3)}
    assert values[person(0)["citizen_id"]]["after"]["name"] == person(0)["name"]
    assert values[person(2)["citizen_id"]]["op"] == "c"
    event_ids = set(body["event_ids"])
    assert event_ids == {values[person(i)["citizen_id"]]["event_id"] for i in (1, 2)}
    # A resend is recognisable: same record, same event id.
    _status, again = post(endpoint, [person(1), {**person(2), "_op": "c", "_id": "r-2"}])
    assert set(again["event_ids"]) == event_ids


def test_a_delete(env: ConnectorEnv, endpoint: str) -> None:
    assert post(endpoint, person(0))[0] == 202
    status, _ = post(endpoint, {"_op": "d", "citizen_id": person(0)["citizen_id"]})
    assert status == 202
    ops = [c.value["op"] if c.value else None for c in env.changes()]
    assert ops == ["u", "d", None]


def test_bad_records_get_400_with_per_record_errors_and_nothing_is_published(
    env: ConnectorEnv, endpoint: str
) -> None:
    bad_id = {**person(1), "citizen_id": person(1)["citizen_id"][:17] + "0"}
    if bad_id["citizen_id"] == person(1)["citizen_id"]:
        bad_id["citizen_id"] = bad_id["citizen_id"][:17] + "1"
    batch = [person(0), bad_id, {**person(2), "birth_date": "someday", "colour": "red"}]
    status, body = post(endpoint, batch)
    assert status == 400 and body["accepted"] == 0 and body["rejected"] == 2
    errors = {(e["index"], e["field"], e["reason"]) for e in body["errors"]}
    assert errors == {
        (1, "citizen_id", "citizen_id"),
        (2, "birth_date", "unreadable"),
        (2, "colour", "unknown_field"),
    }
    assert env.changes() == []
    letters = env.dead_letters()
    assert sorted(d["reason"] for d in letters) == ["citizen_id", "unknown_field"]
    status, body = post(endpoint, b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    assert len(env.dead_letters()) == 3


def test_text_with_no_utf8_gets_400_and_a_dead_letter(env: ConnectorEnv, endpoint: str) -> None:
    # JSON may escape a lone surrogate; Python reads it as text, but Avro strings are UTF-8.
    body = "[" + json.dumps(person(0)) + "," + json.dumps({**person(1), "name": "x"}) + "]"
    body = body.replace('"name": "x"', '"name": "\\ud800"')
    status, answer = post(endpoint, body.encode())
    assert status == 400 and answer["accepted"] == 0, answer
    assert [(e["index"], e["field"], e["reason"]) for e in answer["errors"]] == [
        (1, "name", "unencodable")
    ]
    assert env.changes() == []
    (letter,) = env.dead_letters()
    assert letter["reason"] == "unencodable" and letter["data"]["name"] == "\ud800"


def test_a_record_too_large_for_kafka_or_of_the_wrong_shape_gets_400(
    env: ConnectorEnv, endpoint: str
) -> None:
    big = {**person(1), "address": "址" * 400_000}  # 1.2 MB of UTF-8
    batch = [person(0), big, {**person(2), "_op": ["u"]}, {**person(3), "name": True}]
    status, answer = post(endpoint, batch)
    assert status == 400 and answer["accepted"] == 0, answer
    assert [(e["index"], e["field"], e["reason"]) for e in answer["errors"]] == [
        (2, "_op", "bad_op"),
        (3, "name", "unreadable"),
    ]
    status, answer = post(endpoint, [person(0), big])
    assert status == 400, answer
    ((index, reason, message),) = [
        (e["index"], e["reason"], e["message"]) for e in answer["errors"]
    ]
    assert (index, reason) == (1, "too_large") and "more than the" in message
    assert env.changes() == []
    letters = {d["position"].rsplit("#", 1)[1]: d for d in env.dead_letters()}
    assert letters["1"]["reason"] == "too_large" and letters["1"]["truncated"] is True


def test_tokens(env: ConnectorEnv, endpoint: str) -> None:
    assert post(endpoint, person(0), token="wrong")[0] == 401
    assert post(endpoint, person(0), token=None)[0] == 401
    assert post(endpoint, person(0), token="\xff\xfe")[0] == 401  # bytes that are not UTF-8
    status, body = post(endpoint, person(0), token="other-token")
    # Refused without saying whose token it is.
    assert status == 403 and "other" not in body["error"] and env.uid not in body["error"]
    assert env.changes() == []


def test_a_replayed_request_is_refused_and_changes_nothing(
    env: ConnectorEnv, endpoint: str
) -> None:
    older, newer = person(0), {**person(0), "address": "新地址"}
    first = {"X-Request-Id": "req-000000001"}
    assert post(endpoint, older, headers=first)[0] == 202
    assert post(endpoint, newer)[0] == 202
    status, body = post(endpoint, older, headers=first)  # the first request sent again
    assert status == 409 and "already used" in body["error"]
    stale = {"X-Request-Time": f"{time.time() - 3600:.0f}"}
    status, body = post(endpoint, older, headers=stale)  # a request captured an hour ago
    assert status == 409 and "current time" in body["error"]
    assert post(endpoint, older, headers={"X-Request-Id": ""})[0] == 400
    assert post(endpoint, older, headers={"X-Request-Time": ""})[0] == 400
    # Only the two accepted requests were published; the newer address is the last word.
    changes = env.changes()
    addresses = [c.value["after"]["address"] for c in changes if c.value and c.value["after"]]
    assert addresses == [older["address"], "新地址"]


def test_a_failed_request_may_be_sent_again_with_its_id(env: ConnectorEnv, endpoint: str) -> None:
    again = {"X-Request-Id": "req-000000002"}
    bad = {**person(1), "citizen_id": "not an id"}
    assert post(endpoint, bad, headers=again)[0] == 400  # nothing published: the id stays free
    assert post(endpoint, person(1), headers=again)[0] == 202
    assert len(env.changes()) == 1


def test_with_a_certificate_the_endpoint_speaks_https_only(
    env: ConnectorEnv, tls_endpoint: tuple[str, TlsFiles]
) -> None:
    url, files = tls_endpoint
    trusted = ssl.create_default_context(cafile=str(files.ca_cert))
    assert post(url, person(0), context=trusted)[0] == 202
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        post(url, person(1), context=ssl.create_default_context())  # a CA it does not know
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post(url.replace("https://", "http://"), person(2))  # plain HTTP is not spoken
    assert len(env.changes()) == 1
