#!/usr/bin/env python3
"""ragline's fault suite: the worker, the broker and the backend fail on
purpose while events flow, and a read_committed consumer of the answer
and dead-letter topics counts what came out.

Each case runs against a real Kafka broker (deploy/kafka.sh) or, for the
faults only it can inject, librdkafka's mock cluster (tests/faults/
mockdriver.c), with fakellm as the backend, and ends in one table row:

  case | mode | events in | answers out | dead letters | lost |
  duplicates | time | verdict

lost = input ids with neither an answer nor a dead letter; duplicates =
ids seen more than once (answer and dead letter together count too).
Every wait has a deadline and every process a case starts is killed in a
finally block.  Exit status 1 when any expectation fails.

Run it with tests/faults/run.sh (builds, makes the venv, then calls this
file); docs/reliability.md has the table of a full run.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import harness  # noqa: E402  (tests/integration/harness.py, reused as is)

KAFKA_SH = ROOT / "deploy" / "kafka.sh"


class CaseFailed(Exception):
    """A case could not go on (a deadline passed, a worker died); the
    counts made so far still go into its row."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def child_env():
    # ragline reads RAGLINE_* variables as configuration.
    return {k: v for k, v in os.environ.items() if not k.startswith("RAGLINE_")}


# --------------------------------------------------------------------------
# Counting what came out


class Tally:
    """Reads the output and dead-letter topics from the beginning as a
    read_committed consumer and counts each event id seen on each."""

    def __init__(self, bootstrap, output, dlq):
        self.output, self.dlq = output, dlq
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "faults.tally",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
                # The broker is killed on purpose; its errors are expected.
                "log_level": 0,
                "error_cb": lambda err: None,
            }
        )
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        md = admin.list_topics(timeout=30)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in (output, dlq)
            for p in md.topics[t].partitions
        ]
        self.consumer.assign(parts)
        self.answers = Counter()
        self.dead = Counter()
        self.reasons = Counter()
        self.unreadable = 0

    def poll(self, seconds=0.2):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for msg in self.consumer.consume(2000, timeout=min(left, 0.2)):
                if msg.error():
                    continue
                self._count(msg)

    def _count(self, msg):
        m = re.search(rb'"id":\s*"([^"]*)"', msg.value() or b"")
        if not m:
            self.unreadable += 1
            return
        eid = m.group(1).decode()
        if msg.topic() == self.output:
            self.answers[eid] += 1
            return
        self.dead[eid] += 1
        for k, v in msg.headers() or []:
            if k == "ragline.error.message" and v:
                # Group reasons by their shape, not by the URL or count.
                text = re.sub(r"\d+", "N", v.decode("utf-8", "replace"))
                self.reasons[re.sub(r"http://\S+", "URL", text)[:90]] += 1

    def seen(self):
        return len(set(self.answers) | set(self.dead))

    def close(self):
        self.consumer.close()


@dataclass
class Row:
    case: str
    mode: str
    events: int = 0
    answers: int = 0
    dead: int = 0
    lost: int = 0
    dups: int = 0
    seconds: float = 0.0
    verdict: str = ""
    notes: list = field(default_factory=list)
    failed: bool = False


# --------------------------------------------------------------------------
# Processes


