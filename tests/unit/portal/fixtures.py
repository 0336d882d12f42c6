"""Principals for the portal's unit tests (factories, not constants)."""

from __future__ import annotations

from exchange.portal.model import Principal, Role


def person(department: str, *roles: Role, name: str | None = None) -> Principal:
    return Principal(
        kind="person",
        department=department,
        name=name or f"{department}/someone",
        roles=frozenset(roles),
        csrf_hash="0" * 64,
        session_key="k",
    )


def system(department: str, *roles: Role) -> Principal:
    return Principal(
        kind="token", department=department, name=f"token:{department}", roles=frozenset(roles)
    )
