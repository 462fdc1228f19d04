"""`ragline render`: the example events give the expected prompt, byte for
byte, through the built-in template."""

import subprocess

import harness

PROMPT = (harness.DATA / "contrastive.prompt.txt").read_bytes()


def render(*args):
    done = subprocess.run(
        [harness.binary("ragline"), "render", *map(str, args)],
        capture_output=True,
        timeout=30,
        env=harness.child_env(),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at byte {i}: {a[i:i + 60]!r} vs {b[i:i + 60]!r}"
    return f"lengths {len(a)} vs {len(b)}"


def test_render_inline_event():
    out = render(harness.DATA / "contrastive-inline.event.json")
    assert out == PROMPT, first_difference(out, PROMPT)


def test_render_cached_event_with_evidence_file():
    out = render(
        "--evidence",
        harness.DATA / "contrastive.evidence.jsonl",
        harness.DATA / "contrastive.event.json",
    )
    assert out == PROMPT, first_difference(out, PROMPT)
