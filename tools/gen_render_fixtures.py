#!/usr/bin/env python3
"""Generate the rendering fixtures that tests/test_render.c and
tests/test_repr.c compare against, byte for byte.

Every expected output is computed by CPython itself: repr() of what
json.loads() returns, and string.Template(...).substitute() for prompts.
Stdlib only, fixed random seed: rerunning gives identical files.

Writes, under tests/data/:
  render/index.txt          one case a line: "<name> <template file>"
  render/<name>.event.json  the query event
  render/<name>.evidence.jsonl  evidence records, applied in order:
      {"key": k, "value": {...} | null}  or  {"key": k, "raw": "<bytes>"}
      plus "ok": false when the record is invalid and must be refused
  render/<name>.prompt.txt  the expected prompt
  render/<name>.stats.json  the expected join statistics
  render/compact.txt        a small template used by most cases
  repr/values.jsonl         {"v": value, "r": repr(value)} per line
  repr/floats.txt           repr(x) per line (also valid JSON numbers)
  repr/allchars.txt         repr() of every code point, in blocks of 256

Usage: python3 tools/gen_render_fixtures.py
"""
import json
import math
import os
import random
import string
import struct
import sys

SEED = 20240611
N_CASES = 500
N_DEFAULT_TEMPLATE_CASES = 12

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

COMPACT_TEMPLATE = (
    "History:\n${cur_history_with_context}\n--\n"
    "Q: $current_query\n"
    "A: ${recommended_answer}.\n"
    "Cost $$5; again: $current_query$$ and ${cur_history_with_context}\n"
)

# Code points worth drawing more often than a uniform pick would.
SPECIAL_CPS = (
    [0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x1F, 0x7F]
    + [0x80, 0x85, 0x9F, 0xA0, 0xAD, 0xFF, 0x100, 0x378, 0x600, 0x61C]
    + [0x200B, 0x200D, 0x200E, 0x2028, 0x2029, 0x2060, 0x3000, 0xFEFF]
    + [0xE000, 0xF8FF, 0xFFFD, 0xFFFE, 0xFFFF, 0x1F600, 0x1F4A9, 0x1D11E]
    + [0xE0001, 0xE0100, 0xF0000, 0x10FFFF, 0x10000, 0x2FFFF, 0x3134A]
)


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def random_cp(rng):
    """One code point, never a surrogate, drawn from a mix of classes."""
    kind = rng.random()
    if kind < 0.45:
        return ord(rng.choice(string.printable[:94] + " "))
    if kind < 0.55:
        return ord(rng.choice("'\"\\'\"\\"))
    if kind < 0.62:
        return rng.choice(SPECIAL_CPS)
    if kind < 0.67:
        return rng.randrange(0x00, 0x20)
    if kind < 0.72:
        return rng.randrange(0x80, 0x100)
    if kind < 0.77:
        return rng.randrange(0x300, 0x370)  # combining marks
    if kind < 0.90:
        cp = rng.randrange(0x100, 0x10000)
    else:
        cp = rng.randrange(0x10000, 0x110000)
    return cp if not is_surrogate(cp) else 0xFFFD


def random_text(rng, max_len=60):
    n = rng.choice([0, 1, 2, 5, rng.randrange(0, max_len + 1)])
    text = "".join(chr(random_cp(rng)) for _ in range(n))
    mode = rng.random()
    # Strings with only one kind of quote decide the quote character.
    if mode < 0.15:
        text = text.replace('"', "")
    elif mode < 0.25:
        text = text.replace("'", "")
    elif mode < 0.3:
        text = text.replace("'", "").replace('"', "") + "'"
    return text


def random_float(rng):
    kind = rng.randrange(9)
    if kind == 0:
        while True:
            bits = rng.getrandbits(64).to_bytes(8, "little")
            (x,) = struct.unpack("<d", bits)
            if math.isfinite(x):
                return x
    if kind == 1:
        return rng.uniform(-1, 1) * 10.0 ** rng.randrange(-30, 31)
    if kind == 2:
        return round(rng.uniform(-1000, 1000), rng.randrange(0, 6))
    if kind == 3:
        mantissa = float(rng.randrange(-10**6, 10**6))
        return mantissa * 10.0 ** rng.randrange(0, 20)
    if kind == 4:
        return math.ldexp(1.0, rng.randrange(-1074, 1024))
    if kind == 5:
        return rng.choice([0.0, -0.0, 1e16, 1e15, 9999999999999998.0,
                           0.0001, 0.00001, 1e-4, 1.5e-5, 1e100, 5e-324,
                           2.2250738585072014e-308, 1.7976931348623157e308,
                           0.1, 0.2, 0.3, 1 / 3, 2 / 3, 100.0, 123456789.0])
    if kind == 6:
        return rng.random()
    if kind == 7:
        return float(rng.randrange(1, 1000)) / 10 ** rng.randrange(1, 25)
    return -rng.expovariate(0.001)


