"""Producing a batch's deliveries through librdkafka itself, beside confluent-kafka.

confluent-kafka's ``produce`` costs about 0.7 µs a message with the GIL held, of which librdkafka's
own work is 0.33 (measured in C on the same library); the router makes three deliveries per
source record with three grants, so it spent most of its time there. The compiled kernel
(``kernel/src/deliveries.rs``) keeps a batch's deliveries in one buffer and hands them to
``rd_kafka_produceva`` on the *same* ``rd_kafka_t`` as the confluent-kafka producer, without
the GIL: they join that producer's transactions and its flush, commit and delivery-error
handling see them as their own.

To do that it reads the handle out of the Python producer object and opens the librdkafka that
confluent-kafka loaded. Both are checked here before use (the library's version against
confluent-kafka's, the handle's type and name against the producer's ``client.id``); when any
check fails the caller produces through confluent-kafka as before, and says why once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import confluent_kafka

from exchange._kernel import NativeProducer

__all__ = ["attach", "librdkafka_path"]

log = logging.getLogger(__name__)

#: confluent-kafka majors whose producer object starts with the librdkafka handle (checked
#: against its source, ``src/confluent_kafka/src/confluent_kafka.h``, for 2.x).
KNOWN_MAJORS = frozenset({"2"})
_MAPS = Path("/proc/self/maps")
#: librdkafka's C library as wheels (auditwheel: a hash in the name) and systems name it; not
#: librdkafka++.
LIBRARY = re.compile(r"librdkafka(-[0-9a-f]+)?\.so[.0-9]*")


def librdkafka_path(maps: Path = _MAPS) -> str | None:
    """The file of the librdkafka confluent-kafka loaded into this process, if one is: the one
    in confluent-kafka's own folder (its wheels bundle it), else the only one loaded (a build
    against the system's); ``None`` when it cannot tell."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    found = set()
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and LIBRARY.fullmatch(Path(parts[5]).name):
            found.add(parts[5])
    package = str(Path(confluent_kafka.__file__).parent.parent)
    bundled = sorted(f for f in found if f.startswith(package))
    if len(bundled) == 1:
        return bundled[0]
    return found.pop() if len(found) == 1 else None


def attach(producer: Any, client_id: str) -> NativeProducer | None:
    """A native face of ``producer`` (a ``confluent_kafka.Producer`` made with ``client_id``),
    or ``None`` with a warning saying why deliveries go through confluent-kafka instead."""
    reason = _unsupported(producer)
    if reason is None:
        path = librdkafka_path()
        if path is None:
            reason = "no single librdkafka of confluent-kafka's in this process's memory map"
        else:
            version = confluent_kafka.libversion()[1]
            try:
                return NativeProducer(producer, path, f"{client_id}#producer-", version)
            except ValueError as exc:
                reason = str(exc)
    log.warning("deliveries go through confluent-kafka's produce (slower): %s", reason)
    return None


def _unsupported(producer: Any) -> str | None:
    major = confluent_kafka.version()[0].split(".")[0]
    if major not in KNOWN_MAJORS:
        return f"confluent-kafka {confluent_kafka.version()[0]} is not a version checked for it"
    if not isinstance(producer, confluent_kafka.Producer):
        return f"{type(producer).__name__} is not a confluent_kafka.Producer"
    return None
