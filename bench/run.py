#!/usr/bin/env python3
"""ragline's benchmark: throughput, CPU, memory and latency against a real
broker and fakellm, side by side with a Python baseline doing the same job.

Run it through bench/run.sh, which builds ragline and fakellm and makes the
Python environment.  See docs/performance.md for what is measured and why.

Every wait has a deadline, and every process started here (the broker,
fakellm, the workers) is stopped in a finally block.
"""

import argparse
import datetime
import json
import shlex
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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

from workload import Workload

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
KAFKA_SH = ROOT / "deploy" / "kafka.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OUT_PARTITIONS = 4
IMPLS = ("ragline", "baseline")


def log(msg):
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


def wait_for(pred, timeout, what, interval=0.1):
    """Polls pred() until it returns something true and returns that;
    raises TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=30):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"({e})"
    return "\n".join(text.splitlines()[-lines:])


def percentile(values, q):
    """Nearest-rank percentile of a non-empty list; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------
# Processes


def child_env():
    """ragline reads RAGLINE_* variables as configuration and refuses the
    ones it does not know, so none of the runner's may reach it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAGLINE_")}


def stop_process(proc, sig=signal.SIGTERM, timeout=30, group=False):
    """Sends sig (to the process group it leads, if group), waits up to
    timeout, then SIGKILLs.  Returns the exit status (None if the process
    could not be reaped)."""
    def send(s):
        try:
            if group:
                os.killpg(proc.pid, s)
            else:
                proc.send_signal(s)
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        try:
            send(sig)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            try:
                return proc.wait(10)
            except subprocess.TimeoutExpired:
                return None
    return proc.returncode


def proc_cpu_seconds(pid):
    """user + system CPU of every thread of pid so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid):
    """CPU seconds by thread name (librdkafka names its threads rdk:*;
    the broker threads are summed as rdk:broker)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if comm.startswith("rdk:broker"):
            comm = "rdk:broker"
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        out[comm] = round(out.get(comm, 0) + cpu, 2)
    return out


def proc_status_kb(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return None


def allow_core_dump():
    """A worker that crashes leaves a core in its run directory (when the
    kernel's core_pattern is a plain file name), for backtrace()."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)


def backtrace(rundir, binary):
    """The threads' stacks from a core file in rundir, if gdb and a core
    are there; else ""."""
    cores = sorted(Path(rundir).glob("core*"))
    if not cores:
        return ""
    try:
        out = subprocess.run(
            ["gdb", "-q", "-batch", "-ex", "thread apply all bt",
             str(binary), str(cores[0])],
            capture_output=True, text=True, timeout=120,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"\n(core {cores[0]}, no backtrace: {e})"
    return f"\ncore {cores[0]}:\n{out[-6000:]}"


class Broker:
    """A single-node Kafka run by deploy/kafka.sh in its own directory."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.bootstrap = None
        self.admin = None

    def start(self):
        # The first start on a machine fetches the jars: a generous limit.
        subprocess.run(
            [str(KAFKA_SH), "start", str(self.dir)],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        self.bootstrap = (self.dir / "bootstrap").read_text().strip()
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def stop(self):
        subprocess.run([str(KAFKA_SH), "stop", str(self.dir)], timeout=120)

    def create_topics(self, specs, timeout=60):
        """specs: [(name, partitions, compact)].  Returns once all are in
        the metadata."""
        topics = [
            NewTopic(
                name,
                parts,
                1,
                config={"cleanup.policy": "compact"} if compact else {},
            )
            for name, parts, compact in specs
        ]
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

    def delete_topics(self, names, timeout=60):
        if not names:
            return
        futures = self.admin.delete_topics(list(names), operation_timeout=timeout)
        for fut in futures.values():
            try:
                fut.result(timeout=timeout)
            except Exception as e:  # noqa: BLE001 - cleanup is best effort
                log(f"deleting a topic: {e}")

    def group_stable(self, group):
        """True once the group has a member with partitions assigned."""
        try:
            fut = self.admin.describe_consumer_groups([group], request_timeout=5)
            desc = fut[group].result(timeout=10)
        except Exception:  # noqa: BLE001 - not there yet
            return False
        members = desc.members or []
        return any(m.assignment and m.assignment.topic_partitions for m in members)


class Fakellm:
    """tests/fakellm on a port of its own, restarted for every run so that
    its counters (max in flight) are the run's."""

    def __init__(self, binary, workdir, args):
        self.port_file = Path(workdir) / "fakellm.port"
        self.port_file.unlink(missing_ok=True)
        self.stderr_path = Path(workdir) / "fakellm.stderr"
        argv = [str(binary), "--port", "0", "--port-file", str(self.port_file)]
        argv += [str(a) for a in args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError(f"fakellm exited: {tail(self.stderr_path)}")
            if not self.port_file.exists():
                return None
            return self.port_file.read_text().strip()

        self.port = int(wait_for(port, 20, "fakellm's port file", 0.05))
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self):
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        stop_process(self.proc, timeout=10)


# --------------------------------------------------------------------------
# Kafka helpers


def new_producer(bootstrap, linger_ms=20):
    """A producer connected to the broker: the metadata request makes it
    connect now, so that the first records of a paced run do not wait for
    the connection (and their timestamps do not count that wait)."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.size": 1000000,
            "queue.buffering.max.kbytes": 262144,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )
    p.list_topics(timeout=10)
    return p


def produce_all(producer, topic, records, timestamps=None, pace=None, stop=None):
    """Produces (key, value) records.  timestamps, if given, is a dict
    filled with (partition, offset) -> CreateTime in ms.  pace, if given,
    is events per second (records produced on a schedule, not as fast as
    possible).  stop, an Event, ends a paced run early.  Returns the count
    produced."""
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        elif timestamps is not None:
            timestamps[(msg.partition(), msg.offset())] = msg.timestamp()[1]

    start = time.monotonic()
    count = 0
    for key, value in records:
        if pace:
            due = start + count / pace
            delay = due - time.monotonic()
            if delay > 0.001:
                if stop is not None and stop.wait(delay):
                    break
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(
            f"producing to {topic}: {left} record(s) unsent, errors: {errors[:3]}"
        )
    return count


def high_watermarks(consumer, topic, partitions):
    """Records in the topic now, or None while a new topic's leaders are
    still being elected."""
    total = 0
    for p in range(partitions):
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
        except KafkaException:
            return None
        total += high
    return total


def read_topic(bootstrap, topic, partitions, timeout=120):
    """Every record of the topic now: [(partition, offset, ts_ms, value,
    headers)]."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-reader-" + uuid.uuid4().hex[:8],
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        todo = {p for p, high in ends.items() if high > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out = []
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {len(out)} records so far")
            for m in c.consume(10000, 0.5):
                if m.error():
                    continue
                out.append(
                    (m.partition(), m.offset(), m.timestamp()[1], m.value(), m.headers())
                )
                if m.offset() + 1 >= ends[m.partition()]:
                    todo.discard(m.partition())
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------
# Scenarios


@dataclass
class Scenario:
    name: str
    title: str
    inflight: int
    n: int
    n_quick: int
    fakellm: list = field(default_factory=list)
    paced: float = 0.0  # > 0: produce live at this fraction of max rate
    seconds: float = 0.0  # paced runs: how long to produce
    seconds_quick: float = 0.0
    timeout: float = 0.0  # seconds a run may take; 0 = --run-timeout


# Sizes: the default set, three runs of each scenario for each worker,
# takes about nine minutes on the 2-core development VM; --quick about one
# and a half.  A 1 s backend needs several waves of inflight.max events for
# the rate to mean anything.
SCENARIOS = [
    Scenario("instant", "backend 0 ms, 1,024 in flight", 1024, 10000, 3000,
             ["--latency-ms", 0]),
    Scenario("1s-1024", "backend 1 s, 1,024 in flight", 1024, 1024 * 8,
             1024 * 3, ["--latency-ms", 1000]),
    Scenario("1s-4096", "backend 1 s, 4,096 in flight", 4096, 4096 * 4,
             4096 * 2, ["--latency-ms", 1000]),
    Scenario("429-storm", "half of the calls 429, Retry-After 1, 1 s",
             1024, 1024 * 8, 1024 * 3,
             ["--latency-ms", 1000, "--error-rate", 0.5, "--error-status",
              429, "--retry-after", 1], timeout=60),
    Scenario("half-rate", "backend 0 ms, input at half the max rate", 1024,
             0, 0, ["--latency-ms", 0], paced=0.5, seconds=12,
             seconds_quick=5),
]


# --------------------------------------------------------------------------
# One run of one worker


class Bench:
    def __init__(self, args, broker, workdir):
        self.args = args
        self.broker = broker
        self.workdir = Path(workdir)
        self.workload = Workload()
        self.build = Path(args.build)
        self.ragline = self.build / "ragline"
        self.fakellm = self.build / "fakellm"
        self.evidence_topic = "bench.evidence"
        self.inputs = {}  # n -> (topic, timestamps)
        self.created = []
        self.meta = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "bench-meta"}
        )

    def close(self):
        self.meta.close()

    # -- input ---------------------------------------------------------

    def load_evidence(self):
        self.broker.create_topics([(self.evidence_topic, 1, True)])
        p = new_producer(self.broker.bootstrap)
        n = produce_all(
            p,
            self.evidence_topic,
            ((k.encode(), v.encode()) for k, v in self.workload.evidence_records()),
        )
        log(f"evidence: {n} records in {self.evidence_topic}")

    def prefilled_input(self, n):
        """A topic holding events 0..n-1, shared by every run that wants n
        events (each run reads it in a fresh group)."""
        if n in self.inputs:
            return self.inputs[n]
        topic = f"bench.in.{n}"
        self.broker.create_topics([(topic, 4, False)])
        stamps = {}
        t0 = time.monotonic()
        p = new_producer(self.broker.bootstrap)
        produce_all(p, topic, (self.workload.event(i) for i in range(n)), stamps)
        log(f"input: {n} events in {topic} ({time.monotonic() - t0:.1f} s)")
        self.inputs[n] = (topic, stamps)
        return self.inputs[n]

    # -- workers -------------------------------------------------------

    def worker_argv(self, impl, rundir, topics, backend_url, inflight):
        if impl == "ragline":
            conf = rundir / "ragline.conf"
            settings = {
                "kafka.bootstrap.servers": self.broker.bootstrap,
                "topic.input": topics["input"],
                "topic.output": topics["output"],
                "topic.dlq": topics["dlq"],
                "topic.evidence": self.evidence_topic,
                "group.id": topics["group"],
                "backend.url": backend_url,
                "backend.model": "bench",
                "inflight.max": inflight,
                "log.level": "warn",
            }
            settings.update(self.args.ragline_conf)
            conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
            argv = [str(self.ragline), "serve", "--config", str(conf)]
            if self.args.callgrind:
                argv = [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={self.args.callgrind}",
                ] + argv
            elif self.args.perf:
                argv = [
                    "perf", "record", "-q", "--call-graph", "dwarf,16384",
                    "-F", "499",
                    "-o", self.args.perf,
                ] + argv
            elif self.args.wrap:
                argv = shlex.split(self.args.wrap) + argv
            return argv
        return [
            sys.executable,
            str(BENCH / "baseline.py"),
            "--bootstrap", self.broker.bootstrap,
            "--input", topics["input"],
            "--output", topics["output"],
            "--dlq", topics["dlq"],
            "--evidence", self.evidence_topic,
            "--group", topics["group"],
            "--backend-url", backend_url,
            "--model", "bench",
            "--inflight", str(inflight),
            "--template", str(ROOT / "templates" / "default.txt"),
        ]

    def run_one(self, impl, sc, k, pace_rate=None):
        """Runs one worker on one scenario; returns a dict of results."""
        tag = f"{sc.name}.{impl}.{k}.{uuid.uuid4().hex[:6]}"
        rundir = self.workdir / tag
        rundir.mkdir(parents=True)
        topics = {
            "output": f"bench.out.{tag}",
            "dlq": f"bench.dlq.{tag}",
            "group": f"bench.{tag}",
        }
        specs = [(topics["output"], OUT_PARTITIONS, False), (topics["dlq"], 1, False)]
        feeder = None
        stop_feed = threading.Event()
        if sc.paced:
            seconds = sc.seconds_quick if self.args.quick else sc.seconds
            n = max(1, int(pace_rate * seconds))
            topics["input"] = f"bench.in.{tag}"
            specs.append((topics["input"], 4, False))
            stamps = {}
            # Made before the run so that the runner's own CPU goes to
            # producing, not to composing events, while the worker runs.
            records = [self.workload.event(i) for i in range(n)]
            feed_producer = new_producer(self.broker.bootstrap, linger_ms=1)
        else:
            n = sc.n_quick if self.args.quick else sc.n
            n = self.args.events or n
            topics["input"], stamps = self.prefilled_input(n)
        self.broker.create_topics(specs)
        self.created += [t for t, _, _ in specs]

        result = {"impl": impl, "scenario": sc.name, "run": k, "events": n,
                  "timeout": False}
        if sc.paced:
            result["paced_rate"] = pace_rate
        fake = Fakellm(self.fakellm, rundir, sc.fakellm)
        proc = None
        try:
            argv = self.worker_argv(impl, rundir, topics, fake.url, sc.inflight)
            stderr = open(rundir / f"{impl}.stderr", "wb")
            t_start = time.time()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=child_env(),
                cwd=str(rundir),
                preexec_fn=allow_core_dump,
                # Its own group, so that the signals also reach a worker
                # started under --wrap, --perf or --callgrind.
                start_new_session=True,
            )
            stderr.close()
            if sc.paced:
                wait_for(
                    lambda: self._alive(proc, rundir, impl)
                    and self.broker.group_stable(topics["group"]),
                    60,
                    f"{impl} to join its group",
                    0.2,
                )
                feeder = threading.Thread(
                    target=self._feed,
                    args=(feed_producer, topics["input"], records, pace_rate,
                          stamps, stop_feed),
                    daemon=True,
                )
                feeder.start()
            samples, done = self._watch(proc, rundir, impl, topics, n, sc)
            if done < n:
                result["timeout"] = True
                log(f"{tag}: only {done} of {n} records out in time")
            result.update(self._sample_before_stop(proc, fake, samples, max(done, 1)))
            t_stop = time.monotonic()
            result["exit_status"] = stop_process(proc, timeout=60, group=True)
            result["stop_seconds"] = round(time.monotonic() - t_stop, 2)
        except (TimeoutError, RuntimeError) as e:
            result["error"] = str(e)
            log(f"{tag}: {e}")
        finally:
            stop_feed.set()
            if feeder is not None:
                feeder.join(150)
            if proc is not None:
                stop_process(proc, timeout=10, group=True)
            fake.stop()
        if "error" not in result:
            # A prefilled topic was written before the worker started: its
            # timestamps measure the backlog, not the worker.
            result.update(
                self._analyse(topics, stamps if sc.paced else {}, n, t_start)
            )
        return result

    def _alive(self, proc, rundir, impl):
        if proc.poll() is not None:
            raise RuntimeError(
                f"{impl} exited with {proc.returncode}: "
                f"{tail(rundir / (impl + '.stderr'))}"
                + backtrace(rundir, self.ragline if impl == "ragline" else sys.executable)
            )
        return True

    def _feed(self, p, topic, records, rate, stamps, stop):
        try:
            produce_all(p, topic, records, stamps, pace=rate, stop=stop)
        except Exception as e:  # noqa: BLE001 - the run notices the gap
            log(f"paced producer: {e}")

    def _watch(self, proc, rundir, impl, topics, n, sc):
        """Waits until n records are out (answers + dead letters), or the
        scenario's time is up.  Samples RSS and progress every 0.25 s;
        returns the samples and the records out."""
        limit = sc.timeout or self.args.run_timeout
        deadline = time.monotonic() + limit
        samples = []
        while True:
            self._alive(proc, rundir, impl)
            out = high_watermarks(self.meta, topics["output"], OUT_PARTITIONS)
            dlq = high_watermarks(self.meta, topics["dlq"], 1)
            done = out + dlq if out is not None and dlq is not None else 0
            rss = proc_status_kb(proc.pid, "VmRSS")
            samples.append((time.monotonic(), done, rss))
            if done >= n or time.monotonic() > deadline:
                return samples, done
            time.sleep(0.25)

    def _sample_before_stop(self, proc, fake, samples, n):
        """CPU, memory and fakellm's counters just before the stop; n is
        the records out, which the CPU is divided by."""
        cpu = proc_cpu_seconds(proc.pid)
        threads = thread_cpu_seconds(proc.pid)
        hwm = proc_status_kb(proc.pid, "VmHWM")
        stats = fake.stats()
        half = next((s for s in samples if s[1] >= n / 2), samples[-1])
        return {
            "cpu_seconds": cpu,
            "cpu_by_thread": threads,
            "cpu_us_per_event": cpu / n * 1e6,
            "events_per_cpu_second": n / cpu if cpu > 0 else None,
            "peak_rss_mb": hwm / 1024.0,
            "rss_half_mb": half[2] / 1024.0,
            "rss_end_mb": samples[-1][2] / 1024.0,
            "fakellm_max_inflight": stats.get("max_inflight"),
            "fakellm_requests": stats.get("requests"),
            "fakellm_connections": stats.get("connections_total"),
            "fakellm_replies": stats.get("replies"),
        }

    def _analyse(self, topics, stamps, n, t_start):
        answers = read_topic(self.broker.bootstrap, topics["output"], OUT_PARTITIONS)
        dead = read_topic(self.broker.bootstrap, topics["dlq"], 1)
        out_ts = [r[2] for r in answers] + [r[2] for r in dead]
        ids = set()
        added, e2e, e2e_at = [], [], []
        for _, _, ts, value, _ in answers:
            a = json.loads(value)
            ids.add(a["id"])
            lat = a["latency_ms"]
            added.append(lat["total"] - lat["backend"])
            src = a["source"]
            t_in = stamps.get((src["partition"], src["offset"]))
            if t_in is not None:
                e2e.append(ts - t_in)
                e2e_at.append((t_in, ts - t_in))
        classes = {}
        for _, _, ts, _, headers in dead:
            h = {k: v for k, v in headers or []}
            cls = (h.get("ragline.error.class") or b"?").decode()
            classes[cls] = classes.get(cls, 0) + 1
            try:
                key = (
                    int(h["ragline.source.partition"]),
                    int(h["ragline.source.offset"]),
                )
                if key in stamps:
                    e2e.append(ts - stamps[key])
            except (KeyError, ValueError):
                pass
        if not out_ts:
            return {"out": 0, "answers": 0, "dead_letters": 0}
        first, last = min(out_ts), max(out_ts)
        span = (last - first) / 1000.0
        return {
            "out": len(out_ts),
            "answers": len(answers),
            "dead_letters": len(dead),
            "dlq_classes": classes,
            "duplicates": max(0, len(answers) + len(dead) - n),
            "distinct_answer_ids": len(ids),
            "rate_first_last": (len(out_ts) - 1) / span if span > 0 else None,
            "rate_start_last": len(out_ts) / (last / 1000.0 - t_start),
            "added_p50_ms": percentile(added, 50),
            "added_p99_ms": percentile(added, 99),
            "e2e_p50_ms": percentile(e2e, 50),
            "e2e_p99_ms": percentile(e2e, 99),
            "e2e_series": e2e_series(e2e_at) if e2e_at else None,
        }