def random_int(rng):
    return rng.choice([
        0, 1, -1, rng.randrange(-1000, 1000),
        rng.randrange(-2**63, 2**63),
        2**63 - 1, -2**63, 2**53, -(2**53) - 1,
    ])


def random_key(rng):
    # jansson cannot hold U+0000 in an object key (docs/rendering.md).
    return random_text(rng, 12).replace("\0", "")


def random_value(rng, depth=0):
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return random_int(rng)
    if kind == 3:
        return random_float(rng)
    if kind in (4, 5, 6):
        return random_text(rng)
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_key(rng): random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def random_evidence_item(rng):
    item = {"title": random_text(rng, 40), "text": random_text(rng, 120)}
    if rng.random() < 0.3:
        item["score"] = random_float(rng)
    if rng.random() < 0.2:
        item["rank"] = random_int(rng)
    if rng.random() < 0.2:
        item["meta"] = random_value(rng, 1)
    if rng.random() < 0.15:
        item = dict(reversed(list(item.items())))
    return item


def random_results(rng):
    return [random_evidence_item(rng) for _ in range(rng.randrange(5))]


def random_turn(rng, queries_pool):
    """A turn; queries it names are added to queries_pool."""
    turn = {"role": rng.choice(["user", "assistant", "user"]),
            "content": random_text(rng, 200)}
    shape = rng.randrange(10)
    queries = [random_text(rng, 30) for _ in range(rng.randrange(4))]
    if rng.random() < 0.2 and queries_pool:
        queries.append(rng.choice(queries_pool))  # a repeated query
    if shape in (0, 1, 2, 3):
        turn["all_queries"] = queries
        queries_pool.extend(queries)
    elif shape == 4:
        turn["all_queries"] = queries
        turn["all_evidences"] = [random_results(rng) for _ in queries]
    elif shape == 5:
        turn["all_evidences"] = [random_results(rng)
                                 for _ in range(rng.randrange(3))]
    elif shape == 6:
        turn["all_queries"] = None  # null counts as absent
    if rng.random() < 0.2:
        turn["timestamp"] = random_value(rng, 2)  # not rendered
    if rng.random() < 0.25:
        items = list(turn.items())
        rng.shuffle(items)
        turn = dict(items)  # key order of the input must not matter
    return turn


INVALID_RAW = [
    "not json", "", "{\"results\": 5}", "[1, 2]", "{\"result\": []}",
    "{\"results\": [1,]}", "5", "{\"results\": {\"a\": []}}",
    "{\"results\": null}",
]


def random_records(rng, queries_pool):
    """Evidence records for a case, and the cache CPython would hold."""
    records = []
    cache = {}
    keys = list(dict.fromkeys(queries_pool))
    rng.shuffle(keys)
    keys = keys[: int(len(keys) * rng.choice([0, 0.5, 0.8, 1.0]))]
    keys += [random_text(rng, 20) for _ in range(rng.randrange(3))]

    for key in keys:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            action = rng.random()
            if action < 0.7:
                results = random_results(rng)
                rec = {"key": key, "value": {"results": results}}
                if rng.random() < 0.2:
                    rec["value"]["other"] = random_value(rng, 2)
                cache[key] = results
            elif action < 0.8:
                results = random_results(rng)
                # Raw bytes, with a duplicate key: the last one wins.
                raw = ('{"results": [], "results": %s}'
                       % json.dumps(results, ensure_ascii=False))
                rec = {"key": key, "raw": raw}
                cache[key] = results
            elif action < 0.9:
                rec = {"key": key, "value": None}
                cache.pop(key, None)
            else:
                rec = {"key": key, "raw": rng.choice(INVALID_RAW), "ok": False}
                cache.pop(key, None)
            records.append(rec)
    return records, cache


class Stats:
    def __init__(self):
        self.queries = self.found = self.missing = self.inline_turns = 0
        self.missing_list = []

    def as_json(self):
        return {"queries": self.queries, "found": self.found,
                "missing": self.missing, "inline_turns": self.inline_turns,
                "missing_list": self.missing_list}


def render_turn(turn, cache, stats):
    """The dict a history line is the repr() of."""
    d = {"role": turn["role"], "content": turn["content"]}
    queries = turn.get("all_queries")
    evidences = turn.get("all_evidences")
    if queries is None and evidences is None:
        return d
    if evidences is not None:
        stats.inline_turns += 1
        d["all_evidences"] = evidences
    else:
        d["all_evidences"] = []
        for q in queries:
            stats.queries += 1
            if q in cache:
                stats.found += 1
                d["all_evidences"].append(cache[q])
            else:
                stats.missing += 1
                stats.missing_list.append(q)
                d["all_evidences"].append([])
    d["all_queries"] = queries if queries is not None else []
    return d


