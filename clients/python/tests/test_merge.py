"""Unit tests of the client's splitting and parsing (no server)."""

import base64
import json

import pytest

from listingstats.merge import (Row, TopRow, error_parts, listing_key,
                                metric_names, parse_ingest_reply, parse_rows, parse_top, split_events, Previous,
                                unpack, value_of)


def node_of(listing):
    # Two "nodes": even and odd last digit; anything else on "z".
    return "even" if listing[-1] in "02468" else ("odd" if listing[-1] in "13579" else "z")


def test_an_event_on_two_nodes_becomes_two_parts_with_its_id():
    e = {"id": "e-1", "name": "n", "listingIds": [2156, "2157", 2156], "message_date": 5, "count": 2}
    parts = split_events([e], node_of, "fallback")
    assert set(parts) == {"even", "odd"}
    even = json.loads(parts["even"][0][1])
    odd = json.loads(parts["odd"][0][1])
    assert even["listingIds"] == ["2156", "2156"], "each occurrence still counts"
    assert odd["listingIds"] == ["2157"]
    for part in (even, odd):
        assert (part["id"], part["name"], part["message_date"], part["count"]) == ("e-1", "n", 5, 2)
        assert "listingId" not in part
    assert parts["even"][0][0] == parts["odd"][0][0] == 0


def test_single_listing_forms_and_json_text():
    parts = split_events(['{"name":"n","listingId":7,"message_date":1}',
                          {"name": "n", "listing_id": "sku-x", "message_date": 1}], node_of, "f")
    assert [i for i, _ in parts["odd"]] == [0]
    assert json.loads(parts["odd"][0][1])["listingIds"] == ["7"]
    assert [i for i, _ in parts["z"]] == [1]


def test_what_cannot_be_split_goes_whole_to_the_fallback():
    bad = ["not json", {"name": "n", "listingIds": [], "message_date": 1},
           {"name": "n", "listingIds": ["a b"], "message_date": 1},
           {"name": "n", "listingId": 1, "listing_id": 2, "message_date": 1},
           {"name": "n", "listingIds": [1.5], "message_date": 1}]
    parts = split_events(bad, node_of, "f")
    assert list(parts) == ["f"]
    assert [i for i, _ in parts["f"]] == [0, 1, 2, 3, 4]
    assert parts["f"][0][1] == "not json"


def test_envelope_records_count_one_each():
    rec = lambda obj: {"kinesis": {"data": base64.b64encode(json.dumps(obj).encode()).decode()}}
    env = {"Records": [rec({"name": "n", "listingId": 1, "message_date": 1}),
                       {"kinesis": {}},
                       rec({"name": "n", "listingId": 2, "message_date": 1})]}
    assert [i for i, _ in unpack([env, {"name": "x"}])] == [0, 1, 2, 3]
    parts = split_events([env], node_of, "f")
    assert [i for i, _ in parts["odd"]] == [0]
    assert [i for i, _ in parts["even"]] == [2]
    assert json.loads(parts["f"][0][1]) == {"Records": [{"kinesis": {}}]}


def test_errors_map_back_and_redirections_are_retried():
    sent = [(4, "a"), (9, "b"), (12, "c")]
    reply = parse_ingest_reply([b"applied", 1, b"duplicates", 0, b"rejected", 2, b"errors",
                                [b"0: missing name", b"2: MOVED 12 127.0.0.1:7001"]])
    final, retry = error_parts(reply, sent)
    assert final == {4: "missing name"}
    assert retry == [(12, "c", "MOVED 12 127.0.0.1:7001")]
    assert parse_ingest_reply({"applied": 1, "duplicates": 2, "rejected": 0, "errors": []})["duplicates"] == 2


def test_listing_order_is_the_modules():
    ids = ["b", "10", "9", "a", "010", "2"]
    assert sorted(ids, key=listing_key) == ["2", "9", "010", "10", "a", "b"]


def test_value_is_the_modules_f64():
    assert value_of(1, 3, 100.0) == 1 / 3 * 100
    assert value_of(5, 0, 100.0) is None


def test_top_rows_carry_the_wilson_bound():
    rows = parse_top([[b"7", 3, 4, b"75", b"30.1"], [b"8", 1, 2, 50.0]])
    assert rows == [TopRow("7", 3, 4, 75.0, 30.1), TopRow("8", 1, 2, 50.0, None)]


def test_compared_rows_carry_the_previous_period():
    rows = parse_rows([[b"m", b"2015-12-22T13:00Z", b"7", 2, 20, b"10", 3, 40, b"7.5",
                        b"0.3333333333333333"]])
    assert rows[0].previous == Previous(3, 40, 7.5, 0.3333333333333333)
    assert rows[0].date == "2015-12-22T13:00Z"
    top = parse_top([[b"7", 2, 20, 10.0, 3, 40, 7.5, None], [b"8", 1, 2, 50.0, 9.0, 0, 0, None, None]])
    assert top[0].bound is None and top[0].previous == Previous(3, 40, 7.5, None)
    assert top[1].bound == 9.0 and top[1].previous == Previous(0, 0, None, None)


def test_parse_rows_and_metric_names():
    rows = parse_rows([[b"m", b"*", b"7", 2, 5, b"40"], [b"m", b"*", b"8", 1, 0, None]])
    assert rows == [Row("m", "*", "7", 2, 5, 40.0), Row("m", "*", "8", 1, 0, None)]
    assert metric_names("a,b,a") == ["a", "b"]
    assert metric_names(["a", "b"]) == ["a", "b"]


def test_a_strict_batch_refused_for_a_redirection_is_sent_again():
    from listingstats.client import _strict_redirect
    assert _strict_redirect(Exception(
        "STRICT batch refused, nothing written: event 3: MOVED 12 127.0.0.1:7001"))
    assert _strict_redirect(Exception(
        "STRICT batch refused, nothing written: event 0: TRYAGAIN slot 5 (listing 1) is being resharded"))
    assert not _strict_redirect(Exception(
        "STRICT batch refused, nothing written: event 1: invalid JSON: expected value"))
    assert not _strict_redirect(Exception("MOVED 12 127.0.0.1:7001"))
