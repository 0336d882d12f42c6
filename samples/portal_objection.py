"""数据质量异议 in the demo: 民政局 objects to a record it received, 公安局 accepts, its next export
fixes the record, the exchange finds the fix, 民政局 confirms.

    python -m samples.portal_objection file URL PASSWORD_FILE ID_FILE
    python -m samples.portal_objection close URL PASSWORD_FILE ID_FILE

``file``: the platform operator (dsj/root) issues 民政局 a system token; 民政局's system reads
its deliveries with the SDK and objects, through the portal with that token, to the name of
许桂红's record (its citizen ID arrives masked, 140602********0011: the grant allows no more);
公安局's approver (gongan/li) finds it in the inbox, investigates and accepts. The objection's id
goes to ID_FILE. ``close`` (after 公安局's connector published the corrected export): waits until
the exchange marks it fixed, then 民政局's applicant (mzj/wang) confirms; prints every step.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from exchange.client import Change, DeliveryConsumer, PortalClient
from exchange.config import load_settings
from samples.portal_request import Session

ENTRY = "gongan.resident_population"
#: 许桂红 as 民政局's grant delivers her: citizen ID kept 6+4, name masked but for its ends.
ID_ENDS = ("140602", "0011")


def _token(url: str, password: str) -> str:
    root = Session(url, "dsj", "root", password)
    issued = root.call(
        "POST",
        "/api/v1/departments/mzj/tokens",
        {"name": "民政局低保核查系统", "roles": ["applicant"], "days": 1},
    )
    return str(issued["token"])


def _is_her(change: Change[Any]) -> bool:
    value = change.value or {}
    cid = str(value.get("citizen_id") or "")
    return cid.startswith(ID_ENDS[0]) and cid.endswith(ID_ENDS[1]) and change.op != "d"


def file(url: str, password: str, id_file: Path) -> int:
    portal = PortalClient(url, _token(url, password))
    found: list[Change[Any]] = []
    settings = load_settings()
    consumer: DeliveryConsumer[Any] = DeliveryConsumer(
        settings, "mzj", [ENTRY], group_id=f"mzj.quality-demo-{int(time.time())}", portal=portal
    )
    with consumer:
        consumer.run(lambda c: found.append(c) if _is_her(c) else None, idle_timeout_s=15)
        if not found:
            raise SystemExit("mzj received no record of 140602********0011")
        record = found[-1]
        filed = consumer.file_objection(
            record, ["name"], "姓名用字与户籍档案不符：应为“许桂虹”", "户籍档案 朔城区 2026-118"
        )
    print(f"mzj's system objected to {record.value}: {filed['id']} {filed['state']}")
    li = Session(url, "gongan", "li", password)
    told = [n for n in li.call("GET", "/api/v1/notices") if n.get("objection_id") == filed["id"]]
    print(f"gongan/li's notices: {told[0]['text'] if told else 'NONE'}")
    li.call("POST", f"/api/v1/objections/{filed['id']}/investigate", {})
    accepted = li.call(
        "POST", f"/api/v1/objections/{filed['id']}/accept", {"note": "核实确有错字，下次导出更正"}
    )
    print(f"gongan/li investigated and accepted it: {accepted['state']}")
    id_file.write_text(filed["id"], encoding="utf-8")
    return 0 if accepted["state"] == "accepted" and told else 1


def close(url: str, password: str, id_file: Path) -> int:
    oid = id_file.read_text(encoding="utf-8").strip()
    wang = Session(url, "mzj", "wang", password)
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        state = wang.call("GET", f"/api/v1/objections/{oid}")["state"]
        if state == "fixed":
            break
        time.sleep(1)
    if state != "fixed":
        raise SystemExit(f"{oid} is {state}, not fixed, 2 minutes after the corrected export")
    done = wang.call("POST", f"/api/v1/objections/{oid}/confirm", {})
    for step in done["history"]:
        print(f"  {step['at'][:19]}  {step['state']:<13} {step['by']:<22} {step['note']}")
    return 0 if done["state"] == "confirmed" else 1


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("file", "close"):
        raise SystemExit(__doc__)
    action = file if sys.argv[1] == "file" else close
    password = Path(sys.argv[3]).read_text(encoding="utf-8").strip()
    sys.exit(action(sys.argv[2], password, Path(sys.argv[4])))