def e2e_series(points, buckets=10):
    """p50 and max end-to-end latency in ms for each tenth of the input
    (by input time): shows whether a paced worker kept up or fell
    behind."""
    points.sort()
    size = max(1, len(points) // buckets)
    out = []
    for i in range(0, len(points), size):
        lat = [p[1] for p in points[i : i + size]]
        out.append((percentile(lat, 50), max(lat)))
    return out


# --------------------------------------------------------------------------
# Report

METRICS = [
    # key, header, format
    ("events", "events", "{:.0f}"),
    ("out", "out", "{:.0f}"),
    ("rate_first_last", "ev/s", "{:.0f}"),
    ("rate_start_last", "ev/s(all)", "{:.0f}"),
    ("cpu_us_per_event", "CPU us/ev", "{:.0f}"),
    ("events_per_cpu_second", "ev/CPU-s", "{:.0f}"),
    ("peak_rss_mb", "RSS MB", "{:.1f}"),
    ("rss_half_mb", "RSS@50%", "{:.1f}"),
    ("fakellm_max_inflight", "held", "{:.0f}"),
    ("added_p50_ms", "add p50", "{:.2f}"),
    ("added_p99_ms", "add p99", "{:.2f}"),
    ("e2e_p50_ms", "e2e p50", "{:.0f}"),
    ("e2e_p99_ms", "e2e p99", "{:.0f}"),
    ("answers", "answers", "{:.0f}"),
    ("dead_letters", "dlq", "{:.0f}"),
]


def summarise(runs):
    """Medians over the runs of one scenario and worker."""
    ok = [r for r in runs if "error" not in r]
    out = {
        "runs": len(runs),
        "failed": len(runs) - len(ok),
        "timeouts": sum(1 for r in ok if r.get("timeout")),
    }
    for key, _, _ in METRICS:
        out[key] = median_or_none([r.get(key) for r in ok])
    return out


def fmt(value, spec):
    return "-" if value is None else spec.format(value)


def table(rows, headers):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    lines = []
    for j, r in enumerate([headers] + rows):
        cells = [
            str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i])
            for i, c in enumerate(r)
        ]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(summary, scenarios, impls):
    rows = []
    for sc in scenarios:
        for impl in impls:
            s = summary.get(sc.name, {}).get(impl)
            if not s:
                continue
            note = ""
            if s["failed"]:
                note += f" ({s['failed']} failed)"
            if s["timeouts"]:
                note += f" ({s['timeouts']} timed out)"
            row = [sc.name, impl + note]
            row += [fmt(s[key], spec) for key, _, spec in METRICS]
            rows.append(row)
    text = table(rows, ["scenario", "worker"] + [h for _, h, _ in METRICS])

    if "baseline" in impls and "ragline" in impls:
        ratios = []
        for sc in scenarios:
            r = summary.get(sc.name, {}).get("ragline")
            b = summary.get(sc.name, {}).get("baseline")
            if not r or not b:
                continue
            ratios.append(
                [
                    sc.name,
                    "ragline/baseline",
                    ratio(r["events_per_cpu_second"], b["events_per_cpu_second"]),
                    ratio(r["rate_first_last"], b["rate_first_last"]),
                    ratio(r["rate_start_last"], b["rate_start_last"]),
                    ratio(b["peak_rss_mb"], r["peak_rss_mb"]),
                ]
            )
        text += "\n\n" + table(
            ratios,
            ["scenario", "", "ev/CPU-s", "ev/s", "ev/s(all)", "RSS (b/r)"],
        )
    return text


