/*
 * ragline - the evidence cache.
 *
 * A table from search query to the evidence found for it, built from
 * the compacted evidence topic.  Each value is stored already rendered:
 * the CPython repr() of its "results" list, because that text is all a
 * prompt ever needs of it, and rendering it once at load time keeps the
 * per-event cost down to a lookup and a copy.  It is kept escaped for
 * the inside of a JSON string (rl_buf_json_escape()), the form in which
 * it goes into a request body; rl_buf_json_unescape() gives the plain
 * text back.
 *
 * Record format (topic key = the query, exactly as in all_queries):
 *   {"results": [evidence item, ...]}
 * A NULL value (tombstone) deletes the key.
 *
 * @locality a cache is owned by one thread (the worker's loop).
 */
#ifndef RAGLINE_EVIDENCE_H
#define RAGLINE_EVIDENCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_evcache_s rl_evcache_t;

/** @returns a new, empty cache. */
rl_evcache_t *rl_evcache_new(void);

/** @brief Frees the cache and every value in it.  NULL is a no-op. */
void rl_evcache_destroy(rl_evcache_t *cache);

/**
 * @brief Applies one record of the evidence topic.
 *
 * @param value the record's value, or NULL for a tombstone (deletes).
 * @param errstr receives a one-line reason when the value is invalid.
 *
 * An invalid value (not JSON, no "results" list) deletes the key too, so
 * that the cache matches what a worker rebuilding it from the compacted
 * topic would hold, and returns -1.
 *
 * @returns 0 on success, -1 on an invalid value.
 */
int rl_evcache_apply(rl_evcache_t *cache, const void *key, size_t key_len,
                     const void *value, size_t value_len, char *errstr,
                     size_t errstr_size);

/**
 * @brief Looks up a query.
 * @returns the JSON-escaped repr() of its results list (not NUL-terminated,
 * owned by the cache, valid until the next apply) and sets *repr_len, or NULL
 * on a miss.
 */
const char *rl_evcache_get(const rl_evcache_t *cache, const void *key,
                           size_t key_len, size_t *repr_len);

/** @returns the number of keys held. */
size_t rl_evcache_count(const rl_evcache_t *cache);

/** @returns bytes allocated for keys, values and the table itself. */
size_t rl_evcache_memory(const rl_evcache_t *cache);

#endif
