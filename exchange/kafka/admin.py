"""Topics: the pure plan of what to change, and the admin calls that carry it out."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

# confluent-kafka's admin package does not declare these in __all__, hence the ignore.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from exchange.config.settings import KafkaSettings
from exchange.kafka.errors import KafkaOpError


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicState:
    partitions: int
    config: Mapping[str, str]


@dataclass(frozen=True)
class TopicChange:
    topic: str
    action: str  # "create" | "update" | "unchanged"
    details: tuple[str, ...] = ()
    spec: TopicSpec | None = None
    add_partitions_to: int | None = None
    set_config: Mapping[str, str] = field(default_factory=dict)


#: Metadata records one CreateTopics call may make: half of the 10,000 beyond which a KRaft
#: controller refuses a request ("excessively large batch operation"), since the exact count per
#: topic is the controller's business. We count a record per topic, per partition and per
#: config entry.
CREATE_RECORDS_PER_CALL = 5_000
#: Topics one CreateTopics call may make: the broker creates them within one request timeout.
CREATE_TOPICS_PER_CALL = 500


def creation_batches(specs: Iterable[TopicSpec]) -> list[list[TopicSpec]]:
    """``specs`` in groups the controller accepts in one call each, in their order."""
    batches: list[list[TopicSpec]] = []
    size = 0
    for spec in specs:
        records = 1 + spec.partitions + len(spec.config)
        if (
            not batches
            or size + records > CREATE_RECORDS_PER_CALL
            or len(batches[-1]) >= CREATE_TOPICS_PER_CALL
        ):
            batches.append([])
            size = 0
        batches[-1].append(spec)
        size += records
    return batches


class TopicPlanError(KafkaOpError):
    """The wanted topic layout cannot be reached (e.g. fewer partitions than exist)."""


def plan_topics(
    wanted: Iterable[TopicSpec], existing: Mapping[str, TopicState]
) -> list[TopicChange]:
    """What must change so that every wanted topic exists as specified. Pure; no Kafka."""
    changes = []
    for spec in wanted:
        state = existing.get(spec.name)
        if state is None:
            changes.append(TopicChange(spec.name, "create", ("new topic",), spec=spec))
            continue
        details = []
        grow = None
        if spec.partitions < state.partitions:
            raise TopicPlanError(
                f"topic {spec.name} has {state.partitions} partitions; Kafka cannot reduce them "
                f"to {spec.partitions} (raise partitions in the catalog, or recreate the topic)",
                code="INVALID_PARTITIONS",
            )
        if spec.partitions > state.partitions:
            grow = spec.partitions
            details.append(f"partitions {state.partitions} -> {spec.partitions}")
        diff = {k: v for k, v in spec.config.items() if state.config.get(k) != v}
        details.extend(f"{k}: {state.config.get(k)} -> {v}" for k, v in sorted(diff.items()))
        if details:
            changes.append(TopicChange(spec.name, "update", tuple(details), spec, grow, diff))
        else:
            changes.append(TopicChange(spec.name, "unchanged"))
    return changes


class Admin:
    """The few admin operations the project needs, with errors that carry librdkafka codes."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._timeout = settings.request_timeout_s
        self._admin = AdminClient(settings.client_config())

    def topic_states(self, names: Iterable[str]) -> dict[str, TopicState]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise KafkaOpError.wrap("cannot read cluster metadata", exc) from exc
        present = [n for n in names if n in metadata.topics]
        if not present:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in present]
        configs = self._wait(self._admin.describe_configs(resources), "describe topic configs")
        out = {}
        for resource, entries in configs.items():
            out[resource.name] = TopicState(
                partitions=len(metadata.topics[resource.name].partitions),
                config={k: str(v.value) for k, v in entries.items()},
            )
        return out

    def apply(self, changes: Iterable[TopicChange], exist_ok: bool = False) -> None:
        """Make the changes; with ``exist_ok`` a topic created meanwhile by another process
        (two router workers starting together) is not an error."""
        changes = list(changes)
        specs = [c.spec for c in changes if c.action == "create" and c.spec is not None]
        for batch in creation_batches(specs):
            new = [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in batch
            ]
            self._wait(
                self._admin.create_topics(new, operation_timeout=self._timeout),
                "create topics",
                ignore={KafkaError.TOPIC_ALREADY_EXISTS} if exist_ok else set(),
            )
        grow = [NewPartitions(c.topic, c.add_partitions_to) for c in changes if c.add_partitions_to]
        if grow:
            self._wait(self._admin.create_partitions(grow), "add partitions")
        alter = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                c.topic,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in c.set_config.items()
                ],
            )
            for c in changes
            if c.set_config
        ]
        if alter:
            self._wait(self._admin.incremental_alter_configs(alter), "alter topic configs")

    def delete_topics(self, topics: Iterable[str]) -> None:
        """Delete the topics; one deleted meanwhile (by another router worker) is no error."""
        names = sorted(set(topics))
        if names:
            self._wait(
                self._admin.delete_topics(names, operation_timeout=self._timeout),
                "delete topics",
                ignore={KafkaError.UNKNOWN_TOPIC_OR_PART},
            )

    # -- observing (monitor, status) -------------------------------------------------------

    def partition_counts(self) -> dict[str, int]:
        """Every topic of the cluster and its number of partitions."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise KafkaOpError.wrap("cannot read cluster metadata", exc) from exc
        return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}

    def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The end offset of each partition, in one request per broker."""
        # confluent-kafka leaves OffsetSpec's factories untyped.
        return self._list_offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def start_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The first offset still held (after retention) of each partition."""
        return self._list_offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def last_write_ms(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """When each partition's newest record was written (ms; KIP-734's max-timestamp
        offset spec: no record is read, DESCRIBE suffices); partitions with none are left out."""
        spec = OffsetSpec.max_timestamp()  # type: ignore[no-untyped-call]
        return {
            tp: ts for tp, (_offset, ts) in self._offsets_at(partitions, spec).items() if ts >= 0
        }

    def offsets_at_time(
        self, partitions: Iterable[tuple[str, int]], ms: int
    ) -> dict[tuple[str, int], int]:
        """Each partition's first offset whose record is stamped at or after ``ms``; -1 where
        none is (every record is older)."""
        spec = OffsetSpec.for_timestamp(ms)
        return self._list_offsets(partitions, spec)

    def _list_offsets(
        self, partitions: Iterable[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        return {tp: offset for tp, (offset, _ts) in self._offsets_at(partitions, spec).items()}

    def _offsets_at(
        self, partitions: Iterable[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], tuple[int, int]]:
        wanted = {TopicPartition(t, p): spec for t, p in partitions}
        if not wanted:
            return {}
        found = self._wait(
            self._admin.list_offsets(wanted, request_timeout=self._timeout), "list offsets"
        )
        return {
            (tp.topic, tp.partition): (int(info.offset), int(info.timestamp))
            for tp, info in found.items()
        }

    def consumer_groups(self) -> list[str]:
        future = self._admin.list_consumer_groups(request_timeout=self._timeout)
        result = self._wait({"consumer groups": future}, "list consumer groups")["consumer groups"]
        return sorted(g.group_id for g in result.valid)

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """What ``group`` has committed, per partition (partitions without a commit left out)."""
        futures = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout
        )
        result = self._wait(futures, f"read offsets of group {group}")[group]
        return {
            (tp.topic, tp.partition): int(tp.offset)
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def group_members(self, group: str) -> int:
        """How many members ``group`` has now (0 when it is empty or unknown)."""
        futures = self._admin.describe_consumer_groups([group], request_timeout=self._timeout)
        return len(self._wait(futures, f"describe group {group}")[group].members or [])

    def group_member_hosts(self, group: str) -> list[tuple[str, str]]:
        """``(client id, host)`` of each member of ``group`` now, as the broker saw them."""
        futures = self._admin.describe_consumer_groups([group], request_timeout=self._timeout)
        members = self._wait(futures, f"describe group {group}")[group].members or []
        return sorted((m.client_id, m.host.lstrip("/")) for m in members)

    # -- security (ACLs and SCRAM credentials) ----------------------------------------------

    def acls(self) -> list[AclBinding]:
        """Every ACL on the cluster."""
        # None matches any name, principal and host; the client's stubs say str.
        anything: Any = None
        everything = AclBindingFilter(
            ResourceType.ANY,
            anything,
            ResourcePatternType.ANY,
            anything,
            anything,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        future = self._admin.describe_acls(everything, request_timeout=self._timeout)
        return list(self._wait({"acls": future}, "describe ACLs")["acls"])

    def create_acls(self, bindings: list[AclBinding]) -> None:
        if bindings:
            self._wait(
                self._admin.create_acls(bindings, request_timeout=self._timeout), "create ACLs"
            )

    def delete_acls(self, bindings: list[AclBinding]) -> None:
        """Delete exactly these ACLs (each binding is used as its own exact filter)."""
        if bindings:
            filters = [
                AclBindingFilter(
                    b.restype,
                    b.name,
                    b.resource_pattern_type,
                    b.principal,
                    b.host,
                    b.operation,
                    b.permission_type,
                )
                for b in bindings
            ]
            self._wait(
                self._admin.delete_acls(filters, request_timeout=self._timeout), "delete ACLs"
            )

    def upsert_scram(self, user: str, password: str, mechanism: str, iterations: int) -> None:
        """Create or replace ``user``'s SCRAM credential (the broker stores only a salted hash)."""
        info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], iterations)
        upsert: UserScramCredentialAlteration = UserScramCredentialUpsertion(
            user, info, password.encode("utf-8")
        )
        futures = self._admin.alter_user_scram_credentials([upsert], request_timeout=self._timeout)
        self._wait(futures, f"set SCRAM credentials of {user}")

    def scram_users(self) -> dict[str, list[str]]:
        """Users with SCRAM credentials and their mechanisms."""
        future = self._admin.describe_user_scram_credentials(request_timeout=self._timeout)
        # Without users named, the client returns one future for all of them.
        described = self._wait({"users": future}, "describe SCRAM users")["users"]
        return {
            user: sorted(c.mechanism.name for c in d.scram_credential_infos)
            for user, d in described.items()
        }

    def _wait(
        self, futures: Mapping[Any, Any], what: str, ignore: Container[int] = ()
    ) -> dict[Any, Any]:
        results: dict[Any, Any] = {}
        failures: list[tuple[Any, BaseException]] = []
        for key, future in futures.items():
            try:
                results[key] = future.result(timeout=self._timeout)
            # concurrent.futures.TimeoutError is the builtin TimeoutError on 3.11.
            except (KafkaException, TimeoutError) as exc:
                err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
                if isinstance(err, KafkaError) and err.code() in ignore:
                    continue
                failures.append((key, exc))
        if failures:
            key, cause = failures[0]
            name = getattr(key, "name", key)
            err = KafkaOpError.wrap(f"{what} failed for {name}", cause)
            if len(failures) > 1:
                err.message += f" (and {len(failures) - 1} more)"
            raise err from cause
        return results
