"""Events in, answers and dead letters out, against a real broker."""

import json
import random
import time
from collections import Counter

import harness
from harness import make_event, traceparent

LIMITS = {
    "limits.event.bytes": 16384,
    "limits.depth": 16,
    "limits.turns": 32,
}

ANSWER_FIELDS = {
    "id",
    "conversation_id",
    "answer",
    "backend",
    "model",
    "finish_reason",
    "usage",
    "evidence",
    "latency_ms",
    "source",
}


def nested(depth):
    value = "deep"
    for _ in range(depth):
        value = [value]
    return value


def valid(i):
    return make_event(100000 + i, f"bad-{i}")


# Each kind of malformed value: (expected ragline.error.class, builder).
# The builders take the malformed event's number, so every value differs.
MALFORMED = [
    ("invalid_json", lambda i: f"not json {i}".encode()),
    ("invalid_json", lambda i: f'{{"id": "bad-{i}", "query": '.encode()),
    ("invalid_event", lambda i: {"query": f"no id {i}"}),
    ("invalid_event", lambda i: {"id": i, "query": "id is a number"}),
    ("invalid_event", lambda i: {**valid(i), "query": i}),
    ("invalid_event", lambda i: {**valid(i), "history": "not a list"}),
    (
        "invalid_event",
        lambda i: {
            **valid(i),
            "history": [{"role": "wizard", "content": f"bad role {i}"}],
        },
    ),
    (
        "limit_exceeded",
        lambda i: {**valid(i), "query": "x" * (LIMITS["limits.event.bytes"] + i)},
    ),
    (
        "limit_exceeded",
        lambda i: {
            **valid(i),
            "history": [
                {
                    "role": "user",
                    "content": "deep evidence",
                    "all_queries": ["q"],
                    "all_evidences": [[{"title": "t", "text": nested(40 + i)}]],
                },
            ],
        },
    ),
    (
        "limit_exceeded",
        lambda i: {
            **valid(i),
            "history": [
                {"role": ("user", "assistant")[t % 2], "content": f"turn {t}"}
                for t in range(LIMITS["limits.turns"] + 8)
            ],
        },
    ),
]


def check_answer(rec, event, key, tp, placed, topic):
    """One answer against the event that asked for it."""
    assert rec.key.decode() == key, f"answer to {event['id']} has key {rec.key!r}"
    assert rec.header("traceparent") == tp, (
        f"answer to {event['id']} lost its traceparent: {rec.headers}"
    )
    answer = rec.json()
    assert ANSWER_FIELDS <= answer.keys(), (
        f"answer lacks {ANSWER_FIELDS - answer.keys()}: {answer}"
    )
    assert answer["conversation_id"] == event["conversation_id"]
    # fakellm echoes X-Request-Id, which ragline sets to the event id: the
    # answer text proves the reply was matched to the right request.
    assert answer["answer"] == f"answer to {event['id']}"
    assert answer["source"] == {
        "topic": topic,
        "partition": placed[0],
        "offset": placed[1],
    }


def check_dead_letter(rec, key, value, tp, error_class, placed, topic):
    assert rec.value == value, f"dead letter {key} does not keep the value"
    assert rec.header("traceparent") == tp, f"dead letter {key}: {rec.headers}"
    assert rec.header("ragline.error.class") == error_class, (
        f"dead letter {key}: class {rec.header('ragline.error.class')!r}, "
        f"expected {error_class!r} "
        f"(message: {rec.header('ragline.error.message')!r})"
    )
    assert rec.header("ragline.error.message"), f"dead letter {key}: no message"
    assert rec.header("ragline.source.topic") == topic
    assert rec.header("ragline.source.partition") == str(placed[0])
    assert rec.header("ragline.source.offset") == str(placed[1])


