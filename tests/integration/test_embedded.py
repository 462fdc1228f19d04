"""`ragline serve` with nothing configured: its own in-process cluster and
the built-in backend, so a first try needs no broker and no model."""

import re

import harness


def test_embedded_cluster_and_builtin_backend(rl):
    worker = rl.process("ragline-embedded", [harness.binary("ragline"), "serve"])

    def bootstrap():
        if not worker.alive():
            raise AssertionError(f"ragline exited {worker.popen.returncode}")
        for line in worker.stdout().splitlines():
            if "bootstrap" in line:
                found = re.search(r"(\d+\.\d+\.\d+\.\d+:\d+)", line)
                assert found, f"no host:port in {line!r}"
                return found.group(1)
        return None

    servers = harness.wait_for(bootstrap, 30, "the embedded cluster's address")
    event = harness.load_json("contrastive-inline.event.json")
    rl.produce(
        "ragline.queries", [(event["conversation_id"], event, None)], servers
    )

    c = rl.collector("ragline.answers", bootstrap=servers)
    c.until(lambda c: c.count("ragline.answers") >= 1, 60, "the answer")
    c.settle(1)
    worker_rc = worker.stop(30)
    assert worker_rc == 0, f"ragline exited {worker_rc} after SIGTERM"

    [rec] = c.records["ragline.answers"]
    answer = rec.json()
    assert rec.key.decode() == event["conversation_id"]
    assert answer["id"] == event["id"]
    assert answer["backend"] == "builtin"
    assert answer["answer"] == event["recommended_answer"]
