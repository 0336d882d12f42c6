"""The portal under load: 200 people browsing a 1,000-entry catalog and listing grants.

    .venv/bin/python -m bench.portal_load [--sessions 200] [--entries 1000] [--seconds 60]

An isolated catalog of ``--entries`` entries and 20 departments, 5 grants requested by each
department, two ``exchange portal serve`` replicas. ``--sessions`` people (10 per department)
log in (spread over 30 s; reported apart), then browse like a person: a page, a pause of
0.5-1.5 s, the next page, spread over the two replicas in turn. Pages: the catalog's first
page, a search by a Chinese word, a later page, an entry, and the department's grants (HTML,
as a browser gets them). Reported: requests per second, and latency p50/p99 of the pages,
against the same sessions asking for ``/api/v1/health`` at the same pace in the same run (the
framework's floor on this machine).
**Target: pages p99 <= 200 ms.** The load generator runs on the same 2 cores.

Needs the local platform (``exchange dev up``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import Catalog, load_catalog
from exchange.grants.model import GrantRequest
from exchange.portal.model import Principal
from exchange.portal.service import Portal
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.portal.conftest import PASSWORD, Replica

DEPARTMENTS = 20


def setup(work: Path, entries: int) -> tuple[IsolatedProject, list[str]]:
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "schemas", work / "schemas")
    project = IsolatedProject(Project(work))
    uid = project.uid
    departments = [f"{uid}_d{i:02d}" for i in range(DEPARTMENTS)]
    project.write(
        "config/departments.yaml",
        "departments:\n"
        f"  - {{id: {uid}, name: 测试公安, level: city, region_code: '140600'}}\n"
        + "".join(
            f"  - {{id: {d}, name: 部门{i}, level: city, region_code: '140600'}}\n"
            for i, d in enumerate(departments)
        ),
    )

    def _provider(n: int) -> str:
        return departments[n % DEPARTMENTS] if n % 4 else uid

    project.write(
        f"config/catalog/{uid}.yaml",
        "entries:\n"
        + "".join(
            f"  - id: {_provider(n)}.e{n:04d}\n"
            f"    title: 人口基础信息{n}\n"
            f"    provider: {_provider(n)}\n"
            f"    schema: {uid}/people.avsc\n"
            "    key: citizen_id\n"
            f"    sharing: {'conditional' if n % 3 else 'unconditional'}\n"
            f"    update_cycle: {('daily', 'weekly', 'monthly', 'realtime')[n % 4]}\n"
            "    fields:\n"
            "      citizen_id: {sensitivity: sensitive}\n"
            for n in range(entries)
        ),
    )
    project.edit("config/exchange.yaml", "operators: [dsj]", f"operators: [{uid}]")
    settings = project.settings()
    key = settings.resolve(settings.audit.key_file or Path("x"))
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(uuid.uuid4().hex * 2 + "\n", encoding="ascii")
    catalog = load_catalog(settings).require_valid()
    # The control topics only: the portal lists the catalog from the configuration, and 1,000
    # entries' source topics and schemas would only make the set-up slower.
    apply_catalog(Catalog(departments=catalog.departments, entries={}), settings)
    print(f"  catalog: {entries:,} entries, {DEPARTMENTS} departments", flush=True)
    portal = Portal(settings, catalog, "bench-setup")
    portal.start()
    try:
        for d in departments:
            portal.create_account(None, d, "staff", PASSWORD, ["applicant", "viewer"])
        now = dt.datetime.now(dt.UTC)
        for i, d in enumerate(departments):
            applicant = Principal(
                kind="person", department=d, name=f"{d}/staff", roles=frozenset({"applicant"})
            )
            for k in range(5):
                entry = sorted(catalog.entries)[(i * 37 + k * 101) % entries]
                if catalog.entries[entry].entry.provider == d:
                    continue
                request = GrantRequest.model_validate(
                    {
                        "consumer": d,
                        "entry": entry,
                        "fields": ["citizen_id", "region_code"],
                        "purpose": "data_verification",
                        "legal_basis": "测试依据",
                        "valid_from": now - dt.timedelta(minutes=1),
                        "valid_until": now + dt.timedelta(days=30),
                    }
                )
                portal.request(applicant, request)
    finally:
        portal.stop()
    print("  accounts and grants written", flush=True)
    return project, departments


def pages(entries: list[str]) -> list[Callable[[], str]]:
    return [
        lambda: "/catalog",
        lambda: "/catalog?q=人口基础信息1",
        lambda: f"/catalog?p={random.randint(2, max(2, len(entries) // 50))}",
        lambda: f"/catalog/{random.choice(entries)}",
        lambda: "/grants",
    ]


async def person(
    urls: list[str],
    department: str,
    paths: list[Callable[[], str]],
    measure_from: float,
    until: float,
    out: dict[str, list[float]],
    start_after: float,
    think: float,
) -> None:
    await asyncio.sleep(start_after)
    async with httpx.AsyncClient(timeout=30) as http:
        begun = time.perf_counter()
        login = await http.post(
            f"{urls[0]}/api/v1/session",
            json={"department": department, "username": "staff", "password": PASSWORD},
        )
        login.raise_for_status()
        out["login"].append(time.perf_counter() - begun)
        cookie = login.headers["set-cookie"].split(";")[0]
        headers = {"Cookie": cookie}
        n = 0
        while time.monotonic() < until:
            url = urls[n % len(urls)]
            n += 1
            kind = "health" if n % 2 else "page"
            path = "/api/v1/health" if kind == "health" else random.choice(paths)()
            begun = time.perf_counter()
            answer = await http.get(url + path, headers=headers)
            took = time.perf_counter() - begun
            if answer.status_code != 200:
                raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
            # Logging in (argon2id, about 0.1 s of CPU each) happens in the ramp; browsing is
            # measured once everyone is in.
            if time.monotonic() >= measure_from:
                out[kind].append(took)
            await asyncio.sleep(random.uniform(0.5, 1.5) * think)


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


async def load(
    urls: list[str],
    departments: list[str],
    entries: list[str],
    sessions: int,
    seconds: float,
    think: float,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"page": [], "health": [], "login": []}
    ramp = 30.0
    measure_from = time.monotonic() + ramp + 5
    until = measure_from + seconds
    paths = pages(entries)
    people = [
        person(
            urls,
            departments[i % len(departments)],
            paths,
            measure_from,
            until,
            out,
            ramp * i / sessions,
            think,
        )
        for i in range(sessions)
    ]
    await asyncio.gather(*people)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--think", type=float, default=1.0, help="Mean pause between pages (0: as fast as served)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project, departments = setup(work, args.entries)
        entries = sorted(load_catalog(project.settings()).catalog.entries)
        replicas = [
            Replica(project.exchange_yaml, f"{project.uid}-r{i}", work / f"r{i}.log")
            for i in (1, 2)
        ]
        try:
            for r in replicas:
                r.wait_ready()
            print(f"  {args.sessions} sessions for {args.seconds:.0f} s ...", flush=True)
            begun = time.monotonic()
            urls = [r.url for r in replicas]
            out = asyncio.run(
                load(urls, departments, entries, args.sessions, args.seconds, args.think)
            )
            took = time.monotonic() - begun
        finally:
            for r in replicas:
                r.stop()
    report(out, took, args)


def report(out: dict[str, list[float]], took: float, args: Any) -> None:
    print(
        f"sessions {args.sessions}, catalog {args.entries:,} entries, think {args.think:g} s, "
        f"{took:.0f} s"
    )
    browsing = len(out["page"]) + len(out["health"])
    print(f"measured: {browsing:,} requests, {browsing / args.seconds:.0f}/s")
    print("| requests | count | p50 (ms) | p99 (ms) |")
    print("|---|---:|---:|---:|")
    for kind in ("page", "health", "login"):
        values = out[kind]
        p50, p99 = _p(values, 0.5) * 1000, _p(values, 0.99) * 1000
        print(f"| {kind} | {len(values):,} | {p50:.0f} | {p99:.0f} |")


if __name__ == "__main__":
    main()
