"""Types of the compiled routing kernel (``kernel/src/``, built by ``pip install``)."""

from typing import Any

class ProduceError(Exception):
    """librdkafka refused a delivery: ``args`` are ``(code, name, text, fatal, retriable,
    txn_requires_abort)``."""

class NativeProducer:
    """A confluent-kafka producer's librdkafka handle (``exchange.kafka.native.attach``)."""

    def __init__(self, producer: Any, library: str, name_prefix: str, version: int) -> None: ...

class Deliveries:
    """One topic's deliveries of a batch, in order, held in Rust until produced."""

    @staticmethod
    def from_columns(
        keys: list[bytes | None],
        values: list[bytes | None],
        partitions: list[int],
        headers: dict[int, list[tuple[str, bytes | None]]],
    ) -> Deliveries: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[bytes | None]: ...
    def values(self) -> list[bytes | None]: ...
    def partitions(self) -> list[int]: ...
    def headers(self) -> dict[int, list[tuple[str, bytes | None]]]: ...
    def produce(self, producer: NativeProducer, topic: str, start: int) -> int: ...

class Feed:
    """Some deliveries of one ``Deliveries`` buffer, in the order they feed a receipt's digest."""

    def __len__(self) -> int: ...

class ReceiptDigest:
    """A receipt's running SHA-256, fed bytes laid out as the digest input, or a ``Feed``."""

    def __init__(self) -> None: ...
    def update(self, data: bytes | Feed) -> None: ...
    def hexdigest(self) -> str: ...

class EntryKernel:
    def __init__(self, grants: int, max_input: int = ...) -> None: ...
    def add_reader(self, schema_id: int, spec: tuple[Any, ...] | None = None) -> None: ...
    def missing(self, messages: list[Any]) -> list[int]: ...
    def route(
        self,
        topic: str,
        messages: list[Any],
        starts: list[dict[int, int]],
        today: int,
    ) -> tuple[
        list[int],
        list[int],
        list[tuple[Deliveries, list[tuple[int, int, int, int, int, Feed, list[int]]], int]],
        list[tuple[int, int]],
    ]: ...

def partition_runs(messages: list[Any]) -> list[tuple[str, int, int, int, list[Any]]]: ...
