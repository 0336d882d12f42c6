"""Masks that other granted fields undo. Pure; no Kafka.

A ``keep`` mask hides some characters of a value; but a structured identifier repeats other
fields at fixed positions (a GB 11643 citizen ID: region code, birth date, the gender as the
parity of its 17th character) and ends in a check digit. Granting ``citizen_id`` kept first 6 /
last 4 together with ``birth_date`` hid exactly the birth date: all 35 sample IDs were rebuilt.
Here the catalog's :class:`~exchange.catalog.model.Layout` of a field says what it holds, and a
grant whose masked field can be narrowed to fewer than :data:`MIN_CANDIDATES` values, from the
grant's other fields and the check digit, is refused, naming the fields that give it away.

``hash`` masks are HMACs with a salt only the router holds (``routing/salts.py``): a consumer
cannot enumerate them, whatever the input space, so they are not limited here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exchange.catalog.model import CatalogEntry, Layout
from exchange.grants.model import Mask

#: Fewer candidates than this are tried in seconds against anything else the consumer holds
#: (a name, an address, another department's records): the value counts as rebuilt. A
#: citizen ID with only its 3-digit sequence hidden and the check digit shown leaves ~91.
MIN_CANDIDATES = 1000


@dataclass(frozen=True)
class Exposure:
    """How many values a masked field can still have, and which granted fields narrow it."""

    field: str
    candidates: int
    #: Granted fields that give hidden characters away, and whether the check digit helps.
    by: tuple[str, ...]
    check_digit: bool


def exposure(name: str, layout: Layout, mask: Mask, visible: Sequence[str]) -> Exposure:
    """What a ``keep`` mask on ``name`` leaves hidden once the ``visible`` fields are known."""
    hidden = set(range(mask.first, max(mask.first, layout.length - mask.last)))
    sizes = dict.fromkeys(hidden, layout.alphabet)
    by: list[str] = []
    for part in layout.parts:
        if part.source not in visible:
            continue
        covered = hidden.intersection(range(*part.chars))
        if not covered:
            continue
        by.append(part.source)
        for position in covered:
            if part.same_as is not None:
                sizes[position] = 1
            else:  # the parity of a character halves its values
                sizes[position] = min(sizes[position], math.ceil(layout.alphabet / 2))
    check = layout.length - 1
    if layout.check_digit and check in hidden:
        sizes[check] = 1  # computed from the others: it adds no values of its own
    candidates = math.prod(sizes.values()) if sizes else 1
    # Shown, a check digit rules out all but about one candidate in eleven.
    used_check = layout.check_digit and check not in hidden and candidates > 1
    if used_check:
        candidates = max(1, math.ceil(candidates / (layout.alphabet + 1)))
    return Exposure(name, candidates, tuple(dict.fromkeys(by)), used_check)


def rebuild_problems(
    entry: CatalogEntry, fields: Sequence[str], masks: Mapping[str, Mask]
) -> list[str]:
    """Reasons a grant of ``fields`` with the effective ``masks`` gives a masked value away.

    A field counts as visible to the consumer unless it is redacted or hashed: a ``keep`` mask
    on the giving field is assumed to give away what it shows (the safe side)."""
    visible = [f for f in fields if masks.get(f) is None or masks[f].kind == "keep"]
    problems = []
    for name in fields:
        spec = entry.fields.get(name)
        mask = masks.get(name)
        if spec is None or spec.layout is None or mask is None or mask.kind != "keep":
            continue
        layout = spec.layout
        if mask.first + mask.last >= layout.length:
            problems.append(
                f"masks: {name} {mask.describe()} shows all {layout.length} characters; "
                "that is unmasking it (mask none, with a legal_basis)"
            )
            continue
        seen = exposure(name, layout, mask, [f for f in visible if f != name])
        if seen.candidates >= MIN_CANDIDATES:
            continue
        givers = [f"{f} (granted too)" for f in seen.by]
        givers += ["its check digit"] if seen.check_digit else []
        fix = f"redact or hash {', '.join(seen.by)}, or " if seen.by else ""
        problems.append(
            f"masks: {name} {mask.describe()} can be rebuilt from the characters it shows"
            f"{''.join(', ' + g for g in givers)}: {seen.candidates} possible value(s) remain, "
            f"fewer than {MIN_CANDIDATES}; {fix}keep fewer characters of {name}"
        )
    return problems
