"""Two `exchange portal serve` replicas on the real broker, over an isolated catalog, with the
departments of a data-sharing exchange: a provider, a consumer, a bystander and the platform
operator (大数据局)."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.config import ExchangeSettings
from exchange.kafka.control import publish
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.routing.conftest import EXCHANGE, change_value, person, router_command

PASSWORD = "长城-correct-horse-9"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Replica:
    """One `exchange portal serve` process."""

    def __init__(self, exchange_yaml: Path, name: str, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen(
            [
                str(EXCHANGE),
                "--config",
                str(exchange_yaml),
                "portal",
                "serve",
                "--replica",
                name,
                "--port",
                str(self.port),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"portal exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"portal not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class Caller:
    """An HTTP client of one replica as one person (session cookie + CSRF) or system (token).

    The session cookie is ``Secure``; httpx would not send it over plain HTTP, so it is sent
    by hand, as a browser on localhost does."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.session: str | None = None
        self.csrf: str | None = None
        self.token: str | None = None
        self.set_cookie = ""

    def headers(self, csrf: bool = True) -> dict[str, str]:
        out = {}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        if self.session:
            out["Cookie"] = f"exchange_session={self.session}"
        if csrf and self.csrf:
            out["X-CSRF-Token"] = self.csrf
        return out

    def login(self, department: str, username: str, password: str = PASSWORD) -> httpx.Response:
        answer = self.http.post(
            "/api/v1/session",
            json={"department": department, "username": username, "password": password},
        )
        if answer.status_code == 200:
            self.set_cookie = answer.headers["set-cookie"]
            self.session = self.set_cookie.split(";")[0].split("=", 1)[1]
            self.csrf = answer.json()["csrf_token"]
        return answer

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(), **kw)

    def post(self, path: str, json: Any = None, csrf: bool = True) -> httpx.Response:
        return self.http.post(path, json=json, headers=self.headers(csrf))

    def patch(self, path: str, json: Any = None) -> httpx.Response:
        return self.http.patch(path, json=json, headers=self.headers())

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path, headers=self.headers())


class PortalEnv:
    def __init__(self, root: Path) -> None:
        project = self.project = IsolatedProject(Project(root))
        uid = project.uid
        self.provider = uid
        self.consumer = f"{uid}_c"
        self.bystander = f"{uid}_b"
        self.ops = f"{uid}_ops"
        departments = "".join(
            f"  - {{id: {d}, name: 部门{d[-3:]}, level: city, region_code: '140600'}}\n"
            for d in (self.consumer, self.bystander, self.ops)
        )
        project.write(
            "config/departments.yaml",
            "departments:\n"
            f"  - {{id: {uid}, name: 测试公安, level: city, region_code: '140600'}}\n"
            + departments,
        )
        project.edit("config/exchange.yaml", "operators: [dsj]", f"operators: [{self.ops}]")
        # Notices of grants ending are looked for every 2 s (60 s in production).
        with project.exchange_yaml.open("a", encoding="utf-8") as f:
            f.write("portal:\n  notice_check_s: 2\n")
        self.settings: ExchangeSettings = project.settings()
        key = self.settings.resolve(self.settings.audit.key_file or Path("x"))
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(uuid.uuid4().hex * 2 + "\n", encoding="ascii")
        apply_catalog(load_catalog(self.settings).require_valid(), self.settings)
        self.entry = project.entry_id
        # A second config, same topics: its sessions end 3 s after login.
        short = root / "config" / "short.yaml"
        short.write_text(
            project.exchange_yaml.read_text(encoding="utf-8") + "  session_max_s: 3\n",
            encoding="utf-8",
        )
        password = root / "password.txt"
        password.write_text(PASSWORD, encoding="utf-8")
        subprocess.run(
            [
                str(EXCHANGE),
                "--config",
                str(project.exchange_yaml),
                "portal",
                "accounts",
                "add",
                self.ops,
                "root",
                "--roles",
                "operator,admin",
                "--password-file",
                str(password),
            ],
            check=True,
            capture_output=True,
        )
        self.router: subprocess.Popen[bytes] | None = None
        self.r1 = Replica(project.exchange_yaml, f"{uid}-r1", root / "r1.log")
        self.r2 = Replica(short, f"{uid}-r2", root / "r2.log")
        self.r1.wait_ready()
        self.r2.wait_ready()

    def publish_people(self, count: int, region: str = "140602") -> None:
        """``count`` valid people on the entry's source topic, as its provider publishes them."""
        latest = Registry(self.settings.registry).latest(self.project.subject)
        assert latest is not None
        codec = AvroCodec(latest.schema_id, latest.schema)
        rows = [person(5000 + i, region) for i in range(count)]
        records = [(r["citizen_id"], change_value(codec, r, self.provider, "c")) for r in rows]
        publish(self.settings.kafka, self.project.source_topic, records)

    def start_router(self) -> None:
        log = (self.project.root / "router.log").open("ab")
        self.router = subprocess.Popen(
            router_command(self.project.exchange_yaml, f"{self.project.uid}-w1"),
            cwd=self.project.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def caller(self, replica: Replica | None = None) -> Caller:
        return Caller((replica or self.r1).url)

    def person(self, department: str, username: str, replica: Replica | None = None) -> Caller:
        c = self.caller(replica)
        answer = c.login(department, username)
        assert answer.status_code == 200, answer.text
        return c

    def request_body(self, **changes: Any) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        return {
            "entry": self.entry,
            "fields": ["citizen_id", "name", "region_code"],
            "purpose": "data_verification",
            "legal_basis": "测试依据",
            "valid_from": (now - dt.timedelta(minutes=1)).isoformat(),
            "valid_until": (now + dt.timedelta(days=30)).isoformat(),
            **changes,
        }

    def stop(self) -> None:
        self.r1.stop()
        self.r2.stop()
        if self.router is not None and self.router.poll() is None:
            self.router.terminate()
            self.router.wait(timeout=60)


@pytest.fixture(scope="module")
def portal_env(
    platform: ExchangeSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalEnv]:
    root = tmp_path_factory.mktemp("portal")
    shutil.copytree(ROOT / "config", root / "config")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    env = PortalEnv(root)
    yield env
    env.stop()


STAFF: dict[str, list[tuple[str, list[str]]]] = {
    "provider": [
        ("p_admin", ["admin"]),
        ("p_approver", ["approver", "viewer"]),
        ("p_applicant", ["applicant"]),
    ],
    "consumer": [
        ("c_admin", ["admin"]),
        ("c_applicant", ["applicant", "viewer"]),
        ("c_viewer", ["viewer"]),
        ("c_approver", ["approver"]),
    ],
    "bystander": [("b_approver", ["approver", "viewer"]), ("b_admin", ["admin"])],
}


@pytest.fixture(scope="module")
def staffed(portal_env: PortalEnv) -> PortalEnv:
    env = portal_env
    root = env.person(env.ops, "root")
    for side, people in STAFF.items():
        department = getattr(env, side)
        for username, roles in people:
            made = root.post(
                f"/api/v1/departments/{department}/accounts",
                {"username": username, "password": PASSWORD, "roles": roles},
            )
            assert made.status_code == 201, made.text
    return env
