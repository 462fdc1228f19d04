"""No event is lost when the worker dies or is stopped mid-stream."""

import signal

import pytest

import harness
from harness import make_event


def produce_events(rl, topic, count):
    events = [make_event(n, f"conv-{n % 61}") for n in range(count)]
    rl.produce(topic, harness.event_records(events))
    return {e["id"] for e in events}


def answered(c, topic):
    return harness.answers_by_id(c.records[topic])


@pytest.mark.timeout(600)
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
    commits and exits 0 in time; its successor, given more events, answers
    them and repeats none of what the first one answered."""
    t = rl.topics()
    llm = rl.fakellm(latency_ms=500)
    first_ids = produce_events(rl, t.input, 120)
    shutdown_ms = 10000
    extra = {"inflight.max": 32, "shutdown.timeout.ms": shutdown_ms}

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) >= 1, 60, "a first answer")
    at_signal = c.count(t.output)
    took = first.expect_clean_exit(shutdown_ms / 1000 + 5)
    assert at_signal < len(first_ids), "nothing was in flight at SIGTERM"

    # The second wave proves the successor starts where the first stopped.
    events = [make_event(n, f"conv-{n % 61}") for n in range(120, 160)]
    rl.produce(t.input, harness.event_records(events))
    ids = first_ids | {e["id"] for e in events}
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
        f"SIGTERM with {at_signal} of {len(first_ids)} answered; stopped in "
        f"{took:.1f}s; answered twice: {sorted(dups)}"
    )
    assert set(answers) == ids
    # What the first worker answered it also committed before exiting.
    assert not dups, f"answered again after a clean stop: {sorted(dups)[:10]}"
    assert c.count(t.dlq) == 0


def test_shutdown_timeout_leaves_slow_events_for_the_successor(rl):
    """A reply slower than shutdown.timeout.ms does not hold the worker:
    it exits within the timeout without committing that event, and the
    next worker answers it."""
    t = rl.topics()
    llm = rl.fakellm()
    events = [make_event(n, f"conv-{n}") for n in range(8)]
    events[0]["query"] = "a slow one FAKELLM:sleep=6000"
    rl.produce(t.input, harness.event_records(events))
    ids = {e["id"] for e in events}
    extra = {"shutdown.timeout.ms": 1500, "backend.timeout.ms": 30000}

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) >= 7, 60, "the 7 fast answers")
    assert "ev-0" not in answered(c, t.output)
    first.signal(signal.SIGTERM)
    rc = first.wait(1.5 + 5)
    print(f"exit status after the shutdown timeout: {rc}")

    second = rl.worker(t, llm, extra=extra, name="ragline-2")
    c.until(lambda c: "ev-0" in answered(c, t.output), 60, "the slow answer")
    c.settle(1)
    second.expect_clean_exit(30)
    answers = answered(c, t.output)
    assert set(answers) == ids
    assert len(answers["ev-0"]) == 1
    assert c.count(t.dlq) == 0


def test_inflight_cap_bounds_what_a_stop_must_drain(rl):
    """inflight.max bounds the events taken from Kafka and not yet
    finished ("events in flight at once"), so a stop drains at most that
    many: with a cap of 4 and 1 s replies, a SIGTERM just after the first
    answers leaves the rest of 200 events to the successor."""
    cap = 4
    t = rl.topics()
    llm = rl.fakellm(latency_ms=1000)
    ids = produce_events(rl, t.input, 200)
    extra = {"inflight.max": cap, "shutdown.timeout.ms": 30000}

    first = rl.worker(t, llm, extra=extra, name="ragline-1")
    c = rl.collector(t.output, t.dlq)
    c.until(lambda c: c.count(t.output) >= 1, 60, "a first answer")
    took = first.expect_clean_exit(40)
    c.settle(1)
    drained = len(answered(c, t.output))
    print(f"answered by the first worker: {drained}, stopped in {took:.1f}s")
    # The first answers, plus what was in flight at the signal; a little
    # slack for answers that landed between the poll and the signal.
    assert drained <= 3 * cap, (
        f"{drained} events answered by a worker capped at {cap} in flight "
        "and stopped after its first answers"
    )
    assert drained < len(ids)
