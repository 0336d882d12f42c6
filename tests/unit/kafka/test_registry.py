"""The registry client against a scripted HTTP server: paths, bodies, errors, retries, keep-alive.

The integration tests run the same client against Apicurio; these pin down what the real
registry cannot be made to do on demand (503s, dropped connections).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from exchange.config.settings import RegistrySettings
from exchange.kafka import registry as registry_module
from exchange.kafka.errors import RegistryError
from exchange.kafka.registry import Registry, refusal, retry_wait_s

Answer = tuple[int, Any]


@dataclass
class Script:
    """What the fake registry answers, in order, and what it was asked."""

    answers: list[Answer | Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real registry

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            script.seen.append((self.command, self.path, dict(self.headers), body))
            script.connections.add(self.client_address[1])  # the client's port
            answer = script.answers.pop(0)
            if callable(answer):
                answer(self)
                return
            status, data = answer
            raw = json.dumps(data).encode() if not isinstance(data, bytes) else data
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server's names)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def served() -> Iterator[tuple[Script, RegistrySettings]]:
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
    yield script, RegistrySettings(url=url, timeout_s=2)
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module.time, "sleep", lambda s: None)


def test_calls_use_confluents_paths_and_bodies(served: tuple[Script, RegistrySettings]) -> None:
    script, settings = served
    schema = json.dumps({"type": "record", "name": "R", "fields": []})
    script.answers += [
        (200, {"subject": "a/b", "version": 3, "id": 7, "schema": schema}),
        (200, {"schema": schema}),
        (200, {"id": 8}),
        (200, {"subject": "a/b", "id": 8, "version": 4, "schema": schema}),
        (200, {"is_compatible": True}),
        (200, {"compatibilityLevel": "FULL"}),
        (200, {"compatibility": "FULL"}),
    ]
    reg = Registry(settings)
    latest = reg.latest("a/b")
    assert latest is not None and (latest.version, latest.schema_id) == (3, 7)
    assert latest.schema["name"] == "R"
    assert reg.schema_by_id(7)["name"] == "R"
    assert reg.register("a/b", schema) == 8
    assert reg.lookup("a/b", schema) == 8
    assert reg.is_compatible("a/b", schema) is True
    assert reg.compatibility("a/b") == "FULL"
    reg.set_compatibility("a/b", "full")
    asked = [(m, p, b) for m, p, _, b in script.seen]
    avro = {"schema": schema, "schemaType": "AVRO"}
    assert asked == [
        ("GET", "/apis/ccompat/v7/subjects/a%2Fb/versions/latest", None),
        ("GET", "/apis/ccompat/v7/schemas/ids/7", None),
        ("POST", "/apis/ccompat/v7/subjects/a%2Fb/versions", avro),
        ("POST", "/apis/ccompat/v7/subjects/a%2Fb", avro),
        ("POST", "/apis/ccompat/v7/compatibility/subjects/a%2Fb/versions/latest", avro),
        ("GET", "/apis/ccompat/v7/config/a%2Fb", None),
        ("PUT", "/apis/ccompat/v7/config/a%2Fb", {"compatibility": "FULL"}),
    ]
    assert len(script.connections) == 1, "one kept-alive connection for the thread"
    reg.close()


def test_not_found_is_none_for_optional_reads(served: tuple[Script, RegistrySettings]) -> None:
    script, settings = served
    script.answers += [
        (404, {"error_code": 40401, "message": "Subject 'x' not found."}),
        (404, {"error_code": 40403, "message": "Schema not found"}),
        (404, {"error_code": 40408, "message": "no compatibility level"}),
    ]
    reg = Registry(settings)
    assert reg.latest("x") is None
    assert reg.lookup("x", "{}") is None
    assert reg.compatibility("x") is None


def test_errors_say_what_was_asked_and_carry_the_codes(
    served: tuple[Script, RegistrySettings],
) -> None:
    script, settings = served
    script.answers.append((409, {"error_code": 409, "message": "Schema being registered is bad"}))
    with pytest.raises(RegistryError) as err:
        Registry(settings).register("s-value", "{}")
    assert "cannot register schema under s-value: Schema being registered is bad" in str(err.value)
    assert (err.value.http_status, err.value.error_code, err.value.code) == (409, 409, "409/409")


def test_busy_answers_are_asked_again_then_reported(
    served: tuple[Script, RegistrySettings],
) -> None:
    script, settings = served
    script.answers += [(503, b"down for a moment"), (502, b""), (200, {"schema": "{}"})]
    assert Registry(settings).schema_by_id(1) == {}
    script.answers += [(503, b"still down")] * 4
    with pytest.raises(RegistryError) as err:
        Registry(settings).schema_by_id(1)
    assert err.value.http_status == 503 and "HTTP 503: still down" in str(err.value)
    assert len(script.seen) == 3 + 4, "retries = 3 after the first try"


def test_a_connection_the_server_dropped_is_replaced_at_once(
    served: tuple[Script, RegistrySettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    script, settings = served
    slept: list[float] = []
    monkeypatch.setattr(registry_module.time, "sleep", slept.append)

    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True

    script.answers += [(200, {"schema": "{}"}), hang_up, (200, {"schema": "{}"})]
    reg = Registry(settings)
    reg.schema_by_id(1)
    assert reg.schema_by_id(2) == {}
    assert slept == [], "a stale keep-alive connection is not a registry failure"
    assert len(script.connections) == 2


def test_a_registry_that_is_not_there_names_the_url() -> None:
    settings = RegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7", timeout_s=1, retries=0)
    with pytest.raises(RegistryError) as err:
        Registry(settings).latest("x")
    assert "schema registry at http://127.0.0.1:9/apis/ccompat/v7" in str(err.value)
    assert "registry.url" in str(err.value)


def test_basic_auth_is_sent(served: tuple[Script, RegistrySettings], tmp_path: Path) -> None:
    script, settings = served
    (tmp_path / "pw").write_text("s3cret\n")
    settings = settings.model_copy(update={"username": "op", "password_file": tmp_path / "pw"})
    script.answers.append((200, {"schema": "{}"}))
    Registry(settings).schema_by_id(1)
    assert script.seen[0][2]["Authorization"] == "Basic b3A6czNjcmV0"  # op:s3cret


def test_a_body_that_is_not_json_is_an_error(served: tuple[Script, RegistrySettings]) -> None:
    script, settings = served
    script.answers.append((200, b"<html>proxy login</html>"))
    with pytest.raises(RegistryError, match="not JSON"):
        Registry(settings).schema_by_id(1)


def test_refusal_reads_confluent_errors_and_anything_else() -> None:
    parsed = refusal(422, b'{"error_code": 42201, "message": "Invalid schema"}')
    assert (parsed.status, parsed.error_code, parsed.message) == (422, 42201, "Invalid schema")
    other = refusal(500, b"Internal Server Error")
    assert other.error_code is None and other.message == "HTTP 500: Internal Server Error"


def test_retry_waits_double_up_to_twenty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module.random, "random", lambda: 1.0)
    assert [retry_wait_s(a) for a in range(7)] == [1, 2, 4, 8, 16, 20, 20]


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        RegistrySettings(cert_file=Path("c.pem"))


def test_unreadable_tls_files_are_named(tmp_path: Path) -> None:
    settings = RegistrySettings(url="https://reg:8081", ca_file=tmp_path / "nowhere.pem")
    with pytest.raises(RegistryError, match=r"registry\.ca_file"):
        Registry(settings)


def test_the_subjects_of_a_schema_id(served: tuple[Script, RegistrySettings]) -> None:
    script, settings = served
    script.answers += [
        (200, [{"subject": "src.a-value", "version": 1}, {"subject": "src.b-value", "version": 3}]),
        (404, {"error_code": 40403, "message": "Schema 9 not found"}),
    ]
    reg = Registry(settings)
    assert reg.subjects_of(5) == {"src.a-value", "src.b-value"}
    assert reg.subjects_of(9) == set()
    assert script.seen[0][1] == "/apis/ccompat/v7/schemas/ids/5/versions"