def test_thousand_events_with_fifty_malformed(rl):
    """950 valid and 50 malformed events, shuffled over 4 partitions: every
    valid one is answered once with its key and traceparent, every
    malformed one is dead-lettered once with the right class, and none
    stalls its partition."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=10, dist="uniform")

    # Build the 1,000 records; each remembers what it should become.
    expected = []  # (key, value bytes, traceparent, event or error class)
    for n in range(950):
        ev = make_event(n, f"conv-{n % 37}")
        expected.append((ev["conversation_id"], json.dumps(ev).encode(), ev))
    for i in range(50):
        error_class, build = MALFORMED[i % len(MALFORMED)]
        value = build(i)
        if not isinstance(value, bytes):
            value = json.dumps(value).encode()
        expected.append((f"bad-{i}", value, error_class))
    random.Random(1234).shuffle(expected)
    records = [
        (key, value, [("traceparent", traceparent(j).encode())])
        for j, (key, value, _) in enumerate(expected)
    ]
    placed = rl.produce(t.input, records)

    worker = rl.worker(t, llm, extra=LIMITS)
    c = rl.collector(t.output, t.dlq)
    c.until(
        lambda c: c.count(t.output) >= 950 and c.count(t.dlq) >= 50,
        180,
        "950 answers and 50 dead letters",
    )
    c.settle(3)
    worker.expect_clean_exit(30)

    answers = harness.answers_by_id(c.records[t.output])
    letters = {}
    for rec in c.records[t.dlq]:
        letters.setdefault(rec.key.decode() if rec.key else None, []).append(rec)

    dup_answers = {i: len(r) for i, r in answers.items() if len(r) > 1}
    dup_letters = {k: len(r) for k, r in letters.items() if len(r) > 1}
    assert not dup_answers, f"answered more than once: {dup_answers}"
    assert not dup_letters, f"dead-lettered more than once: {dup_letters}"

    want_ids = {e["id"] for _, _, e in expected if isinstance(e, dict)}
    want_bad = {k for k, _, e in expected if isinstance(e, str)}
    assert set(answers) == want_ids, (
        f"missing answers {sorted(want_ids - set(answers))[:10]}, "
        f"unexpected {sorted(set(answers) - want_ids)[:10]}"
    )
    assert set(letters) == want_bad, (
        f"missing dead letters {sorted(want_bad - set(letters))[:10]}, "
        f"unexpected {sorted(map(str, set(letters) - want_bad))[:10]}"
    )

    for j, (key, value, what) in enumerate(expected):
        tp = traceparent(j)
        if isinstance(what, dict):
            rec = answers[what["id"]][0]
            check_answer(rec, what, key, tp, placed[j], t.input)
        else:
            rec = letters[key][0]
            check_dead_letter(rec, key, value, tp, what, placed[j], t.input)
    print("dead-letter classes:", Counter(
        r[0].header("ragline.error.class") for r in letters.values()))


def test_backend_failure_is_dead_lettered_and_partition_moves_on(rl):
    """A backend 400 for one event dead-letters that event (class
    backend_failed) and the events after it in the same partition are
    still answered."""
    t = rl.topics(input_partitions=1)
    llm = rl.fakellm()
    events = [make_event(n, "conv-fail") for n in range(30)]
    events[9]["query"] = "this one fails FAKELLM:status=400"
    records = harness.event_records(events)
    placed = rl.produce(t.input, records)

    worker = rl.worker(t, llm)
    c = rl.collector(t.output, t.dlq)
    c.until(
        lambda c: c.count(t.output) >= 29 and c.count(t.dlq) >= 1,
        60,
        "29 answers and 1 dead letter",
    )
    c.settle(2)
    worker.expect_clean_exit(30)

    answers = harness.answers_by_id(c.records[t.output])
    assert sorted(answers) == sorted(e["id"] for i, e in enumerate(events) if i != 9)
    assert all(len(r) == 1 for r in answers.values())
    assert len(c.records[t.dlq]) == 1
    check_dead_letter(
        c.records[t.dlq][0],
        "conv-fail",
        json.dumps(events[9]).encode(),
        traceparent(9),
        "backend_failed",
        placed[9],
        t.input,
    )


def test_backlog_beyond_the_inflight_window_is_answered(rl):
    """A backlog far larger than inflight.max is worked through at the
    backend's pace: no event waits so long for its turn that it times out
    and is dead-lettered (backend.timeout.ms is the time one request may
    take, not the time an event may wait behind the others)."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=200)
    events = [make_event(n, f"conv-{n % 13}") for n in range(200)]
    rl.produce(t.input, harness.event_records(events))
    # 200 events, 4 at a time, 200 ms each: about 10 s of work, five
    # times the 2 s a single request may take.
    extra = {"inflight.max": 4, "backend.timeout.ms": 2000}

    worker = rl.worker(t, llm, extra=extra)
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) + c.count(t.dlq) >= 1, 60, "a start")
    started = time.monotonic()
    c.until(
        lambda c: c.count(t.output) + c.count(t.dlq) >= 200,
        120,
        "200 answers or dead letters",
    )
    took = time.monotonic() - started
    c.settle(1)
    worker.expect_clean_exit(30)
    timed_out = [
        (r.key.decode(), r.header("ragline.error.message"))
        for r in c.records[t.dlq]
    ]
    assert not timed_out, f"{len(timed_out)} dead-lettered, e.g. {timed_out[:3]}"
    assert set(harness.answers_by_id(c.records[t.output])) == {
        e["id"] for e in events
    }
    # The backend alone needs 196 / 4 * 0.2 s = 9.8 s after the first
    # answers; twice that leaves room for a slow machine, not for a worker
    # that idles between windows.
    assert took < 20, f"the backlog took {took:.1f}s, the backend 9.8 s"
