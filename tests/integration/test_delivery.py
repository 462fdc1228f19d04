"""Delivery under failure: exactly-once across a crash, retries that end
in a dead letter, and a backend outage that dead-letters nothing."""

import signal
import time
from collections import Counter

import pytest

import harness
from harness import make_event


def ids_of(records):
    return Counter(r.json()["id"] for r in records)


@pytest.mark.timeout(600)
def test_exactly_once_survives_sigkill(rl):
    """delivery = exactly-once: kill -9 midway and restart the same
    instance; a read_committed consumer sees every answer exactly once
    and every malformed event's dead letter exactly once."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=10, dist="uniform")
    events = [make_event(n, f"conv-{n % 37}") for n in range(3000)]
    records = harness.event_records(events)
    bad_keys = {f"bad-{n}".encode() for n in range(30)}
    records += [(k.decode(), b"{not json", []) for k in sorted(bad_keys)]
    rl.produce(t.input, records)
    extra = {
        "delivery": "exactly-once",
        "instance.id": "it-eos-1",
        "inflight.max": 64,
        "transaction.interval.ms": 50,
    }

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)  # read_committed: the default
    c.until(lambda c: c.count(t.output) >= 1000, 180, "1000 answers")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL

    second = rl.worker(t, llm, extra=extra, name="ragline-2")
    want = {e["id"] for e in events}
    c.until(
        lambda c: set(ids_of(c.records[t.output])) >= want
        and c.count(t.dlq) >= len(bad_keys),
        300,
        "every event answered or dead-lettered after the restart",
    )
    c.settle(3)
    second.expect_clean_exit(30)

    answers = ids_of(c.records[t.output])
    dups = {i: n for i, n in answers.items() if n > 1}
    assert not dups, f"{len(dups)} ids answered more than once"
    assert set(answers) == want
    dead = Counter(r.key for r in c.records[t.dlq])
    assert set(dead) == bad_keys and max(dead.values()) == 1


def test_retriable_failures_retry_then_dead_letter(rl):
    """A call that keeps failing with 503 is tried backend.retry.max.attempts
    times, then dead-lettered with the attempt count and last status;
    the events after it are answered."""
    t = rl.topics(input_partitions=1)
    llm = rl.fakellm()
    events = [make_event(n, "conv") for n in range(20)]
    events[5]["query"] = "always FAKELLM:status=503 please"
    rl.produce(t.input, harness.event_records(events))
    extra = {
        "backend.retry.max.attempts": 3,
        "backend.retry.base.ms": 20,
        "breaker.failures": 0,
        "breaker.error.rate": 0,
    }
    rl.worker(t, llm, extra=extra)
    c = rl.collector(t.output, t.dlq)
    c.until(
        lambda c: c.count(t.output) >= 19 and c.count(t.dlq) >= 1,
        60,
        "19 answers and 1 dead letter",
    )
    c.settle(1)
    assert c.count(t.output) == 19 and c.count(t.dlq) == 1
    dead = c.records[t.dlq][0]
    assert dead.json()["id"] == "ev-5"
    assert dead.header("ragline.error.class") == "backend_failed"
    assert dead.header("ragline.error.attempts") == "3"
    assert dead.header("ragline.error.status") == "503"
    assert "gave up after 3 attempts" in dead.header("ragline.error.message")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fakellm_on(rl, port, name):
    proc = rl.process(
        name,
        [harness.binary("fakellm"), "--port", str(port), "--latency-ms", "5"],
    )
    harness.wait_for(
        lambda: _answers(port), 20, f"{name} to listen on {port}"
    )
    return proc


def _answers(port):
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/health", timeout=1
        ) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.timeout(300)
def test_backend_outage_dead_letters_nothing(rl):
    """The backend goes away for several seconds, much longer than the
    per-event deadline: the breaker opens, events wait instead of being
    dead-lettered, and all are answered once the backend is back."""
    t = rl.topics()
    port = free_port()
    first = fakellm_on(rl, port, "fakellm-1")
    events = [make_event(n, f"conv-{n % 11}") for n in range(400)]
    extra = {
        "backend.url": f"http://127.0.0.1:{port}",
        "backend.retry.max.attempts": 3,
        "backend.retry.base.ms": 20,
        "backend.deadline.ms": 1000,
        "backend.connect.timeout.ms": 500,
        "breaker.failures": 3,
        "breaker.open.ms": 300,
        "breaker.max.open.ms": 1000,
        "inflight.max": 16,
    }
    worker = rl.worker(t, None, extra=extra)
    c = rl.collector(t.output, t.dlq)
    rl.produce(t.input, harness.event_records(events[:100]))
    c.until(lambda c: c.count(t.output) >= 100, 60, "the first 100 answers")

    first.signal(signal.SIGKILL)
    first.wait(10)
    rl.produce(t.input, harness.event_records(events[100:]))
    time.sleep(6)  # six deadlines' worth of outage
    assert c.count(t.dlq) == 0
    fakellm_on(rl, port, "fakellm-2")

    c.until(
        lambda c: len(ids_of(c.records[t.output])) >= len(events),
        120,
        "every event answered after the outage",
    )
    c.settle(1)
    assert c.count(t.dlq) == 0
    assert set(ids_of(c.records[t.output])) == {e["id"] for e in events}
    log = worker.stderr()
    assert "circuit opened" in log and "circuit closed" in log
    worker.expect_clean_exit(30)
