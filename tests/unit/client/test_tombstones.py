"""The SDK hands over a delete once: its tombstone is recognised through commit metadata."""

from exchange.client.consumer import _delete_metadata, _last_delete


def test_the_last_delete_survives_a_round_trip_through_commit_metadata() -> None:
    last = ("140602194001010011", "1a3a8b209ce6a16d9f691b25adc3db29")
    assert _last_delete(_delete_metadata(last)) == last
    assert _last_delete(_delete_metadata((None, None))) == (None, None)


def test_no_delete_and_unreadable_metadata_name_none() -> None:
    assert _delete_metadata(None) == ""
    for metadata in (None, "", "not json", "[]", '{"deleted": 5}', '{"deleted": [1, 2]}'):
        assert _last_delete(metadata) is None
    # Metadata an older SDK wrote (its repeat filter's marks) is no delete either.
    assert _last_delete('{"marks":{"g|src.x/0":5}}') is None
