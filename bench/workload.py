"""The benchmark's input: evidence records and query events.

Everything is drawn from a seeded random.Random, so two runs (and the two
workers in one run) see the same bytes.  Text is composed from a pool of
paragraphs built once, because drawing every word of ~10 KB events one at
a time would make filling the input topic slower than the benchmark.
"""

import json
import random

# Mostly English, with the characters that make repr() work: both quotes,
# backslashes, Latin-1, combining marks, CJK, Cyrillic, Greek, emoji and a
# few non-printables (no-break space, zero-width space, soft hyphen).
_WORDS = (
    "the a of to and in is for that with on as it by this be are from or "
    "model data learning training example evidence query answer result "
    "network representation contrastive gradient loss batch vector "
    "embedding retrieval search document passage token prompt context "
    "system user assistant history turn latency throughput partition "
    "offset broker consumer producer cluster replica leader commit "
    "don't it's we'll they're \"quoted\" 'single' back\\slash C:\\path "
    "naïve café Zürich São_Paulo Ångström façade jalapeño "
    "東京 データ 学習 검색 Привет мир αβγ λόγος — – … “curly” ‘apostrophe’ "
    "😀 🚀 👍🏽 e\u0301 n\u0303 \u00a0nbsp zero\u200bwidth soft\u00adhyphen "
    "tab\there line\u2028sep"
).split()


def _sentence(rng):
    n = rng.randint(6, 18)
    words = [rng.choice(_WORDS) for _ in range(n)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".!?.")


def _paragraph(rng, min_chars):
    parts = []
    size = 0
    while size < min_chars:
        s = _sentence(rng)
        parts.append(s)
        size += len(s) + 1
    return " ".join(parts)


class Workload:
    """A deterministic source of evidence records and query events.

    n_keys evidence keys exist in the evidence topic; events reference
    only those, so every lookup is a hit.  A fifth of the events carry
    one turn with inline evidence as well.
    """

    def __init__(self, seed=20250101, n_keys=1500):
        rng = random.Random(seed)
        self.seed = seed
        self.short = [_paragraph(rng, rng.randint(120, 320)) for _ in range(300)]
        self.long = [_paragraph(rng, rng.randint(600, 1400)) for _ in range(400)]
        self.keys = [
            "'" + _paragraph(rng, rng.randint(30, 80))[:90] + f" #{i}'"
            for i in range(n_keys)
        ]
        self.items = [
            {
                "title": _paragraph(rng, 40)[:70],
                "text": _paragraph(rng, rng.randint(250, 450)),
            }
            for _ in range(600)
        ]

    def evidence_records(self):
        """Yields (key, value) pairs, one per evidence key."""
        rng = random.Random(self.seed + 1)
        for key in self.keys:
            results = rng.sample(self.items, 3)
            yield key, json.dumps({"results": results}, ensure_ascii=False)

    def _turn(self, rng, role, inline):
        if role == "assistant":
            n = rng.randint(2, 3)
            content = "\n\n".join(rng.choice(self.long) for _ in range(n))
            return {"role": role, "content": content}
        turn = {"role": role, "content": rng.choice(self.short)}
        queries = rng.sample(self.keys, rng.randint(2, 3))
        turn["all_queries"] = queries
        if inline:
            turn["all_evidences"] = [rng.sample(self.items, 2) for _ in queries]
        return turn

    def event(self, i, prefix="ev"):
        """Returns (key, value bytes) of event number i."""
        rng = random.Random((self.seed << 20) + i)
        n_turns = rng.choice((2, 4, 4, 4, 6, 6))
        inline_at = 0 if rng.random() < 0.2 else -1
        history = [
            self._turn(rng, "user" if t % 2 == 0 else "assistant", t == inline_at)
            for t in range(n_turns)
        ]
        # One event per conversation in flight, as in a chat where the
        # user waits for the answer: with ragline's default ordering by
        # key, repeated keys would serialise events (see
        # docs/performance.md).
        conv = f"conv-{i}"
        event = {
            "id": f"{prefix}-{i}",
            "conversation_id": conv,
            "history": history,
            "query": rng.choice(self.short),
            "recommended_answer": "\n\n".join(
                rng.choice(self.long) for _ in range(rng.randint(1, 2))
            ),
        }
        value = json.dumps(event, ensure_ascii=False).encode()
        return conv.encode(), value


def _dump(argv):
    """bench/workload.py --dump DIR N: writes N events and the evidence as
    DIR/events.jsonl and DIR/evidence.jsonl, for bench/hotpath."""
    import os
    import sys

    if len(argv) != 3 or argv[0] != "--dump":
        sys.exit("usage: workload.py --dump DIR N")
    out, n = argv[1], int(argv[2])
    os.makedirs(out, exist_ok=True)
    w = Workload()
    with open(os.path.join(out, "events.jsonl"), "wb") as f:
        for i in range(n):
            f.write(w.event(i)[1] + b"\n")
    with open(os.path.join(out, "evidence.jsonl"), "w", encoding="utf-8") as f:
        for key, value in w.evidence_records():
            f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False))
            f.write("\n")


if __name__ == "__main__":
    import sys

    _dump(sys.argv[1:])