def ratio(a, b):
    if a is None or not b:
        return "-"
    return f"{a / b:.1f}x"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    ap.add_argument("--runs", type=int, default=3, help="repeats; medians reported")
    ap.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS),
    )
    ap.add_argument("--no-baseline", action="store_true", help="ragline only")
    ap.add_argument("--build", default=str(ROOT / "build-bench"))
    ap.add_argument("--run-timeout", type=float, default=120,
                    help="seconds one worker run may take")
    ap.add_argument("--pace-rate", type=float, default=0,
                    help="events/s of the paced scenario when 'instant' is "
                    "not run (default: half the instant rate)")
    ap.add_argument("--events", type=int, default=0,
                    help="events of every prefilled scenario (default: "
                    "each scenario's own)")
    ap.add_argument("--wrap", metavar="COMMAND",
                    help="run ragline under COMMAND, e.g. 'strace -c -f -o "
                    "FILE' (timings are then meaningless)")
    ap.add_argument("--perf", metavar="FILE",
                    help="run ragline under 'perf record -g', writing FILE "
                    "(read it with 'perf report -i FILE')")
    ap.add_argument("--callgrind", metavar="FILE",
                    help="run ragline under valgrind's callgrind, writing "
                    "FILE (timings are then meaningless)")
    ap.add_argument("--ragline-conf", metavar="KEY=VALUE", action="append",
                    default=[], type=lambda kv: tuple(kv.split("=", 1)),
                    help="a setting of ragline's configuration, added or "
                    "replacing the runner's (repeatable), e.g. "
                    "log.level=info")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (logs, configs)")
    ap.add_argument("--results", default=str(BENCH / "results"))
    return ap.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.quick and "--runs" not in " ".join(argv):
        args.runs = 1
    wanted = args.scenarios.split(",")
    unknown = set(wanted) - {s.name for s in SCENARIOS}
    if unknown:
        sys.exit(f"run.py: unknown scenario(s): {', '.join(sorted(unknown))}")
    scenarios = [s for s in SCENARIOS if s.name in wanted]
    impls = ("ragline",) if args.no_baseline else IMPLS
    for b in ("ragline", "fakellm"):
        if not os.access(Path(args.build) / b, os.X_OK):
            sys.exit(f"run.py: {args.build}/{b} is missing; build first (run.sh)")

    workdir = Path(tempfile.mkdtemp(prefix="ragline-bench-"))
    broker = Broker(workdir / "kafka")
    runs = []
    started = time.monotonic()
    bench = None
    try:
        log(f"starting the broker in {workdir / 'kafka'}")
        broker.start()
        bench = Bench(args, broker, workdir)
        bench.load_evidence()
        instant_rates = {impl: [] for impl in impls}
        for k in range(args.runs):
            for sc in scenarios:
                for impl in impls:
                    rate = None
                    if sc.paced:
                        rate = pace_rate(args, sc, instant_rates[impl])
                    log(f"run {k + 1}/{args.runs} {sc.name} {impl}"
                        + (f" at {rate:.0f} ev/s" if rate else ""))
                    r = bench.run_one(impl, sc, k, rate)
                    runs.append(r)
                    if sc.name == "instant" and r.get("rate_first_last"):
                        instant_rates[impl].append(r["rate_first_last"])
                    log("  " + short(r))
    finally:
        if bench is not None:
            bench.close()
        log("stopping the broker")
        broker.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], timeout=120)
        else:
            log(f"kept {workdir}")

    summary = {}
    for sc in scenarios:
        for impl in impls:
            mine = [r for r in runs if r["scenario"] == sc.name and r["impl"] == impl]
            if mine:
                summary.setdefault(sc.name, {})[impl] = summarise(mine)
    text = report(summary, scenarios, impls)
    elapsed = time.monotonic() - started
    m = machine()
    head = (
        f"ragline bench: {m['nproc']} CPU ({m['cpu']}), {m['mem_gib']} GiB, "
        f"{'quick, ' if args.quick else ''}{args.runs} run(s), medians; "
        f"{elapsed:.0f} s in all"
    )
    print(head)
    print()
    print(text)

    Path(args.results).mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(args.results) / f"{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(
        json.dumps(
            {
                "machine": m,
                "argv": argv,
                "quick": args.quick,
                "runs": runs,
                "summary": summary,
                "table": text,
                "seconds": elapsed,
            },
            indent=1,
        )
    )
    print(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    failed = sum(1 for r in runs if "error" in r)
    return 1 if failed else 0  # a timed-out run is a measurement, not a failure


def pace_rate(args, sc, rates):
    if rates:
        return statistics.median(rates) * sc.paced
    if args.pace_rate > 0:
        return args.pace_rate
    return 2000.0


def short(r):
    if "error" in r:
        return "FAILED: " + r["error"].splitlines()[0]
    return (
        f"{r['events']} events, {fmt(r.get('rate_first_last'), '{:.0f}')} ev/s, "
        f"{fmt(r.get('cpu_us_per_event'), '{:.0f}')} us CPU/ev, "
        f"RSS {fmt(r.get('peak_rss_mb'), '{:.1f}')} MB, "
        f"held {r.get('fakellm_max_inflight')}, "
        f"connections {r.get('fakellm_connections')}, "
        f"added p99 {fmt(r.get('added_p99_ms'), '{:.2f}')} ms, "
        f"dlq {r.get('dead_letters')}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
