"""Per-key routing state: which grants hold each key of a source partition, and what they hold.

The state itself is :class:`KeyState` in the compiled kernel (``kernel/src/state.rs``, whose
module documentation says what is kept per key, why that is the minimum, and what it costs);
this module is its Python face: the grant's slot, the hash of a delivery's record as the state
compares it, and :func:`grant_actions`, the rule per grant as a pure function for the core's
path and the tests.

What a change means for one grant, from what the grant held before (``held``: the hash of its
last delivery of the key, or ``None``) and what it would see now:

============================  =====================  ======================
held before                   the change             the grant receives
============================  =====================  ======================
nothing                       outside its filter     nothing
nothing                       inside its filter      a create (whatever the source op)
the key                       a delete, or now       a delete
                              outside its filter
the key, same record hash     inside its filter      nothing (nothing it sees changed)
the key, other record hash    inside its filter      an update
============================  =====================  ======================
"""

from __future__ import annotations

from typing import Literal

import exchange._kernel as _kernel

__all__ = [
    "Action",
    "KeyState",
    "StateBatch",
    "StateChanges",
    "grant_action",
    "record_hash",
    "slot_of",
]

KeyState = _kernel.KeyState
StateBatch = _kernel.StateBatch
StateChanges = _kernel.StateChanges
Action = Literal["c", "u", "d", "skip"]


def slot_of(grant_id: str) -> int:
    """A grant's slot in the state: stable across restarts (rows read back from the changelog
    name the same grants) and never shared by two grant ids in practice (64 bits of SHA-256)."""
    return KeyState.slot(grant_id)


def record_hash(after: bytes) -> int:
    """The hash the state keeps of a delivery's record (its projected, masked ``after`` bytes):
    SipHash-1-3 (a random match is 1 in 2**64; 50-80 ns where SHA-256 took 300, once per grant
    and record)."""
    return KeyState.record_hash(after)


def grant_action(held: int | None, passes: bool, record: int | None) -> tuple[Action, int | None]:
    """What one grant receives of a change, and what it holds afterwards (the table in the
    module documentation); ``record`` is ``None`` for a delete. The kernel's ``transition``
    is the same rule (compared in the unit tests)."""
    if record is None or not passes:
        return ("skip", None) if held is None else ("d", None)
    if held is None:
        return "c", record
    return ("skip", record) if held == record else ("u", record)
