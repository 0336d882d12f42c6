import pytest

from exchange.kafka.admin import TopicPlanError, TopicSpec, TopicState, plan_topics

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
