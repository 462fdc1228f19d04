/*
 * ragline - per-key queues.
 *
 * A chained hash table of keys; each entry holds the FIFO of waiting
 * items as a singly linked list of nodes.  The table doubles when it
 * holds more keys than buckets.  FNV-1a is enough here: keys come from
 * the input topic, but a long chain costs only CPU on this worker, and
 * the table holds only keys with events in progress (bounded by the
 * in-flight cap).
 */
#include "ragline/keyq.h"
#include "ragline/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct node_s {
    void *item;
    struct node_s *next;
} node_t;

typedef struct entry_s {
    struct entry_s *next; /**< bucket chain */
    uint64_t hash;
    node_t *head, *tail; /**< waiting items, oldest first */
    size_t key_len;
    char key[]; /**< key_len bytes */
} entry_t;

struct rl_keyq_s {
    entry_t **buckets;
    size_t nbuckets; /**< a power of two */
    size_t count;
};

static uint64_t hash_key(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

rl_keyq_t *rl_keyq_new(void)
{
    rl_keyq_t *q = rl_xcalloc(1, sizeof(*q));

    q->nbuckets = 64;
    q->buckets = rl_xcalloc(q->nbuckets, sizeof(*q->buckets));
    return q;
}

static void free_entry(entry_t *e)
{
    while (e->head) {
        node_t *n = e->head;

        e->head = n->next;
        free(n);
    }
    free(e);
}

void rl_keyq_destroy(rl_keyq_t *q)
{
    size_t i;

    if (!q)
        return;
    for (i = 0; i < q->nbuckets; i++) {
        while (q->buckets[i]) {
            entry_t *e = q->buckets[i];

            q->buckets[i] = e->next;
            free_entry(e);
        }
    }
    free(q->buckets);
    free(q);
}

static void grow(rl_keyq_t *q)
{
    size_t n = q->nbuckets * 2, i;
    entry_t **b = rl_xcalloc(n, sizeof(*b));

    for (i = 0; i < q->nbuckets; i++) {
        while (q->buckets[i]) {
            entry_t *e = q->buckets[i];

            q->buckets[i] = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

/* Finds the entry of a key; *slotp is where it is (or would be) linked. */
static entry_t *find(rl_keyq_t *q, const void *key, size_t len, uint64_t h,
                     entry_t ***slotp)
{
    entry_t **slot = &q->buckets[h & (q->nbuckets - 1)];

    for (; *slot; slot = &(*slot)->next) {
        entry_t *e = *slot;

        if (e->hash == h && e->key_len == len &&
            (len == 0 || memcmp(e->key, key, len) == 0))
            break;
    }
    *slotp = slot;
    return *slot;
}

int rl_keyq_enter(rl_keyq_t *q, const void *key, size_t key_len, void *item)
{
    uint64_t h = hash_key(key, key_len);
    entry_t **slot;
    entry_t *e = find(q, key, key_len, h, &slot);
    node_t *n;

    if (!e) {
        /* Nothing in progress: the item starts, and owns the key. */
        e = rl_xmalloc(sizeof(*e) + key_len);
        e->next = NULL;
        e->hash = h;
        e->head = e->tail = NULL;
        e->key_len = key_len;
        if (key_len)
            memcpy(e->key, key, key_len);
        *slot = e;
        if (++q->count > q->nbuckets)
            grow(q);
        return 1;
    }

    n = rl_xmalloc(sizeof(*n));
    n->item = item;
    n->next = NULL;
    if (e->tail)
        e->tail->next = n;
    else
        e->head = n;
    e->tail = n;
    return 0;
}

void *rl_keyq_leave(rl_keyq_t *q, const void *key, size_t key_len)
{
    uint64_t h = hash_key(key, key_len);
    entry_t **slot;
    entry_t *e = find(q, key, key_len, h, &slot);
    node_t *n;
    void *item;

    if (!e)
        return NULL;
    if (!e->head) {
        *slot = e->next;
        q->count--;
        free(e);
        return NULL;
    }
    n = e->head;
    e->head = n->next;
    if (!e->head)
        e->tail = NULL;
    item = n->item;
    free(n);
    return item;
}

size_t rl_keyq_keys(const rl_keyq_t *q)
{
    return q->count;
}
