"""Types of the compiled routing kernel (``kernel/src/lib.rs``, built by ``pip install``)."""

from typing import Any

class EntryKernel:
    def __init__(self, grants: int) -> None: ...
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
        list[
            tuple[
                list[bytes | None],
                list[bytes | None],
                list[int],
                dict[int, Any],
                list[tuple[int, int, int, int, int, bytes, list[int]]],
                int,
            ]
        ],
        list[tuple[int, int]],
    ]: ...

def partition_runs(messages: list[Any]) -> list[tuple[str, int, int, int, list[Any]]]: ...
