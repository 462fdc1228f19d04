/*
 * ragline - the evidence cache.
 *
 * Open addressing with linear probing over a power-of-two table, and
 * backward-shift deletion, so that a topic full of tombstones leaves no
 * dead slots behind.  Each entry is one heap block holding the key bytes
 * followed by the rendered value.
 *
 * The keys come from a topic anyone with produce rights can write to, so
 * the hash is SipHash-1-3 under a per-process random key: without the
 * key, nobody can pick queries that all land in one probe chain.
 */
#include "ragline/evidence.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ragline/buf.h"
#include "ragline/json.h"
#include "ragline/repr.h"

typedef struct slot_s {
    uint64_t hash;
    char *block; /* key bytes, then value bytes; NULL when the slot is free */
    size_t key_len;
    size_t val_len;
} slot_t;

struct rl_evcache_s {
    slot_t *slots;
    size_t cap; /* a power of two */
    size_t count;
    size_t block_bytes; /* sum of the entries' block sizes */
    uint64_t k0, k1;    /* SipHash key */
};

#define INITIAL_CAP 16

/* ---- SipHash-1-3 (Aumasson & Bernstein), written from the paper ---- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

typedef struct sip_s {
    uint64_t v0, v1, v2, v3;
} sip_t;

static void sip_round(sip_t *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13) ^ s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17) ^ s->v2;
    s->v2 = rotl(s->v2, 32);
}

static uint64_t load_le64(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *data,
                          size_t len)
{
    const unsigned char *p = data;
    size_t full = len & ~(size_t)7;
    sip_t s = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
               k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    uint64_t m;
    size_t i;

    for (i = 0; i < full; i += 8) {
        m = load_le64(p + i, 8);
        s.v3 ^= m;
        sip_round(&s);
        s.v0 ^= m;
    }

    /* The last block carries the length in its top byte. */
    m = load_le64(p + full, len - full) | ((uint64_t)len << 56);
    s.v3 ^= m;
    sip_round(&s);
    s.v0 ^= m;

    s.v2 ^= 0xff;
    sip_round(&s);
    sip_round(&s);
    sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* ---- the table ---- */

/* A random SipHash key; if the kernel cannot give one, the clock and an
 * address are a weak but still per-process fallback. */
static void seed_key(rl_evcache_t *cache)
{
    uint64_t key[2];

    if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL;
        key[1] = (uint64_t)(uintptr_t)cache ^ (uint64_t)ts.tv_sec;
    }
    cache->k0 = key[0];
    cache->k1 = key[1];
}

rl_evcache_t *rl_evcache_new(void)
{
    rl_evcache_t *cache = rl_xcalloc(1, sizeof(*cache));

    cache->cap = INITIAL_CAP;
    cache->slots = rl_xcalloc(cache->cap, sizeof(slot_t));
    seed_key(cache);
    return cache;
}

void rl_evcache_destroy(rl_evcache_t *cache)
{
    size_t i;

    if (!cache)
        return;
    for (i = 0; i < cache->cap; i++)
        free(cache->slots[i].block);
    free(cache->slots);
    free(cache);
}

/*
 * Probes for @p key.  Returns 1 and its slot index in *idx when found;
 * else 0, with *idx the free slot where it would go.
 */
static int find(const rl_evcache_t *cache, uint64_t hash, const void *key,
                size_t key_len, size_t *idx)
{
    size_t mask = cache->cap - 1;
    size_t i = (size_t)hash & mask;

    for (;; i = (i + 1) & mask) {
        const slot_t *slot = &cache->slots[i];

        if (!slot->block)
            break;
        if (slot->hash == hash && slot->key_len == key_len &&
            memcmp(slot->block, key, key_len) == 0) {
            *idx = i;
            return 1;
        }
    }
    *idx = i;
    return 0;
}

static void grow(rl_evcache_t *cache)
{
    slot_t *old = cache->slots;
    size_t old_cap = cache->cap;
    size_t mask, i;

    cache->cap *= 2;
    cache->slots = rl_xcalloc(cache->cap, sizeof(slot_t));
    mask = cache->cap - 1;
    for (i = 0; i < old_cap; i++) {
        size_t j;

        if (!old[i].block)
            continue;
        j = (size_t)old[i].hash & mask;
        while (cache->slots[j].block)
            j = (j + 1) & mask;
        cache->slots[j] = old[i];
    }
    free(old);
}

/* Frees slot @p i, then pulls later entries of the same probe run back
 * into the hole so that lookups never need a tombstone to go past. */
