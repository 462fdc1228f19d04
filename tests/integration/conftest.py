"""Fixtures: one real broker for the session, and per test fresh topics,
fakellm and ragline processes whose logs are shown when the test fails."""

import subprocess

import pytest

import harness


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real single-node Kafka broker (deploy/kafka.sh), shared by every
    test; tests keep apart by topic and group names.  Missing Java, Maven
    or jars make this an error, never a skip."""
    b = harness.Broker(tmp_path_factory.mktemp("kafka", numbered=False))
    try:
        b.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        b.stop()
        pytest.fail(
            f"could not start the Kafka broker ({e}); its log:\n"
            f"{harness.tail(b.log, 60)}",
            pytrace=False,
        )
    yield b
    b.stop()


class Run:
    """What one test starts.  Everything it starts is stopped at teardown,
    and its logs are attached to the report of a failed test."""

    def __init__(self, item, broker, workdir):
        self.item = item
        self.broker = broker
        self.workdir = workdir
        self.procs = []
        self.collectors = []
        item.rl_logs = [("broker log", broker.log, 60)]

    def topics(self, input_partitions=4):
        t = harness.Topics.fresh(self.item.name)
        t.create(self.broker, input_partitions)
        return t

    def _track(self, proc):
        self.procs.append(proc)
        self.item.rl_logs.append((f"{proc.name} stderr", proc.stderr_path, 200))
        return proc

    def process(self, name, argv):
        """Any other child process, with ragline's environment."""
        return self._track(
            harness.Proc(name, argv, self.workdir, env=harness.child_env())
        )

    def fakellm(self, **kwargs):
        return self._track(harness.FakeLLM(self.workdir, **kwargs))

    def worker(self, topics, backend=None, extra=None, name="ragline"):
        conf = harness.worker_config(
            self.broker.bootstrap, topics, backend, extra
        )
        return self._track(harness.Worker(self.workdir, conf, name))

    def collector(self, *topic_names, bootstrap=None):
        c = harness.Collector(
            bootstrap or self.broker.bootstrap, topic_names, self.check_procs
        )
        self.collectors.append(c)
        return c

    def produce(self, topic, records, bootstrap=None):
        return harness.produce(
            bootstrap or self.broker.bootstrap, topic, records
        )

    def check_procs(self):
        for proc in self.procs:
            proc.check_running()

    def close(self):
        for proc in self.procs:
            proc.kill()
        for c in self.collectors:
            c.close()


@pytest.fixture
def rl(request, broker, tmp_path):
    run = Run(request.node, broker, tmp_path)
    yield run
    run.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for label, path, lines in getattr(item, "rl_logs", []):
        report.sections.append(
            (f"{label}: {path}", harness.tail(path, lines))
        )


def pytest_collection_modifyitems(items):
    """The harness's own tests first: when they fail, the others' failures
    say nothing about ragline."""
    items.sort(key=lambda item: item.fspath.basename != "test_harness.py")
