#!/usr/bin/env python3
"""The job ragline does, written the way many teams would write it: one
Python process, confluent-kafka's Consumer and Producer, aiohttp on
uvloop.  bench/run.py runs it beside ragline on the same input and the same
fakellm, so that the comparison is of implementations, not of workloads.

It does what ragline does, in the same order:

- loads the evidence topic into a dict before consuming;
- renders the prompt with string.Template over repr()s, which is the
  reference ragline's renderer is tested against (docs/rendering.md);
- calls the chat completions API with at most --inflight events between
  consume and delivery (the consumer pauses at the cap);
- produces the answer in ragline's JSON shape, or the input to the
  dead-letter topic with ragline's headers when the call fails (neither
  retries: ragline does not either yet);
- stores an offset only after the answer's delivery, and only up to the
  lowest event still in flight on that partition (at-least-once);
- on SIGTERM stops consuming, finishes what is in flight (30 s at most),
  flushes, commits and leaves.
"""

import argparse
import asyncio
import json
import signal
import string
import sys
import time
from collections import deque

import aiohttp
import uvloop
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def load_evidence(bootstrap, topic, timeout=60):
    """The evidence topic as {query: results list}, tombstones applied."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "baseline-evidence",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    cache = {}
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        todo = set()
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                todo.add(p)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        todo.discard(m.partition())
                    continue
                key = m.key().decode()
                try:
                    cache[key] = json.loads(m.value())["results"]
                except (TypeError, ValueError, KeyError):
                    cache.pop(key, None)
        if todo:
            raise TimeoutError(f"evidence topic not read within {timeout} s")
    finally:
        c.close()
    return cache


def render(template, event, cache):
    """The prompt, and the evidence statistics of the answer."""
    stats = {"queries": 0, "found": 0, "missing": 0, "inline_turns": 0}
    missing = []
    lines = []
    for turn in event.get("history") or []:
        d = {"role": turn["role"], "content": turn["content"]}
        queries = turn.get("all_queries")
        evidences = turn.get("all_evidences")
        if queries is not None or evidences is not None:
            if evidences is not None:
                stats["inline_turns"] += 1
            else:
                evidences = []
                for q in queries:
                    stats["queries"] += 1
                    found = cache.get(q)
                    if found is None:
                        stats["missing"] += 1
                        missing.append(q)
                        found = []
                    else:
                        stats["found"] += 1
                    evidences.append(found)
            d["all_evidences"] = evidences
            d["all_queries"] = queries if queries is not None else []
        lines.append(repr(d))
    prompt = template.substitute(
        cur_history_with_context="\n".join(lines),
        current_query=repr({"role": "user", "content": event["query"]}),
        recommended_answer=repr(
            {"role": "assistant", "content": event.get("recommended_answer") or ""}
        ),
    )
    stats["missing_queries"] = missing
    return prompt, stats


class Tracker:
    """Offsets of one partition taken and not yet delivered.  Events are
    consumed in offset order, so the lowest unfinished one is the front
    of the queue."""

    def __init__(self):
        self.pending = deque()
        self.done = set()

    def add(self, offset):
        self.pending.append(offset)

    def finish(self, offset):
        """Returns the offset to store (one past the last event of an
        unbroken finished run), or None."""
        self.done.add(offset)
        commit = None
        while self.pending and self.pending[0] in self.done:
            self.done.discard(self.pending[0])
            commit = self.pending.popleft() + 1
        return commit


class Worker:
    def __init__(self, args, cache, template):
        self.args = args
        self.cache = cache
        self.template = template
        self.url = args.backend_url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.url += "/chat/completions"
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": args.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        self.trackers = {}
        self.jobs = 0  # consumed and not yet delivered
        self.paused = False
        self.stopping = False

    # -- offsets -------------------------------------------------------

    def on_assign(self, consumer, parts):
        for tp in parts:
            self.trackers[tp.partition] = Tracker()

    def on_revoke(self, consumer, parts):
        # Deliveries for these partitions still arrive; their offsets are
        # no longer ours to store.
        for tp in parts:
            self.trackers.pop(tp.partition, None)

    def delivered(self, partition, offset):
        tracker = self.trackers.get(partition)
        commit = tracker.finish(offset) if tracker else None
        if commit is not None:
            self.consumer.store_offsets(
                offsets=[TopicPartition(self.args.input, partition, commit)]
            )

    def produce(self, topic, msg, value, headers):
        partition, offset = msg.partition(), msg.offset()

        def on_delivery(err, _):
            self.jobs -= 1
            if err is not None:
                print(f"baseline: delivery failed: {err}", file=sys.stderr)
                return  # not stored: consumed again after a restart
            self.delivered(partition, offset)

        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=msg.key(), headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                self.producer.poll(0.01)

    # -- one event -----------------------------------------------------

    def dead_letter(self, msg, cls, why):
        headers = list(msg.headers() or []) + [
            ("ragline.error.class", cls),
            ("ragline.error.message", why[:500]),
            ("ragline.source.topic", msg.topic()),
            ("ragline.source.partition", str(msg.partition())),
            ("ragline.source.offset", str(msg.offset())),
        ]
        self.produce(self.args.dlq, msg, msg.value(), headers)

    async def handle(self, session, msg, consumed):
        try:
            event = json.loads(msg.value())
            prompt, stats = render(self.template, event, self.cache)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.dead_letter(msg, "invalid_event", f"{type(e).__name__}: {e}")
            return
        submitted = time.monotonic()
        body = {
            "model": self.args.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": False,
        }
        try:
            async with session.post(
                self.url,
                data=json.dumps(body).encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Request-Id": str(event.get("id", "")),
                },
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
            reply = json.loads(raw)
            choice = reply["choices"][0]
        except Exception as e:  # noqa: BLE001 - every failure dead-letters
            self.dead_letter(msg, "backend_failed", str(e) or type(e).__name__)
            return
        done = time.monotonic()
        answer = {
            "id": event["id"],
            "conversation_id": event.get("conversation_id")
            or (msg.key() or b"").decode(),
            "answer": choice["message"]["content"],
            "backend": "openai-chat",
            "model": reply.get("model") or self.args.model,
            "finish_reason": choice.get("finish_reason"),
        }
        if reply.get("usage"):
            answer["usage"] = reply["usage"]
        answer["evidence"] = stats
        answer["latency_ms"] = {
            "queued": round((submitted - consumed) * 1000, 3),
            "backend": round((done - submitted) * 1000, 3),
            "total": round((time.monotonic() - consumed) * 1000, 3),
        }
        answer["source"] = {
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
        }
        value = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        self.produce(self.args.output, msg, value.encode(), msg.headers())

    # -- the loop ------------------------------------------------------

    def flow_control(self):
        """Pauses the input at the cap and resumes below it; librdkafka
        drops what it prefetched for a paused partition, so nothing is
        taken beyond the cap."""
        full = self.jobs >= self.args.inflight
        if full != self.paused:
            assignment = self.consumer.assignment()
            if full:
                self.consumer.pause(assignment)
            else:
                self.consumer.resume(assignment)
            self.paused = full

    async def run(self):
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=self.args.inflight)
        tasks = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.consumer.subscribe(
                [self.args.input], on_assign=self.on_assign, on_revoke=self.on_revoke
            )
            while not self.stopping:
                self.producer.poll(0)
                self.flow_control()
                room = max(1, self.args.inflight - self.jobs)
                msgs = self.consumer.consume(min(room, 500), 0)
                if not msgs:
                    await asyncio.sleep(0.002)
                    continue
                now = time.monotonic()
                for msg in msgs:
                    if msg.error():
                        continue
                    tracker = self.trackers.get(msg.partition())
                    if tracker is None:
                        continue
                    tracker.add(msg.offset())
                    self.jobs += 1
                    task = asyncio.create_task(self.handle(session, msg, now))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)
            await self.drain(tasks)

    async def drain(self, tasks, timeout=30):
        deadline = time.monotonic() + timeout
        while (tasks or self.jobs > 0) and time.monotonic() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        self.producer.flush(10)
        self.consumer.close()  # commits the stored offsets, leaves the group


def main(argv):
    ap = argparse.ArgumentParser(description="ragline's job in Python")
    for name in ("bootstrap", "input", "output", "dlq", "evidence", "group",
                 "backend-url", "template"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--inflight", type=int, default=1024)
    args = ap.parse_args(argv)

    with open(args.template, encoding="utf-8") as f:
        template = string.Template(f.read())
    cache = load_evidence(args.bootstrap, args.evidence)
    worker = Worker(args, cache, template)

    async def start():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(worker, "stopping", True))
        await worker.run()

    uvloop.run(start())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
