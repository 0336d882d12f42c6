import pytest

from exchange.kafka.admin import (
    CREATE_RECORDS_PER_CALL,
    TopicPlanError,
    TopicSpec,
    TopicState,
    creation_batches,
    plan_topics,
)

SPEC = TopicSpec("src.a.b", 3, 1, {"cleanup.policy": "compact", "retention.ms": "-1"})


def test_missing_topic_is_created() -> None:
    (change,) = plan_topics([SPEC], {})
    assert change.action == "create" and change.spec == SPEC


def test_matching_topic_is_unchanged() -> None:
    state = TopicState(3, {"cleanup.policy": "compact", "retention.ms": "-1", "other": "x"})
    (change,) = plan_topics([SPEC], {"src.a.b": state})
    assert change.action == "unchanged"


def test_partitions_grow_and_config_changes() -> None:
    state = TopicState(1, {"cleanup.policy": "delete", "retention.ms": "-1"})
    (change,) = plan_topics([SPEC], {"src.a.b": state})
    assert change.action == "update"
    assert change.add_partitions_to == 3
    assert change.set_config == {"cleanup.policy": "compact"}
    assert change.details == ("partitions 1 -> 3", "cleanup.policy: delete -> compact")


def test_partitions_cannot_shrink() -> None:
    with pytest.raises(TopicPlanError) as info:
        plan_topics([SPEC], {"src.a.b": TopicState(6, dict(SPEC.config))})
    assert info.value.code == "INVALID_PARTITIONS" and "cannot reduce" in str(info.value)


def test_topics_are_created_in_calls_the_controller_accepts() -> None:
    # Ten delivery topics of 1,000 partitions: 10,010+ records in one call would be refused.
    specs = [TopicSpec(f"dlv.c{i}.e", 1000, 1, {"cleanup.policy": "compact"}) for i in range(10)]
    batches = creation_batches(specs)
    assert [s for b in batches for s in b] == specs
    assert all(
        sum(1 + s.partitions + len(s.config) for s in b) <= CREATE_RECORDS_PER_CALL for b in batches
    )
    assert len(batches) == 3


def test_a_topic_over_the_limit_goes_alone() -> None:
    specs = [TopicSpec("a", 1, 1), TopicSpec("huge", 6000, 1), TopicSpec("b", 1, 1)]
    assert creation_batches(specs) == [[specs[0]], [specs[1]], [specs[2]]]


def test_small_topics_go_in_one_call() -> None:
    specs = [TopicSpec(f"t{i}", 1, 1) for i in range(500)]
    assert creation_batches(specs) == [specs]
    assert creation_batches([]) == []


def test_at_most_500_topics_go_in_one_call() -> None:
    specs = [TopicSpec(f"t{i}", 1, 1) for i in range(1200)]
    assert [len(b) for b in creation_batches(specs)] == [500, 500, 200]
