"""Processes and Kafka helpers for ragline's integration tests.

Everything here waits with a deadline: a test that hangs is a failure that
says what it was waiting for, never a stuck CI job.
"""

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
KAFKA_SH = ROOT / "deploy" / "kafka.sh"


def build_dir():
    """The CMake build holding ragline and fakellm (env RAGLINE_BUILD)."""
    build = Path(os.environ.get("RAGLINE_BUILD", "build"))
    return build if build.is_absolute() else ROOT / build


def binary(name):
    path = build_dir() / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"{path} is missing: build first (tests/run.sh does), or point "
            "RAGLINE_BUILD at the build directory"
        )
    return path


def child_env():
    """The environment for ragline: ragline reads RAGLINE_<KEY> variables
    as configuration and rejects unknown ones, so the harness's own
    (RAGLINE_BUILD, RAGLINE_CACHE) must not leak into it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAGLINE_")}


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns something true, which it returns;
    raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=150):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"({e})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# The broker


class Broker:
    """A single-node broker run by deploy/kafka.sh in its own directory."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.log = self.dir / "broker.log"
        self.bootstrap = None

    def start(self, timeout=600):
        # The first start fetches the jars, hence the generous deadline.
        subprocess.run(
            [str(KAFKA_SH), "start", str(self.dir)],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )
        self.bootstrap = (self.dir / "bootstrap").read_text().strip()
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def stop(self, timeout=120):
        subprocess.run([str(KAFKA_SH), "stop", str(self.dir)], timeout=timeout)

    def create_topics(self, topics, timeout=60):
        """topics: NewTopic list.  Returns once all exist on the broker."""
        futures = self.admin.create_topics(topics, operation_timeout=timeout)
        for fut in futures.values():
            fut.result(timeout=timeout)

        def visible():
            md = self.admin.list_topics(timeout=10)
            return all(
                t.topic in md.topics
                and len(md.topics[t.topic].partitions) == t.num_partitions
                for t in topics
            )

        wait_for(visible, timeout, "the new topics in the metadata", 0.2)

    def partitions(self, topic):
        md = self.admin.list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)


@dataclass
class Topics:
    """One test's topics; names are unique so tests never see each
    other's records."""

    input: str
    output: str
    dlq: str
    evidence: str
    group: str

    @classmethod
    def fresh(cls, label):
        tag = re.sub(r"[^A-Za-z0-9]+", "-", label)[:40] + "." + uuid.uuid4().hex[:8]
        return cls(
            input=f"it.{tag}.queries",
            output=f"it.{tag}.answers",
            dlq=f"it.{tag}.dlq",
            evidence=f"it.{tag}.evidence",
            group=f"it.{tag}.worker",
        )

    def create(self, broker, input_partitions=4):
        broker.create_topics(
            [
                NewTopic(self.input, input_partitions, 1),
                NewTopic(self.output, 4, 1),
                NewTopic(self.dlq, 1, 1),
                NewTopic(
                    self.evidence,
                    1,
                    1,
                    config={"cleanup.policy": "compact"},
                ),
            ]
        )


# --------------------------------------------------------------------------
# Producing and consuming


def produce(bootstrap, topic, records, timeout=60):
    """Produces records, each (key, value, headers) with bytes/str key and
    value (a dict value is JSON-encoded) and headers a list of (name,
    value) or None.  Returns [(partition, offset)] in the records' order."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )
    placed = [None] * len(records)
    errors = []

    def report(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                placed[i] = (msg.partition(), msg.offset())

        return on_delivery

    for i, (key, value, headers) in enumerate(records):
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=headers,
                    on_delivery=report(i),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(timeout)
    producer.close()
    assert left == 0, f"{left} records still unsent to {topic} after {timeout}s"
    assert not errors, f"delivery to {topic} failed: {errors[:5]}"
    return placed


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list = field(default_factory=list)

    def header(self, name):
        """The last value of header `name` as str, or None."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v.decode("utf-8", "replace") if v is not None else None
        return found

    def json(self):
        return json.loads(self.value)


