"""The evidence cache, filled from a compacted topic before consuming."""

import copy
import json

import harness

UNKNOWN = "'A query nobody searched for.'"
DELETED = "'A query whose evidence was deleted.'"


def evidence_records():
    """The example's evidence, plus one key written and then deleted
    (a tombstone), as the evidence topic's producer would leave it."""
    records = []
    for line in (harness.DATA / "contrastive.evidence.jsonl").read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            records.append((item["key"], json.dumps(item["value"]), None))
    records.append((DELETED, json.dumps({"results": [{"title": "gone"}]}), None))
    records.append((DELETED, None, None))
    return records


def with_queries(event, new_id, extra_query):
    """A copy of the cached example with one more query in its user turn."""
    ev = copy.deepcopy(event)
    ev["id"] = new_id
    ev["history"][0]["all_queries"].append(extra_query)
    return ev


def test_evidence_from_the_cache_and_inline(rl):
    t = rl.topics()
    rl.produce(t.evidence, evidence_records())
    llm = rl.fakellm()

    cached = harness.load_json("contrastive.event.json")
    inline = harness.load_json("contrastive-inline.event.json")
    unknown = with_queries(cached, "contrastive-unknown", UNKNOWN)
    deleted = with_queries(cached, "contrastive-deleted", DELETED)
    events = [cached, inline, unknown, deleted]
    worker = rl.worker(t, llm)
    rl.produce(t.input, harness.event_records(events))

    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) + c.count(t.dlq) >= 4, 60, "4 answers")
    c.settle(1)
    worker.expect_clean_exit(30)
    assert c.count(t.dlq) == 0, [
        (r.key, r.header("ragline.error.message")) for r in c.records[t.dlq]
    ]
    answers = {k: v[0].json() for k, v in harness.answers_by_id(c.records[t.output]).items()}
    assert sorted(answers) == sorted(e["id"] for e in events)

    ev = answers[cached["id"]]["evidence"]
    assert (ev["queries"], ev["found"], ev["missing"]) == (3, 3, 0), ev
    assert ev["missing_queries"] == [], ev
    assert ev["inline_turns"] == 0, ev

    ev = answers[inline["id"]]["evidence"]
    assert ev["inline_turns"] == 1, ev
    assert ev["queries"] == 0, ev
    assert ev["missing"] == 0, ev

    for event, query in ((unknown, UNKNOWN), (deleted, DELETED)):
        ev = answers[event["id"]]["evidence"]
        assert (ev["queries"], ev["found"], ev["missing"]) == (4, 3, 1), (
            event["id"],
            ev,
        )
        assert ev["missing_queries"] == [query], (event["id"], ev)