def render_prompt(template, event, cache):
    stats = Stats()
    history = event.get("history") or []
    lines = [repr(render_turn(t, cache, stats)) for t in history]
    prompt = string.Template(template).substitute(
        cur_history_with_context="\n".join(lines),
        current_query=repr({"role": "user", "content": event["query"]}),
        recommended_answer=repr({"role": "assistant",
                                 "content": event.get("recommended_answer",
                                                      "")}))
    return prompt, stats


def random_event(rng, idx):
    pool = []
    event = {"id": "case-%04d" % idx}
    n_turns = rng.choice([0, 1, 2, 3, 4, 6])
    if rng.random() < 0.9:
        event["history"] = [random_turn(rng, pool) for _ in range(n_turns)]
    event["query"] = random_text(rng, 200)
    if rng.random() < 0.8:
        event["recommended_answer"] = random_text(rng, 300)
    return event, pool


def dump_json(obj, rng):
    return json.dumps(obj, ensure_ascii=rng.random() < 0.4,
                      indent=rng.choice([None, None, 2]))


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def gen_render(rng):
    out = os.path.join(DATA, "render")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        os.remove(os.path.join(out, name))
    write(os.path.join(out, "compact.txt"), COMPACT_TEMPLATE)
    with open(os.path.join(ROOT, "templates", "default.txt"),
              encoding="utf-8") as f:
        default_template = f.read()

    index = []
    for i in range(N_CASES):
        name = "case-%04d" % i
        if i < N_DEFAULT_TEMPLATE_CASES:
            template, tpl_path = default_template, "../templates/default.txt"
        else:
            template, tpl_path = COMPACT_TEMPLATE, "data/render/compact.txt"
        event, pool = random_event(rng, i)
        records, cache = random_records(rng, pool)
        prompt, stats = render_prompt(template, event, cache)

        base = os.path.join(out, name)
        write(base + ".event.json", dump_json(event, rng) + "\n")
        write(base + ".evidence.jsonl",
              "".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) + "\n"
                      for r in records))
        write(base + ".prompt.txt", prompt)
        write(base + ".stats.json", json.dumps(stats.as_json()) + "\n")
        index.append("%s %s\n" % (name, tpl_path))
    write(os.path.join(out, "index.txt"), "".join(index))


def gen_repr_values(rng, out):
    lines = []
    for _ in range(3000):
        v = random_value(rng)
        lines.append(json.dumps({"v": v, "r": repr(v)},
                                ensure_ascii=rng.random() < 0.5) + "\n")
    for _ in range(500):
        s = random_text(rng, 80)
        lines.append(json.dumps({"v": s, "r": repr(s)}) + "\n")
    write(os.path.join(out, "values.jsonl"), "".join(lines))


def gen_repr_floats(rng, out):
    floats = []
    for e in range(-1074, 1024):
        p = math.ldexp(1.0, e)
        floats += [p, math.nextafter(p, 0), math.nextafter(p, math.inf)]
    for e in range(-330, 310):
        floats += [float("1e%d" % e), float("9.999999999999999e%d" % e),
                   float("5e%d" % e)]
    floats += [random_float(rng) for _ in range(20000)]
    floats += [-x for x in floats[::7]]
    lines = [repr(x) + "\n" for x in floats if math.isfinite(x)]
    write(os.path.join(out, "floats.txt"), "".join(lines))


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def gen_repr_allchars(out):
    """repr() of every code point, in blocks of 256 (surrogates left out).
    Each line: first last kind length fnv1a64 [repr], where kind is P (all
    printable), N (none printable) or M (mixed, the repr text follows)."""
    lines = []
    for first in range(0, 0x110000, 256):
        cps = [c for c in range(first, first + 256) if not is_surrogate(c)]
        if not cps:
            continue
        text = "".join(map(chr, cps))
        r = repr(text)
        rb = r.encode("utf-8")
        flags = {chr(c).isprintable() for c in cps}
        kind = "M" if len(flags) == 2 else ("P" if True in flags else "N")
        line = "%06x %06x %s %d %016x" % (cps[0], cps[-1], kind, len(rb),
                                          fnv1a64(rb))
        if kind == "M":
            line += " " + r
        lines.append(line + "\n")
    write(os.path.join(out, "allchars.txt"), "".join(lines))


def main():
    rng = random.Random(SEED)
    gen_render(rng)
    out = os.path.join(DATA, "repr")
    os.makedirs(out, exist_ok=True)
    gen_repr_values(rng, out)
    gen_repr_floats(rng, out)
    gen_repr_allchars(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