class Collector:
    """Reads topics from their beginning, without a consumer group, and
    keeps every record seen, by topic."""

    def __init__(self, bootstrap, topics, watch=None):
        # watch(): called while waiting; raises if a process the wait
        # depends on has died, so the test fails at once and says so.
        self.watch = watch
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "it.collector." + uuid.uuid4().hex,
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 50,
            }
        )
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def metadata():
            md = admin.list_topics(timeout=10)
            return md if all(t in md.topics for t in topics) else None

        md = wait_for(metadata, 30, f"topics {topics} to exist", 0.2)
        parts = []
        for t in topics:
            for p in md.topics[t].partitions:
                parts.append(TopicPartition(t, p, OFFSET_BEGINNING))
        self.consumer.assign(parts)
        self.records = {t: [] for t in topics}

    def poll(self, seconds=0.2):
        """Collects what arrives within `seconds`; returns the count."""
        got = 0
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            for msg in self.consumer.consume(1000, timeout=min(left, 0.2)):
                if msg.error():
                    raise KafkaException(msg.error())
                self.records[msg.topic()].append(
                    Record(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        msg.headers() or [],
                    )
                )
                got += 1

    def count(self, topic):
        return len(self.records[topic])

    def until(self, pred, timeout, what):
        """Collects until pred(self) is true; AssertionError naming `what`
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not pred(self):
            if self.watch:
                self.watch()
            if time.monotonic() >= deadline:
                counts = {t: len(r) for t, r in self.records.items()}
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what} "
                    f"(records so far: {counts})"
                )
            self.poll(0.2)

    def settle(self, seconds=2.0):
        """Keeps reading for a while, to see records that should not come
        (duplicates, extras)."""
        self.poll(seconds)

    def close(self):
        self.consumer.close()


# --------------------------------------------------------------------------
# Processes


class Proc:
    """A child process whose stdout and stderr go to files."""

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name = name
        self.stdout_path = Path(workdir) / f"{name}.stdout"
        self.stderr_path = Path(workdir) / f"{name}.stderr"
        self.argv = [str(a) for a in argv]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd,
            )
        self.pid = self.popen.pid
        self.expected_exit = False

    def alive(self):
        return self.popen.poll() is None

    def check_running(self):
        """AssertionError if the process has exited though nothing here
        asked it to (a crash, or a signal from elsewhere)."""
        if not self.expected_exit and not self.alive():
            raise AssertionError(
                f"{self.name} (pid {self.pid}) exited with status "
                f"{self.popen.returncode} unasked; see {self.stderr_path}"
            )

    def signal(self, sig):
        self.expected_exit = True
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Returns the exit status; AssertionError if still running after
        `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still runs after {timeout}s"
            ) from None

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        self.expected_exit = True
        if self.alive():
            self.popen.kill()
        self.popen.wait(10)

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")


class FakeLLM(Proc):
    """tests/fakellm: an OpenAI-compatible server on an ephemeral port."""

    def __init__(self, workdir, name="fakellm", latency_ms=0, dist="fixed"):
        self.port_file = Path(workdir) / f"{name}.port"
        self.port_file.unlink(missing_ok=True)
        argv = [
            binary("fakellm"),
            "--port", "0",
            "--port-file", self.port_file,
            "--latency-ms", str(latency_ms),
            "--latency-dist", dist,
        ]
        super().__init__(name, argv, workdir, env=child_env())

        def port():
            if not self.alive():
                raise AssertionError(f"fakellm exited: {tail(self.stderr_path)}")
            text = self.port_file.read_text().strip() if self.port_file.exists() else ""
            return int(text) if text.isdigit() and int(text) > 0 else None

        self.port = wait_for(port, 20, "fakellm's port file")
        self.url = f"http://127.0.0.1:{self.port}"


def worker_config(bootstrap, topics, backend=None, extra=None):
    """The config of a worker on `topics`: `backend` is a FakeLLM or None
    for the built-in backend; `extra` adds or replaces keys."""
    conf = {
        "kafka.bootstrap.servers": bootstrap,
        # Records produced before the worker joins must still be read.
        "kafka.auto.offset.reset": "earliest",
        "group.id": topics.group,
        "topic.input": topics.input,
        "topic.output": topics.output,
        "topic.dlq": topics.dlq,
        "topic.evidence": topics.evidence,
        "backend.url": backend.url if backend else "",
        "backend.api": "chat",
        "backend.model": "fake-model",
        "backend.timeout.ms": "10000",
        "inflight.max": "64",
        # A worker killed with SIGKILL keeps its group membership until
        # this runs out, and its successor waits that long for partitions.
        "kafka.session.timeout.ms": "6000",
        "shutdown.timeout.ms": "20000",
        "log.level": "info",
    }
    conf.update({k: str(v) for k, v in (extra or {}).items()})
    return conf


class Worker(Proc):
    """`ragline serve` with a generated config file."""

    def __init__(self, workdir, conf, name="ragline"):
        self.config_path = Path(workdir) / f"{name}.conf"
        with open(self.config_path, "w") as f:
            f.write("# written by tests/integration/harness.py\n")
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        argv = [binary("ragline"), "serve", "--config", self.config_path]
        super().__init__(name, argv, workdir, env=child_env())

    def expect_clean_exit(self, timeout):
        """SIGTERM, then assert exit status 0 within `timeout` seconds."""
        started = time.monotonic()
        rc = self.stop(timeout)
        took = time.monotonic() - started
        assert rc == 0, f"{self.name} exited {rc} after SIGTERM ({took:.1f}s)"
        return took


# --------------------------------------------------------------------------
# Events


def traceparent(n):
    """A W3C traceparent header value, distinct for every n."""
    return f"00-{n:032x}-{n + 1:016x}-01"


def make_event(n, conversation, query=None):
    """A valid query event with id "ev-<n>" and a short history."""
    return {
        "id": f"ev-{n}",
        "conversation_id": conversation,
        "history": [
            {"role": "user", "content": f"earlier question {n}"},
            {"role": "assistant", "content": f"earlier answer {n}"},
        ],
        "query": query if query is not None else f"question {n}?",
        "recommended_answer": f"recommended {n}",
    }


def event_records(events):
    """(key, value, headers) for valid events: the key is the
    conversation id, each carries its own traceparent."""
    return [
        (e["conversation_id"], e, [("traceparent", traceparent(i).encode())])
        for i, e in enumerate(events)
    ]


def load_json(name):
    return json.loads((DATA / name).read_text())


def answers_by_id(records):
    """{event id: [Record, ...]} of output records, duplicates kept."""
    found = {}
    for r in records:
        found.setdefault(r.json()["id"], []).append(r)
    return found
