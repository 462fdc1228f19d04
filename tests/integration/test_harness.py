"""The harness itself, before any ragline: if these fail, the other
tests' failures say nothing about ragline."""

import json
import urllib.request

from confluent_kafka.admin import ConfigResource


def test_broker_topics_and_round_trip(rl):
    """Topics come out as asked (partitions, compaction), and records keep
    key, value, headers and partition through the real broker."""
    t = rl.topics()
    assert rl.broker.partitions(t.input) == [0, 1, 2, 3]

    configs = rl.broker.admin.describe_configs(
        [ConfigResource("topic", t.evidence)]
    )
    for fut in configs.values():
        policy = fut.result(timeout=30)["cleanup.policy"].value
        assert policy == "compact"

    records = [
        (f"k{i}", {"n": i}, [("traceparent", f"tp-{i}".encode())])
        for i in range(40)
    ]
    placed = rl.produce(t.input, records)
    c = rl.collector(t.input)
    c.until(lambda c: c.count(t.input) >= 40, 30, "40 records")
    c.settle(0.5)
    assert c.count(t.input) == 40

    by_key = {r.key.decode(): r for r in c.records[t.input]}
    for i, (partition, offset) in enumerate(placed):
        r = by_key[f"k{i}"]
        assert (r.partition, r.offset) == (partition, offset)
        assert r.json() == {"n": i}
        assert r.header("traceparent") == f"tp-{i}"
    # Same key, same partition: what per-key ordering relies on.
    again = rl.produce(t.input, [("k0", "x", None)])
    assert again[0][0] == placed[0][0]


def test_fakellm_answers_chat(rl):
    """fakellm answers an OpenAI chat request with the request id, and
    fails on demand."""
    llm = rl.fakellm()

    def post(content):
        body = json.dumps(
            {
                "model": "m",
                "messages": [{"role": "user", "content": content}],
            }
        ).encode()
        req = urllib.request.Request(
            llm.url + "/v1/chat/completions",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Request-Id": "req-42",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, None

    status, reply = post("hello")
    assert status == 200
    assert reply["choices"][0]["message"]["content"] == "answer to req-42"

    status, _ = post("hello FAKELLM:status=400")
    assert status == 400