class FakeLLM:
    """fakellm with the suite's options.  After stop(), start() brings a
    new one up on the same port, as a restarted model server would be,
    with other options if given."""

    def __init__(self, run, name="fakellm", port=0, **opts):
        self.run, self.name, self.opts = run, name, opts
        self.starts = 0
        self.proc = None
        self.port = port
        self.start(**opts)

    def start(self, **opts):
        self.starts += 1
        name = f"{self.name}.{self.starts}"
        port_file = self.run.dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        argv = [harness.binary("fakellm"), "--port", str(self.port),
                "--port-file", port_file]
        for key, value in (opts or self.opts).items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        self.proc = self.run.spawn(name, argv)

        def port():
            if not self.proc.alive():
                raise CaseFailed(f"{name} exited: {harness.tail(self.proc.stderr_path, 5)}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            return int(text) if text.isdigit() and int(text) > 0 else None

        self.port = harness.wait_for(port, 20, f"{name}'s port file")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.expected = False
        self.proc.stop(10)


class Broker:
    """A broker of deploy/kafka.sh in its own directory; the suite kills,
    stops and restarts it."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.inner = harness.Broker(self.dir)

    def start(self):
        """Starts the broker, or reuses the one already running there
        (left by --keep-brokers)."""
        status = subprocess.run([str(KAFKA_SH), "status", str(self.dir)],
                                capture_output=True, text=True)
        if status.returncode == 0:
            self.inner.bootstrap = (self.dir / "bootstrap").read_text().strip()
        else:
            self.inner.start()
        # A quiet admin client: this broker is killed on purpose.
        self.inner.admin = AdminClient({"bootstrap.servers": self.inner.bootstrap,
                                        "log_level": 0})
        self.bootstrap = self.inner.bootstrap
        self.admin = self.inner.admin

    def pid(self):
        return int((self.dir / "pid").read_text())

    def kill(self):
        subprocess.run([str(KAFKA_SH), "kill", str(self.dir)], check=True,
                       timeout=60)

    def restart(self):
        """Starts the broker again on its data and ports (kafka.sh keeps
        both for a directory that holds data)."""
        before = self.bootstrap
        subprocess.run([str(KAFKA_SH), "start", str(self.dir)], check=True,
                       timeout=180, stdout=subprocess.DEVNULL)
        now = (self.dir / "bootstrap").read_text().strip()
        if now != before:
            raise CaseFailed(f"the broker came back on {now}, not {before}")

    def stop(self):
        self.inner.stop()

    def create_topics(self, topics, input_partitions):
        topics.create(self.inner, input_partitions=input_partitions)


class MockCluster:
    """tests/faults/mockdriver: librdkafka's mock cluster in a process of
    its own, driven by commands on its standard input."""

    def __init__(self, run, brokers=3):
        self.run = run
        with open(run.dir / "mockdriver.stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [str(run.suite.mockdriver), str(brokers)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, bufsize=1,
            )
        run.mocks.append(self)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "bootstrap":
            raise CaseFailed(f"mockdriver said {line!r}")
        self.bootstrap = line[1]

    def command(self, text):
        log(f"  mock: {text}")
        self.proc.stdin.write(text + "\n")
        reply = self.proc.stdout.readline().strip()
        if reply != "ok":
            raise CaseFailed(f"mockdriver: '{text}': {reply or 'no reply'}")

    def create_topics(self, topics, input_partitions):
        self.command(f"topic {topics.input} {input_partitions} 3")
        self.command(f"topic {topics.output} 4 3")
        self.command(f"topic {topics.dlq} 1 3")
        self.command(f"topic {topics.evidence} 1 3")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --------------------------------------------------------------------------
# One case


class Run:
    """The state of one case: its directory, topics, processes and
    counts.  Everything it starts is killed by close()."""

    def __init__(self, suite, case, mode, budget):
        self.suite, self.case, self.mode = suite, case, mode
        self.dir = suite.workdir / f"{case}.{mode}"
        shutil.rmtree(self.dir, ignore_errors=True)  # an earlier run's logs
        self.dir.mkdir(parents=True)
        self.started = time.monotonic()
        self.deadline = self.started + budget
        self.procs = []
        self.mocks = []
        self.workers = {}
        self.extras = {}
        self.restarts = Counter()
        self.crashes = 0
        self.tally = None
        self.ids = []
        self.row = Row(case, mode)
        self.checks = []
        # The 2.0.2 mock cluster keeps aborted transactional records
        # visible to read_committed consumers (it writes no abort
        # markers), so a case that aborts on purpose there cannot count
        # duplicates; it says so in its note.
        self.aborted_visible = False

    # ---- processes

    def spawn(self, name, argv):
        proc = harness.Proc(name, argv, self.dir, env=child_env())
        proc.expected = True
        self.procs.append(proc)
        return proc

    def worker(self, name, extra=None):
        """Starts (or restarts) worker `name` with the case's config."""
        conf = dict(self.conf)
        if self.mode == "exactly-once":
            conf["delivery"] = "exactly-once"
            conf["instance.id"] = name
        conf.update(extra or {})
        self.extras[name] = extra
        self.restarts[name] += 1
        tag = name if self.restarts[name] == 1 else f"{name}.{self.restarts[name]}"
        path = self.dir / f"{tag}.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        proc = self.spawn(tag, [harness.binary("ragline"), "serve", "--config", path])
        self.workers[name] = proc
        return proc

    def kill_worker(self, name):
        proc = self.workers[name]
        proc.expected = False
        proc.kill()

    def stop_worker(self, name, timeout=60):
        """SIGTERM; returns the exit status."""
        proc = self.workers[name]
        proc.expected = False
        return proc.stop(timeout)

    def close(self):
        for proc in self.procs:
            if proc.alive():
                try:
                    proc.popen.send_signal(signal.SIGCONT)
                except OSError:
                    pass
                proc.kill()
        for mock in self.mocks:
            mock.close()

    # ---- topics and events

    def setup(self, kafka, n, partitions=4, backend=None, conf=None,
              make=None):
        """Creates the case's topics on `kafka` (a Broker or a
        MockCluster), produces n events and prepares the worker config.
        make(i) may return the query of event i (to inject faults)."""
        self.kafka = kafka
        self.topics = harness.Topics.fresh(f"{self.case}-{self.mode}")
        kafka.create_topics(self.topics, partitions)
        events = []
        for i in range(n):
            query = make(i) if make else None
            events.append(harness.make_event(i, f"conv-{i % 256}", query))
        self.ids = [e["id"] for e in events]
        harness.produce(kafka.bootstrap, self.topics.input,
                        harness.event_records(events), timeout=120)
        self.row.events = n
        self.conf = {
            "kafka.bootstrap.servers": kafka.bootstrap,
            "group.id": self.topics.group,
            "topic.input": self.topics.input,
            "topic.output": self.topics.output,
            "topic.dlq": self.topics.dlq,
            "topic.evidence": self.topics.evidence,
            "backend.url": backend.url if backend else "",
            "backend.api": "chat",
            "backend.model": "fake-model",
            "backend.timeout.ms": "10000",
            # Under its cap the worker pauses and resumes partitions, and
            # each resume waits out a fetch long poll: 256 keeps a
            # backlog moving at a few hundred events a second.
            "inflight.max": "256",
            "kafka.session.timeout.ms": "6000",
            "kafka.heartbeat.interval.ms": "500",
            "shutdown.timeout.ms": "20000",
            "log.level": "info",
        }
        self.conf.update({k: str(v) for k, v in (conf or {}).items()})
        self.tally = Tally(kafka.bootstrap, self.topics.output, self.topics.dlq)

    # ---- waiting

    def check_workers(self):
        """A worker that exits on its own fails the case but is started
        again, as a supervisor would, so that the counts still say
        whether anything was lost; any other process exiting ends the
        case."""
        for proc in list(self.procs):
            if not proc.expected or proc.alive():
                continue
            proc.expected = False
            name = next((n for n, p in self.workers.items() if p is proc), None)
            last = harness.tail(proc.stderr_path, 200).splitlines()
            why = next((ln for ln in reversed(last)
                        if " ERROR " in ln and "brokers are down" not in ln),
                       last[-1] if last else "")
            text = f"{proc.name} exited {proc.popen.returncode}: {why[25:]}"
            if name is None or self.crashes >= 5:
                raise CaseFailed(text)
            self.crashes += 1
            log(f"  {text}; restarting it")
            self.expect(False, f"{proc.name} exited {proc.popen.returncode} "
                               "on its own (restarted)")
            self.note(text[:300])
            self.worker(name, self.extras.get(name))

    def until(self, pred, timeout, what):
        """Counts output until pred() holds; CaseFailed after `timeout`
        seconds or at the case's deadline, whichever comes first."""
        end = min(time.monotonic() + timeout, self.deadline)
        while not pred():
            if time.monotonic() >= end:
                raise CaseFailed(
                    f"timed out waiting for {what} "
                    f"({self.tally.seen()}/{len(self.ids)} accounted)"
                )
            self.check_workers()
            self.tally.poll(0.2)

    def progress(self, fraction, timeout=300):
        want = int(len(self.ids) * fraction)
        self.until(lambda: self.tally.seen() >= want, timeout,
                   f"{fraction:.0%} of the events accounted for")

    def all_done(self, timeout=600):
        self.progress(1.0, timeout)

    def sleep(self, seconds):
        """Sleeps while counting output."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_workers()
            self.tally.poll(min(0.2, max(0.0, end - time.monotonic())))

    def settle(self, seconds=3.0):
        """Keeps counting a while, so that late duplicates are seen."""
        self.tally.poll(seconds)

    def stop_all(self, timeout=60):
        """SIGTERM every worker still running; each must exit 0."""
        for name, proc in self.workers.items():
            if proc.alive() and proc.expected:
                rc = self.stop_worker(name, timeout)
                self.expect(rc == 0, f"{proc.name} exit 0 on SIGTERM (got {rc})")

    # ---- verdict

    def expect(self, ok, what):
        self.checks.append((bool(ok), what))

    def note(self, text):
        self.row.notes.append(text)

    def log_count(self, pattern, name=None):
        """Lines matching `pattern` in the logs of every worker (or of
        the starts of worker `name`)."""
        total = 0
        for proc in self.procs:
            if not proc.argv or not proc.argv[0].endswith("ragline"):
                continue
            if name and proc.name.split(".")[0] != name:
                continue
            total += len(re.findall(pattern, proc.stderr(), re.M))
        return total

    def finish(self, error=None):
        row, t = self.row, self.tally
        if t:
            t.poll(0.5)
            row.answers = sum(t.answers.values())
            row.dead = sum(t.dead.values())
            everything = t.answers + t.dead
            row.lost = sum(1 for i in self.ids if i not in everything)
            row.dups = sum(1 for c in everything.values() if c > 1)
            if t.unreadable:
                self.note(f"{t.unreadable} output record(s) without an id")
            for reason, count in t.reasons.most_common(3):
                self.note(f"dead letters: {count} x '{reason}'")
            t.close()
        row.seconds = time.monotonic() - self.started
        if error:
            self.checks.insert(0, (False, str(error).splitlines()[0]))
            self.note(str(error))
        self.expect(row.lost == 0, f"lost {row.lost}, want 0")
        if self.mode == "exactly-once" and not self.aborted_visible:
            self.expect(row.dups == 0, f"duplicates {row.dups}, want 0")
        failed = [what for ok, what in self.checks if not ok]
        row.failed = bool(failed)
        row.verdict = "FAIL: " + "; ".join(failed) if failed else "ok"
        return row


# --------------------------------------------------------------------------
# The cases.  Each takes a Run, does its faults and states its own
# expectations with run.expect(); lost = 0 (and duplicates = 0 under
# exactly-once) are checked for every case by Run.finish().


def case_worker_kill(run, quick):
    """The worker is SIGKILLed three times (once with --quick) while it
    works through a backlog, and restarted after a short pause."""
    n = 2000 if quick else 10000
    llm = FakeLLM(run, latency_ms=12, latency_dist="uniform", seed=1)
    run.setup(run.suite.broker, n, backend=llm)
    run.worker("w1")
    marks = [0.5] if quick else [0.2, 0.45, 0.7]
    for mark in marks:
        run.progress(mark)
        run.kill_worker("w1")
        log(f"  SIGKILL at {run.tally.seen()}/{n}")
        time.sleep(1.0)
        run.worker("w1")
    run.all_done()
    run.settle()
    run.stop_all()
    run.note(f"{len(marks)} SIGKILLs")


def case_backend_random_latency(run, quick):
    """Latency drawn uniformly from 0-3 s, so calls finish far out of
    offset order, and one SIGKILL in the middle: the committed offset
    must never have passed an event still in flight."""
    n = 1000 if quick else 3000
    llm = FakeLLM(run, latency_ms=1500, latency_dist="uniform", seed=2)
    run.setup(run.suite.broker, n, backend=llm,
              conf={"inflight.max": 512, "ordering": "none"})
    run.worker("w1")
    run.progress(0.5)
    run.kill_worker("w1")
    log(f"  SIGKILL at {run.tally.seen()}/{n}")
    time.sleep(1.0)
    run.worker("w1")
    run.all_done()
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note("uniform 0-3 s latency, ordering=none, 1 SIGKILL")


def case_broker_kill(run, quick):
    """The broker is SIGKILLed mid-run and started again on the same
    directory and ports."""
    broker = run.suite.fault_broker()
    n = 3000 if quick else 6000
    llm = FakeLLM(run, latency_ms=20, latency_dist="uniform", seed=3)
    run.setup(broker, n, backend=llm, conf={"inflight.max": 128})
    run.worker("w1")
    run.progress(0.3)
    broker.kill()
    log(f"  broker SIGKILLed at {run.tally.seen()}/{n}")
    time.sleep(3)
    t0 = time.monotonic()
    broker.restart()
    log(f"  broker back after {time.monotonic() - t0:.1f} s")
    run.all_done()
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note("broker down ~3 s + its restart")


def case_broker_stop(run, quick):
    """The broker is SIGSTOPped for 15 s (longer than the session
    timeout) and SIGCONTed."""
    broker = run.suite.fault_broker()
    n = 3000 if quick else 6000
    llm = FakeLLM(run, latency_ms=20, latency_dist="uniform", seed=4)
    run.setup(broker, n, backend=llm, conf={"inflight.max": 128})
    run.worker("w1")
    run.progress(0.3)
    pid = broker.pid()
    os.kill(pid, signal.SIGSTOP)
    log(f"  broker SIGSTOPped at {run.tally.seen()}/{n}")
    try:
        time.sleep(15)
    finally:
        os.kill(pid, signal.SIGCONT)
    log("  broker SIGCONTed")
    run.all_done()
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note("broker frozen 15 s")


def case_rolling(run, quick):
    """Two workers; one is stopped with SIGTERM and started again (a
    rolling restart), then a third joins mid-run."""
    n = 4000 if quick else 10000
    llm = FakeLLM(run, latency_ms=20, latency_dist="uniform", seed=5)
    run.setup(run.suite.broker, n, partitions=8, backend=llm,
              conf={"inflight.max": 64})
    run.worker("w1")
    run.worker("w2")
    run.progress(0.2)
    rc = run.stop_worker("w1")
    run.expect(rc == 0, f"w1 exit 0 on SIGTERM (got {rc})")
    log(f"  w1 stopped (rc {rc}) at {run.tally.seen()}/{n}")
    run.worker("w1")
    run.progress(0.55)
    run.worker("w3")
    log(f"  w3 joined at {run.tally.seen()}/{n}")
    run.all_done()
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    abandoned = run.log_count(r"left to the next owner")
    run.note(f"8 partitions; revokes that abandoned events: {abandoned}")


def case_rebalance_return(run, quick):
    """W1 works alone; W2 joins, so W1 gives half its partitions up
    (cooperatively, pausing them while their events finish); W2 is
    stopped and the partitions go back to W1, which must consume them
    again."""
    n = 4000
    llm = FakeLLM(run, latency_ms=40, latency_dist="uniform", seed=15)
    run.setup(run.suite.broker, n, backend=llm, conf={"inflight.max": 64})
    run.worker("w1")
    run.progress(0.1)
    run.worker("w2")
    run.until(lambda: run.log_count(r"assigned [1-9]\d* partition", "w2"),
              60, "w2 to be given partitions")
    log(f"  w2 has partitions at {run.tally.seen()}/{n}")
    run.sleep(2)
    rc = run.stop_worker("w2")
    run.expect(rc == 0, f"w2 exit 0 on SIGTERM (got {rc})")
    log(f"  w2 stopped at {run.tally.seen()}/{n}")
    run.all_done(90)
    run.settle()
    run.stop_all()
    run.note(f"w1 revoked {run.log_count(r'revoked [1-9]', 'w1')} time(s), "
             f"was assigned {run.log_count(r'assigned [1-9]', 'w1')} time(s)")


def case_zombie(run, quick):
    """Worker A is SIGSTOPped past its session timeout while B takes its
    partitions over, then SIGCONTed.  Exactly-once: A must be fenced:
    nothing it wrote after waking may become visible (duplicates = 0),
    and it must either exit non-zero (its transaction was refused) or
    drop the partitions it lost and rejoin as a new member."""
    n = 3000 if quick else 5000
    llm = FakeLLM(run, latency_ms=40, latency_dist="uniform", seed=6)
    run.setup(run.suite.broker, n, backend=llm, conf={"inflight.max": 128})
    a = run.worker("a")
    run.worker("b")
    # B alone can get through a fifth of the events while A is still
    # joining; a zombie that never owned a partition proves nothing.
    run.until(lambda: run.log_count(r"assigned [1-9]\d* partition", "a"),
              60, "A to be given partitions")
    run.progress(0.2)
    a.popen.send_signal(signal.SIGSTOP)
    log(f"  A stopped at {run.tally.seen()}/{n}")
    run.sleep(14)  # session.timeout.ms is 6 s
    a.popen.send_signal(signal.SIGCONT)
    log(f"  A continued at {run.tally.seen()}/{n}")
    a.expected = False  # it may exit now, that is the point
    run.sleep(10)
    a_rc = a.popen.poll()
    lost = run.log_count(r"lost \d+ partition", "a")
    if a_rc is None:
        what = "rejoined" if lost else "kept running without losing its partitions"
    else:
        what = f"exited {a_rc}"
    if run.mode == "exactly-once":
        run.expect((a_rc is not None and a_rc != 0) or (a_rc is None and lost),
                   f"zombie A fenced (A {what})")
    run.note(f"A after SIGCONT: {what}; 'lost partitions' lines in A's "
             f"log: {lost}")
    run.all_done()
    run.settle()
    run.stop_all()


def case_zombie_replaced(run, quick):
    """Exactly-once only: worker A is SIGSTOPped and a replacement with
    the same instance.id (the same transactional id) starts, as a
    supervisor would do; A, SIGCONTed, must be fenced by the producer
    epoch and exit non-zero.  Enough events are left when A wakes for it
    to be given some: an idle zombie never touches its producer."""
    n = 3000 if quick else 8000
    llm = FakeLLM(run, latency_ms=40, latency_dist="uniform", seed=7)
    run.setup(run.suite.broker, n, backend=llm, conf={"inflight.max": 128})
    a = run.worker("a")
    run.progress(0.2)
    a.popen.send_signal(signal.SIGSTOP)
    a.expected = False
    log(f"  A stopped at {run.tally.seen()}/{n}")
    # The replacement gets a config of its own name but A's instance id.
    run.worker("a2", {"instance.id": "a"})
    run.sleep(10)
    a.popen.send_signal(signal.SIGCONT)
    log(f"  A continued at {run.tally.seen()}/{n}")
    run.sleep(12)
    a_rc = a.popen.poll()
    run.expect(a_rc not in (None, 0),
               f"zombie A fenced and exited non-zero (got "
               f"{'still running' if a_rc is None else a_rc})")
    run.note(f"A after SIGCONT: {'running' if a_rc is None else f'exited {a_rc}'}")
    run.all_done()
    run.settle()
    run.stop_all()


def case_backend_429(run, quick):
    """30 % of calls refused with 429 and Retry-After: 1; every event
    must be answered in the end (retries, not dead letters)."""
    n = 1000 if quick else 2000
    llm = FakeLLM(run, latency_ms=10, error_rate=0.3, error_status=429,
                  retry_after=1, seed=8)
    run.setup(run.suite.broker, n, backend=llm,
              conf={"backend.retry.max.attempts": 10})
    run.worker("w1")
    run.all_done()
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note(f"breaker openings: {run.log_count('circuit opened')}")


def case_backend_503_bursts(run, quick):
    """Three 5 s bursts in which the backend answers every call with
    503; the breaker should open, nothing be dead-lettered."""
    n = 3000
    llm = FakeLLM(run, latency_ms=30, latency_dist="uniform", seed=9)
    run.setup(run.suite.broker, n, backend=llm, conf={"inflight.max": 128})
    run.worker("w1")
    for mark in (0.15, 0.4, 0.65):
        run.progress(mark)
        llm.stop()
        llm.start(error_rate=1, error_status=503)
        log(f"  503 burst at {run.tally.seen()}/{n}")
        run.sleep(5)
        llm.stop()
        llm.start(latency_ms=30, latency_dist="uniform", seed=9)
    run.all_done()
    run.settle()
    run.stop_all()
    opened = run.log_count("circuit opened")
    run.expect(opened >= 1, f"breaker opened (opened {opened} times)")
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note(f"breaker openings: {opened}")


def case_backend_outage(run, quick):
    """The backend is stopped for 30 s (10 s with --quick) and started
    again on the same port: the breaker opens, nothing is
    dead-lettered, everything is answered afterwards.  The backend's
    pace (8 in flight, 0-100 ms a call: about 12 s for the lot) keeps
    most of the work for after the outage starts, however many events
    the worker has taken by then."""
    n = 2000
    outage = 10 if quick else 30
    llm = FakeLLM(run, latency_ms=50, latency_dist="uniform", seed=10)
    run.setup(run.suite.broker, n, backend=llm, conf={"inflight.max": 8})
    run.worker("w1")
    run.progress(0.25)
    llm.stop()
    log(f"  backend down at {run.tally.seen()}/{n}")
    run.sleep(outage)
    at_restart = run.tally.seen()
    llm.start()
    log(f"  backend up at {at_restart}/{n}")
    run.all_done(outage + 120)
    run.settle()
    run.stop_all()
    opened = run.log_count("circuit opened")
    run.expect(at_restart < n, f"work was left when the backend came back "
               f"({at_restart}/{n} accounted for)")
    run.expect(opened >= 1, f"breaker opened (opened {opened} times)")
    run.expect(run.tally.dead.total() == 0, "nothing dead-lettered")
    run.note(f"outage {outage} s; breaker openings: {opened}; "
             f"closed: {run.log_count('circuit closed')}")


def case_backend_hang(run, quick):
    """1 % of events make the backend hang 5 s, past backend.timeout.ms
    (1 s): each is retried, then dead-lettered; the rest answered."""
    n = 1000 if quick else 2000
    poison = set(range(7, n, 100))
    llm = FakeLLM(run, latency_ms=10, seed=11)

    def make(i):
        return f"question {i}? FAKELLM:sleep=5000" if i in poison else None

    run.setup(run.suite.broker, n, backend=llm, make=make,
              conf={"backend.timeout.ms": 1000,
                    "backend.retry.max.attempts": 3})
    run.worker("w1")
    try:
        run.all_done(120)
    finally:
        run.note(f"{len(poison)} hanging events; breaker openings: "
                 f"{run.log_count('circuit opened')}, failed probes: "
                 f"{run.log_count('circuit still open')}, closings: "
                 f"{run.log_count('circuit closed')}")
    run.settle()
    run.stop_all()
    want = {f"ev-{i}" for i in poison}
    run.expect(set(run.tally.dead) == want,
               f"exactly the {len(want)} hanging events dead-lettered")


def case_backend_timeout_tail(run, quick):
    """Lognormal latency whose tail crosses backend.timeout.ms: about
    5 % of calls time out and are retried; none should be dead-lettered."""
    n = 1000 if quick else 2000
    llm = FakeLLM(run, latency_ms=150, latency_dist="lognormal",
                  latency_sigma=1.0, seed=12)
    run.setup(run.suite.broker, n, backend=llm,
              conf={"backend.timeout.ms": 800, "inflight.max": 128})
    run.worker("w1")
    run.all_done(240)
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    run.note(f"breaker openings: {run.log_count('circuit opened')}")


def case_backend_slow_drip(run, quick):
    """Replies whose head comes at once and whose body then trickles in
    8 bytes at a time.  1 % drip 100 ms apart (about 3 s for a body of
    some 250 bytes, past backend.timeout.ms 1000 although bytes keep
    coming): each is retried, then dead-lettered.  5 % drip 3 ms apart
    (about 0.1 s): answered like the rest."""
    n = 1000 if quick else 2000
    slow = set(range(11, n, 100))
    fast = set(range(4, n, 20))

    def make(i):
        if i in slow:
            return f"question {i}? FAKELLM:drip=100"
        if i in fast:
            return f"question {i}? FAKELLM:drip=3"
        return None

    llm = FakeLLM(run, latency_ms=10, seed=16)
    run.setup(run.suite.broker, n, backend=llm, make=make,
              conf={"backend.timeout.ms": 1000,
                    "backend.retry.max.attempts": 3})
    run.worker("w1")
    try:
        run.all_done(150)
    finally:
        run.note(f"{len(slow)} slow drips (~3 s a reply), {len(fast)} fast "
                 f"(~0.1 s); breaker openings: "
                 f"{run.log_count('circuit opened')}")
    run.settle()
    run.stop_all()
    want = {f"ev-{i}" for i in slow}
    run.expect(set(run.tally.dead) == want,
               f"exactly the {len(want)} slow-drip events dead-lettered")
    run.expect(all(run.tally.answers[f"ev-{i}"] for i in fast),
               f"all {len(fast)} fast-drip events answered")


def case_backend_bad_replies(run, quick):
    """Garbage (HTML) and huge replies are permanent failures: exactly
    those events are dead-lettered, the rest answered."""
    n = 1000
    garbage = set(range(3, n, 97))
    huge = set(range(50, n, 97))

    def make(i):
        if i in garbage:
            return f"question {i}? FAKELLM:garbage"
        if i in huge:
            return f"question {i}? FAKELLM:huge=300000"
        return None

    llm = FakeLLM(run, latency_ms=5, seed=13)
    run.setup(run.suite.broker, n, backend=llm, make=make,
              conf={"backend.max.reply.bytes": 65536})
    run.worker("w1")
    run.all_done()
    run.settle()
    run.stop_all()
    want = {f"ev-{i}" for i in garbage | huge}
    run.expect(set(run.tally.dead) == want,
               f"exactly the {len(want)} garbage/huge events dead-lettered")
    run.expect(run.log_count("circuit opened") == 0,
               "permanent failures do not open the breaker")
    run.note(f"{len(garbage)} garbage, {len(huge)} huge (300 kB > 64 KiB cap)")


# ---- mock cluster


def mock_case(run, quick, faults, n=2000, note="", conf=None):
    """A worker on a mock cluster while `faults(mock)` runs its
    schedule; the mock cluster's brokers do not persist anything, which
    does not matter as it outlives the case."""
    mock = MockCluster(run)
    llm = FakeLLM(run, latency_ms=10, latency_dist="uniform", seed=14)
    run.setup(mock, n, backend=llm, conf=dict({"inflight.max": 128}, **(conf or {})))
    run.worker("w1")
    faults(mock)
    run.all_done(180)
    run.settle()
    run.stop_all()
    run.expect(run.tally.dead.total() == 0, "no dead letters")
    if note:
        run.note(note)


def case_mock_produce_errors(run, quick):
    """Produce requests fail with retriable errors.  One request in
    flight per connection: the 2.0.2 mock cluster checks the sequence
    numbers of transactional producers only, so with pipelining it
    accepts a batch behind a failed one, and librdkafka then acks the
    failed batch implicitly ("IMPLICITACK" in its debug log) although it
    was never written; a real broker refuses the later batch with
    OUT_OF_ORDER_SEQUENCE_NUMBER instead."""
    def faults(mock):
        run.progress(0.2)
        # Produce = ApiKey 0; each error is retriable for an idempotent
        # producer.
        mock.command("errors 0 NOT_LEADER_FOR_PARTITION NOT_LEADER_FOR_PARTITION "
                     "REQUEST_TIMED_OUT NOT_ENOUGH_REPLICAS "
                     "NOT_ENOUGH_REPLICAS_AFTER_APPEND LEADER_NOT_AVAILABLE "
                     "REQUEST_TIMED_OUT")
        run.progress(0.6)
        mock.command("errors 0 " + " ".join(["NOT_ENOUGH_REPLICAS"] * 20))

    mock_case(run, quick, faults,
              conf={"kafka.max.in.flight.requests.per.connection": 1},
              note="27 Produce errors in two bursts; max.in.flight 1 "
                   "(mock cluster limit, see the case)")


def case_mock_commit_errors(run, quick):
    def faults(mock):
        run.progress(0.2)
        # OffsetCommit = ApiKey 8.
        mock.command("errors 8 " + " ".join(
            ["NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
             "REQUEST_TIMED_OUT", "COORDINATOR_LOAD_IN_PROGRESS"] * 3))
        run.progress(0.5)
        run.kill_worker("w1")
        time.sleep(1)
        run.worker("w1")

    mock_case(run, quick, faults,
              note="12 OffsetCommit errors, then a SIGKILL and restart")


def case_mock_join_errors(run, quick):
    def faults(mock):
        run.progress(0.3)
        # JoinGroup = 11, SyncGroup = 14: the restarted worker has to
        # get through them to be given partitions again.
        mock.command("errors 11 COORDINATOR_LOAD_IN_PROGRESS NOT_COORDINATOR "
                     "COORDINATOR_NOT_AVAILABLE REBALANCE_IN_PROGRESS")
        mock.command("errors 14 REBALANCE_IN_PROGRESS COORDINATOR_NOT_AVAILABLE")
        rc = run.stop_worker("w1")
        run.expect(rc == 0, f"w1 exit 0 on SIGTERM (got {rc})")
        run.worker("w1")

    mock_case(run, quick, faults,
              note="JoinGroup/SyncGroup errors across a restart")


def case_mock_txn_group_errors(run, quick):
    """Exactly-once only: the broker refuses the offsets of transactions
    with the errors a healthy member meets when its transaction races a
    rebalance (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID).  The worker must
    abort, rewind and carry on, not exit (docs/reliability.md, finding
    2)."""
    def faults(mock):
        run.progress(0.2)
        # TxnOffsetCommit = ApiKey 28.
        mock.command("errors 28 ILLEGAL_GENERATION")
        run.progress(0.4)
        mock.command("errors 28 UNKNOWN_MEMBER_ID UNKNOWN_MEMBER_ID")
        run.progress(0.6)

    run.aborted_visible = True
    mock_case(run, quick, faults)
    aborts = run.log_count("input held until the group settles")
    run.expect(aborts == 3, f"3 transactions aborted for the group "
                            f"(aborted {aborts})")
    run.expect(run.crashes == 0, "the worker never exited on its own")
    run.note(f"3 TxnOffsetCommit group errors; aborts: {aborts}, rewinds: "
             f"{run.log_count('rewound to the committed offsets')}; "
             "duplicates not checked: the mock cluster shows aborted "
             "records to read_committed consumers")


def case_mock_coordinator_move(run, quick):
    def faults(mock):
        run.progress(0.2)
        mock.command(f"coordinator group {run.topics.group} 2")
        run.progress(0.5)
        mock.command(f"coordinator group {run.topics.group} 3")
        mock.command(f"coordinator transaction {run.topics.group} 3")

    mock_case(run, quick, faults, note="group coordinator moved twice")


def case_mock_broker_down(run, quick):
    def faults(mock):
        run.progress(0.3)
        mock.command("down 1")
        run.sleep(5)
        mock.command("up 1")
        run.progress(0.6)
        mock.command("down 2")
        run.sleep(5)
        mock.command("up 2")

    mock_case(run, quick, faults, note="brokers 1 then 2 down 5 s each")


# --------------------------------------------------------------------------
# The suite

# (name, function, modes, in --quick, budget in seconds)
ALO, EOS = "at-least-once", "exactly-once"
CASES = [
    ("worker-sigkill", case_worker_kill, (ALO, EOS), True, 240),
    ("broker-sigkill", case_broker_kill, (ALO, EOS), True, 300),
    ("broker-sigstop", case_broker_stop, (ALO, EOS), False, 240),
    ("rolling-restart", case_rolling, (ALO, EOS), False, 300),
    ("rebalance-return", case_rebalance_return, (ALO, EOS), True, 150),
    ("zombie", case_zombie, (ALO, EOS), True, 200),
    ("zombie-replaced", case_zombie_replaced, (EOS,), False, 150),
    ("backend-429", case_backend_429, (ALO,), False, 180),
    ("backend-503-bursts", case_backend_503_bursts, (ALO,), False, 200),
    ("backend-outage", case_backend_outage, (ALO, EOS), True, 240),
    ("backend-hang", case_backend_hang, (ALO,), False, 150),
    ("backend-timeout-tail", case_backend_timeout_tail, (ALO,), False, 240),
    ("backend-slow-drip", case_backend_slow_drip, (ALO,), False, 180),
    ("backend-garbage-huge", case_backend_bad_replies, (ALO,), True, 180),
    ("backend-random-latency", case_backend_random_latency, (ALO,), False, 240),
    ("mock-produce-errors", case_mock_produce_errors, (ALO,), False, 180),
    ("mock-commit-errors", case_mock_commit_errors, (ALO,), False, 180),
    ("mock-join-errors", case_mock_join_errors, (ALO,), False, 180),
    ("mock-txn-group-errors", case_mock_txn_group_errors, (EOS,), True, 180),
    ("mock-coordinator-move", case_mock_coordinator_move, (ALO,), True, 180),
    ("mock-broker-down", case_mock_broker_down, (ALO,), False, 180),
]

# Cases listed without a function, and why they cannot run.
NOT_RUN = {}


class Suite:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir).resolve()
        self.mockdriver = Path(args.mockdriver).resolve() if args.mockdriver else None
        self.broker = None
        self._fault_broker = None
        self.eos = None  # None: available; else why not

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(self.workdir / "kafka")
        log(f"starting the broker in {self.broker.dir}")
        self.broker.start()
        self.eos = self.probe_eos()
        log("exactly-once: " + ("available" if self.eos is None else self.eos))

    def fault_broker(self):
        """A second broker for the cases that kill or stop it, so that the
        other cases never see its restarts."""
        if self._fault_broker is None:
            self._fault_broker = Broker(self.workdir / "kafka-faults")
            log(f"starting the fault broker in {self._fault_broker.dir}")
            self._fault_broker.start()
        return self._fault_broker

    def close(self):
        for b in (self._fault_broker, self.broker):
            if b is None:
                continue
            try:
                os.kill(b.pid(), signal.SIGCONT)
            except (OSError, ValueError):
                pass
            if not self.args.keep_brokers:
                b.stop()

    def probe_eos(self):
        """None when `ragline check-config` accepts exactly-once with an
        instance.id and a worker so configured answers a few events; else
        why not."""
        conf = self.workdir / "eos-probe.conf"
        conf.write_text("delivery = exactly-once\ninstance.id = probe\n"
                        f"kafka.bootstrap.servers = {self.broker.bootstrap}\n")
        res = subprocess.run([str(harness.binary("ragline")), "check-config",
                              "--config", str(conf)], capture_output=True,
                             text=True, env=child_env(), timeout=30)
        if res.returncode != 0 or "delivery = exactly-once" not in res.stdout:
            return ("not available: check-config refuses it: "
                    + (res.stderr.strip().splitlines() or ["?"])[-1])
        run = Run(self, "eos-probe", EOS, 90)
        try:
            run.setup(self.broker, 20)
            run.worker("probe")
            run.all_done(60)
            if run.tally.seen() != 20:
                return "not available: the probe run did not answer"
        except CaseFailed as e:
            return f"not available: probe run: {str(e).splitlines()[0]}"
        finally:
            run.close()
        return None

    def run_case(self, name, fn, mode, budget, quick):
        if fn is None:
            return Row(name, mode, verdict=NOT_RUN[name])
        if mode == EOS and self.eos is not None:
            return Row(name, mode, verdict=self.eos)
        if name.startswith("mock-") and not self.mockdriver:
            return Row(name, mode, verdict="not run: needs tests/faults/mockdriver")
        log(f"== {name} ({mode})")
        run = Run(self, name, mode, budget)
        error = None
        try:
            fn(run, quick)
        except CaseFailed as e:
            error = e
        except Exception as e:  # a broken case must not stop the suite
            error = CaseFailed(f"{type(e).__name__}: {e}")
            traceback.print_exc()
        finally:
            run.close()
        row = run.finish(error)
        log(f"   {row.verdict} ({row.seconds:.0f} s; logs in {run.dir})")
        return row


def print_table(rows, out=sys.stdout):
    head = ["case", "mode", "events in", "answers out", "dead letters",
            "lost", "duplicates", "time", "verdict"]
    out.write("| " + " | ".join(head) + " |\n")
    out.write("|" + "|".join(["---"] * len(head)) + "|\n")
    for r in rows:
        if not r.events and r.verdict != "ok":
            cells = [r.case, r.mode, "", "", "", "", "", "", r.verdict]
        else:
            cells = [r.case, r.mode, str(r.events), str(r.answers), str(r.dead),
                     str(r.lost), str(r.dups), f"{r.seconds:.0f} s", r.verdict]
        out.write("| " + " | ".join(cells) + " |\n")
    out.write("\nNotes:\n")
    for r in rows:
        for n in r.notes:
            first = n.splitlines()[0] if n else ""
            out.write(f"- {r.case} ({r.mode}): {first}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer events and cases (CI; under 8 minutes)")
    ap.add_argument("--full", action="store_true", help="every case (default)")
    ap.add_argument("-k", dest="select", default="",
                    help="run only cases whose name contains this")
    ap.add_argument("--mode", choices=[ALO, EOS], help="only this mode")
    ap.add_argument("--workdir", default=str(harness.build_dir() / "faults"))
    ap.add_argument("--mockdriver", default="")
    ap.add_argument("--table", default="", help="also write the table here")
    ap.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--keep-brokers", action="store_true",
                    help="leave the brokers running (a later run reuses them)")
    args = ap.parse_args()

    selected = []
    for name, fn, modes, in_quick, budget in CASES:
        if args.select and args.select not in name:
            continue
        if args.quick and not in_quick:
            continue
        for mode in modes:
            if args.mode and mode != args.mode:
                continue
            selected.append((name, fn, mode, budget))
    if args.list:
        for name, fn, mode, budget in selected:
            print(f"{name:26} {mode:14} budget {budget} s")
        return 0

    suite = Suite(args)
    rows = []
    t0 = time.monotonic()
    try:
        suite.start()
        for name, fn, mode, budget in selected:
            rows.append(suite.run_case(name, fn, mode, budget, args.quick))
    finally:
        suite.close()
    total = time.monotonic() - t0
    print()
    print_table(rows)
    print(f"\n{len(rows)} rows in {total / 60:.1f} min "
          f"({'quick' if args.quick else 'full'} run)")
    if args.table:
        with open(args.table, "w") as f:
            print_table(rows, f)
            f.write(f"\nTotal {total / 60:.1f} min.\n")
    failed = [r for r in rows if r.failed]
    if failed:
        print(f"FAILED: {', '.join(r.case + '/' + r.mode for r in failed)}")
        return 1
    print("all expectations held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