static void remove_at(rl_evcache_t *cache, size_t i)
{
    size_t mask = cache->cap - 1;
    size_t j = i;

    free(cache->slots[i].block);
    cache->block_bytes -= cache->slots[i].key_len + cache->slots[i].val_len;
    cache->count--;

    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (!cache->slots[j].block)
            break;
        home = (size_t)cache->slots[j].hash & mask;
        /* The entry at j may move to the hole at i unless its home lies
         * cyclically within (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            cache->slots[i] = cache->slots[j];
            i = j;
        }
    }
    memset(&cache->slots[i], 0, sizeof(slot_t));
}

static void delete_key(rl_evcache_t *cache, uint64_t hash, const void *key,
                       size_t key_len)
{
    size_t i;

    if (find(cache, hash, key, key_len, &i))
        remove_at(cache, i);
}

/* Takes @p block (key then value) into the table, replacing any entry of
 * the same key. */
static void put(rl_evcache_t *cache, uint64_t hash, char *block, size_t key_len,
                size_t val_len)
{
    slot_t *slot;
    size_t i;

    if (find(cache, hash, block, key_len, &i)) {
        slot = &cache->slots[i];
        cache->block_bytes -= slot->key_len + slot->val_len;
        free(slot->block);
    } else {
        if ((cache->count + 1) * 4 > cache->cap * 3) {
            grow(cache);
            find(cache, hash, block, key_len, &i);
        }
        cache->count++;
        slot = &cache->slots[i];
    }
    slot->hash = hash;
    slot->block = block;
    slot->key_len = key_len;
    slot->val_len = val_len;
    cache->block_bytes += key_len + val_len;
}

/*
 * Renders the repr() of the "results" list of the record @p value,
 * escaped for JSON, after the key in @p block.  Returns 0, or -1 with a reason.
 */
static int render_value(rl_buf_t *block, const void *value, size_t value_len,
                        char *errstr, size_t errstr_size)
{
    rl_json_error_t jerr;
    json_t *root, *results;
    int rc = -1;

    root = rl_json_parse(value, value_len, JSON_PARSER_MAX_DEPTH,
                         RL_JSON_KEEP_LAST, &jerr);
    if (!root) {
        rl_errstr(errstr, errstr_size, "evidence value is not JSON: %s",
                  jerr.text);
        return -1;
    }
    results = json_object_get(root, "results");
    if (!json_is_array(results)) {
        rl_errstr(errstr, errstr_size,
                  "evidence value has no \"results\" list");
        goto free_root;
    }
    if (rl_repr_json_escaped(block, results) < 0) {
        rl_errstr(errstr, errstr_size, "evidence results are not UTF-8");
        goto free_root;
    }
    rc = 0;

free_root:
    json_decref(root);
    return rc;
}

int rl_evcache_apply(rl_evcache_t *cache, const void *key, size_t key_len,
                     const void *value, size_t value_len, char *errstr,
                     size_t errstr_size)
{
    uint64_t hash = siphash13(cache->k0, cache->k1, key, key_len);
    rl_buf_t block = RL_BUF_INIT;
    size_t total;
    char *data;

    if (!value) {
        delete_key(cache, hash, key, key_len);
        return 0;
    }

    rl_buf_append(&block, key, key_len);
    if (render_value(&block, value, value_len, errstr, errstr_size) < 0) {
        rl_buf_free(&block);
        delete_key(cache, hash, key, key_len);
        return -1;
    }

    /* Trim the buffer's spare room: the cache may hold millions. */
    data = rl_buf_steal(&block, &total);
    data = rl_xrealloc(data, total);
    put(cache, hash, data, key_len, total - key_len);
    return 0;
}

const char *rl_evcache_get(const rl_evcache_t *cache, const void *key,
                           size_t key_len, size_t *repr_len)
{
    const slot_t *slot;
    size_t i;

    if (!cache)
        return NULL;
    if (!find(cache, siphash13(cache->k0, cache->k1, key, key_len), key,
              key_len, &i))
        return NULL;
    slot = &cache->slots[i];
    *repr_len = slot->val_len;
    return slot->block + slot->key_len;
}

size_t rl_evcache_count(const rl_evcache_t *cache)
{
    return cache ? cache->count : 0;
}

size_t rl_evcache_memory(const rl_evcache_t *cache)
{
    if (!cache)
        return 0;
    return sizeof(*cache) + cache->cap * sizeof(slot_t) + cache->block_bytes;
}
