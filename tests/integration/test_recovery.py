"""No event is lost when the worker dies or is stopped mid-stream."""

import signal

import harness
from harness import make_event


def produce_events(rl, topic, count):
    events = [make_event(n, f"conv-{n % 61}") for n in range(count)]
    rl.produce(topic, harness.event_records(events))
    return {e["id"] for e in events}


def answered(c, topic):
    return harness.answers_by_id(c.records[topic])


def test_sigkill_midway_loses_nothing(rl):
    """kill -9 after about half the answers, restart in the same group:
    every event is answered at least once (duplicates are allowed by
    at-least-once delivery, and reported)."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=20)
    ids = produce_events(rl, t.input, 2000)
    # A small in-flight window keeps the run slow enough to be caught
    # in the middle.
    extra = {"inflight.max": 8}

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) >= 1000, 120, "1000 answers")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    at_kill = len(answered(c, t.output))
    assert at_kill < len(ids), "the worker finished before it was killed"

    second = rl.worker(t, llm, extra=extra, name="ragline-2")
    c.until(
        lambda c: ids <= set(answered(c, t.output)),
        180,
        "every event answered after the restart",
    )
    c.settle(2)
    second.expect_clean_exit(30)

    answers = answered(c, t.output)
    dups = {i: len(r) for i, r in answers.items() if len(r) > 1}
    print(
        f"answered before the kill: {at_kill}; answers in all: "
        f"{c.count(t.output)}; ids answered twice or more: {len(dups)}"
    )
    assert set(answers) == ids
    assert c.count(t.dlq) == 0


def test_sigterm_drains_in_flight_and_loses_nothing(rl):
    """SIGTERM while requests are in flight: the worker finishes them,
    commits and exits 0 in time; its successor answers the rest and
    repeats nothing."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=500)
    ids = produce_events(rl, t.input, 120)
    shutdown_ms = 10000
    extra = {"inflight.max": 32, "shutdown.timeout.ms": shutdown_ms}

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) >= 1, 60, "a first answer")
    took = first.expect_clean_exit(shutdown_ms / 1000 + 5)
    c.settle(2)
    before = set(answered(c, t.output))
    assert len(before) < len(ids), "nothing was left for the restart"

    second = rl.worker(t, llm, extra=extra, name="ragline-2")
    c.until(
        lambda c: ids <= set(answered(c, t.output)),
        120,
        "every event answered after the restart",
    )
    c.settle(2)
    second.expect_clean_exit(30)

    answers = answered(c, t.output)
    dups = {i: len(r) for i, r in answers.items() if len(r) > 1}
    print(
        f"stopped in {took:.1f}s with {len(before)} answered; "
        f"answered twice: {sorted(dups)}"
    )
    assert set(answers) == ids
    # What the first worker answered it also committed before exiting.
    assert not dups, f"answered again after a clean stop: {sorted(dups)[:10]}"
    assert c.count(t.dlq) == 0
