/*
 * ragline - the generation backend client.
 *
 * HTTP calls run on one libcurl multi handle in multi-socket mode: curl
 * tells us which sockets to watch and when its next timeout is due, the
 * worker's rl_loop_t does the waiting, and every readiness or expiry is
 * handed back to curl_multi_socket_action().  Finished transfers are
 * collected with curl_multi_info_read() right after each action.
 *
 * A call (call_t) owns one easy handle for its whole life and goes back
 * to a free list when done, so steady traffic allocates nothing but the
 * per-request header list.  The JSON request body is the configured
 * prefix, the escaped prompt and the configured suffix: both fixed
 * parts are built once in rl_backend_new().
 */
#include "ragline/arena.h"
#include "ragline/backend.h"
#include "ragline/buf.h"
#include "ragline/json.h"
#include "ragline/log.h"
#include "ragline/retry.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TAG "backend"

/* An error message from a server is cut to this many bytes. */
#define MAX_MESSAGE 300

/* A non-JSON body is quoted up to this many bytes. */
#define MAX_BODY_QUOTE 200

/* Request ids go into a header: cut and cleaned. */
#define MAX_REQUEST_ID 128

/* Buffers above this size are freed rather than kept for reuse. */
#define KEEP_BUF_BYTES (64 * 1024)

/* Content-Type, Accept, Expect, Authorization, X-Request-Id. */
#define MAX_HEADERS 5

/* Spare calls kept on the free list beyond max_connections. */
#define FREE_LIST_SLACK 16

/* Connections a shard (one curl multi handle) may hold; see shard_t. */
#define SHARD_CONNECTIONS 64

typedef struct call_s call_t;
typedef struct sock_s sock_t;
typedef struct shard_s shard_t;

struct call_s {
    rl_backend_t *backend;
    shard_t *shard; /**< the multi handle running it; NULL when idle */
    CURL *easy;     /**< NULL for the builtin backend */
    /* The request headers, as a list curl reads in place: nodes and
     * strings live in the call (or the backend), so a request makes no
     * allocation for them. */
    struct curl_slist headers[MAX_HEADERS];
    char id_line[MAX_REQUEST_ID + 16]; /**< "X-Request-Id: ..." */
    rl_buf_t body;  /**< request JSON; curl reads it in place */
    rl_buf_t reply; /**< reply body, or the builtin answer */
    char request_id[MAX_REQUEST_ID + 1];
    int too_big;             /**< the write callback refused the reply */
    char retry_after[64];    /**< Retry-After of the last response */
    char retry_after_ms[32]; /**< retry-after-ms of the last response */
    int64_t start_us;
    rl_backend_done_cb *cb;
    void *opaque;
    call_t *prev, *next; /**< in the active list, or next in a queue */
    char errbuf[CURL_ERROR_SIZE];
};

/* A socket curl asked us to watch; listed so destroy can unwatch it
 * even if curl never says CURL_POLL_REMOVE. */
struct sock_s {
    int fd;
    sock_t *prev, *next;
};

/*
 * One curl multi handle with its own pool of at most SHARD_CONNECTIONS
 * connections.  curl 7.88 walks a multi's pool on every request, once
 * to pick a connection and once more in curl_multi_remove_handle(), so
 * a single pool of thousands made each request cost O(calls in flight):
 * about a tenth of the worker's CPU at 1,024 in flight.  A call goes to
 * the shard with the fewest in flight, which keeps every walk short and,
 * when few calls are in flight, reuses the first shard's connections.
 */
struct shard_s {
    rl_backend_t *backend;
    CURLM *multi;
    rl_timer_t timer; /**< curl's single timeout for this multi */
    int inflight;
};

struct rl_backend_s {
    rl_loop_t *loop;
    rl_backend_api_t api;
    char *model;
    char *url;       /**< the full request URL */
    char *url_shown; /**< the same without user:password, for messages */
    char *auth_header;
    rl_buf_t body_prefix; /**< JSON before the escaped prompt */
    rl_buf_t body_suffix; /**< JSON after it */
    long connect_timeout_ms;
    long timeout_ms;
    int max_connections;
    size_t max_reply_bytes;

    shard_t *shards;
    int nshards;
    rl_arena_t *arena; /**< holds the reply being handed to a callback */
    sock_t *socks;

    call_t *active;                      /**< HTTP calls in curl's hands */
    call_t *pending_head, *pending_tail; /**< builtin calls to answer */
    rl_timer_t pending_timer;
    call_t *free_calls;
    size_t nfree;
    size_t inflight;
};

/*
 * Reply interpretation
 */

int rl_backend_status_retriable(int http_status)
{
    if (http_status == 0 || http_status == 408 || http_status == 409 ||
        http_status == 424 || http_status == 429)
        return 1;
    return http_status >= 500 && http_status <= 599;
}

static void result_init(rl_backend_result_t *res, int http_status)
{
    memset(res, 0, sizeof(*res));
    res->http_status = http_status;
    res->prompt_tokens = -1;
    res->completion_tokens = -1;
    res->total_tokens = -1;
    res->retry_after_ms = -1;
}

/* @returns the length of the UTF-8 sequence a lead byte starts, or 0. */
static size_t utf8_lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* @returns the length of the valid UTF-8 sequence at @p s (at most @p n
 *          bytes long), or 0 if the bytes there are not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = utf8_lead_len(s[0]), i;
    uint32_t cp;

    if (len == 0 || len > n)
        return 0;
    if (len == 1)
        return 1;
    cp = s[0] & (0x7F >> len);
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    /* overlong forms, surrogates and beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

/* Appends at most @p max bytes of @p s as one line of valid UTF-8:
 * control characters become spaces and invalid bytes '?', since the
 * line ends up in logs and in JSON dead-letter records.  A cut is made
 * between characters and marked with "...". */
static void put_one_line(rl_buf_t *out, const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n;

    while (i < len) {
        n = utf8_len(u + i, len - i);
        if (i + (n ? n : 1) > max)
            break;
        if (n == 0)
            rl_buf_putc(out, '?');
        else if (n == 1 && (u[i] < 0x20 || u[i] == 0x7f))
            rl_buf_putc(out, ' ');
        else
            rl_buf_append(out, s + i, n);
        i += n ? n : 1;
    }
    if (i < len)
        rl_buf_puts(out, "...");
}

static const char *get_string(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static long long get_count(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* Finds the message in the error shapes servers use; NULL if none. */
static const char *find_error_message(const json_t *root, const char **type)
{
    json_t *err = json_object_get(root, "error");

    *type = NULL;
    /* vLLM, OpenAI, llama.cpp: {"error": {"message", "type", "code"}} */
    if (json_is_object(err)) {
        *type = get_string(err, "type");
        return get_string(err, "message");
    }
    /* TGI {"error", "error_type"}; Ollama {"error"} */
    if (json_is_string(err)) {
        *type = get_string(root, "error_type");
        return json_string_value(err);
    }
    /* vLLM before 0.6: {"object": "error", "message", "type", "code"} */
    if (get_string(root, "message")) {
        *type = get_string(root, "type");
        return get_string(root, "message");
    }
    /* FastAPI's own errors, e.g. a 404 for an unknown route */
    return get_string(root, "detail");
}

/* Appends what the server said went wrong: its message and type, or the
 * start of the body when the body is not a known shape. */
static void put_error_message(rl_buf_t *out, const json_t *root,
                              const char *body, size_t len)
{
    const char *type;
    const char *msg = find_error_message(root, &type);

    if (msg) {
        put_one_line(out, msg, strlen(msg), MAX_MESSAGE);
        if (type && *type) {
            rl_buf_puts(out, " (");
            put_one_line(out, type, strlen(type), 64);
            rl_buf_putc(out, ')');
        }
    } else if (len == 0) {
        rl_buf_puts(out, "empty body");
    } else {
        put_one_line(out, body, len, MAX_BODY_QUOTE);
    }
}

/* Reads a success reply into @p res; returns NULL, or what is missing. */
static const char *read_answer(rl_backend_api_t api, const json_t *root,
                               rl_backend_result_t *res)
{
    json_t *choice, *text, *usage;

    if (!json_is_object(root))
        return "not a JSON object";
    choice = json_array_get(json_object_get(root, "choices"), 0);
    if (!json_is_object(choice))
        return "no choices[0]";
    if (api == RL_API_CHAT)
        text = json_object_get(json_object_get(choice, "message"), "content");
    else
        text = json_object_get(choice, "text");
    if (!json_is_string(text))
        return api == RL_API_CHAT ? "no string choices[0].message.content"
                                  : "no string choices[0].text";

    res->text = json_string_value(text);
    res->text_len = json_string_length(text);
    res->finish_reason = get_string(choice, "finish_reason");
    res->model = get_string(root, "model");
    usage = json_object_get(root, "usage");
    res->prompt_tokens = get_count(usage, "prompt_tokens");
    res->completion_tokens = get_count(usage, "completion_tokens");
    res->total_tokens = get_count(usage, "total_tokens");
    return NULL;
}

/* Stores the error line in @p holder, so that it lives as long as the
 * scratch tree, and points res->error at it. */
static void set_error(json_t *holder, rl_backend_result_t *res,
                      const rl_buf_t *line)
{
    json_t *str = json_stringn_nocheck(line->data ? line->data : "", line->len);

    json_object_set_new(holder, "error", str);
    res->error = json_string_value(str);
}

/* The parser behind rl_backend_parse_reply(); @p url (may be NULL) is
 * named in error lines. */
static void parse_reply(rl_backend_api_t api, int http_status, const char *body,
                        size_t len, const char *url, rl_backend_result_t *res,
                        json_t **scratch)
{
    json_t *holder = json_object();
    json_t *root = NULL;
    rl_buf_t line = RL_BUF_INIT;
    const char *missing;

    result_init(res, http_status);
    *scratch = holder;
    if (body && len > 0)
        root = rl_json_parse(body, len, JSON_PARSER_MAX_DEPTH,
                             RL_JSON_KEEP_LAST, NULL);
    if (root)
        json_object_set_new(holder, "reply", root);

    if (http_status >= 200 && http_status <= 299) {
        missing = root ? read_answer(api, root, res) : "not JSON";
        if (!missing) {
            res->ok = 1;
            goto out;
        }
        /* Permanent: the same request would get the same reply. */
        rl_buf_printf(&line, "unparseable reply: %s: ", missing);
        put_error_message(&line, root, body, len);
    } else {
        res->retriable = rl_backend_status_retriable(http_status);
        rl_buf_printf(&line, "HTTP %d", http_status);
        if (url)
            rl_buf_printf(&line, " from %s", url);
        rl_buf_puts(&line, ": ");
        put_error_message(&line, root, body, len);
    }
    if (url && http_status >= 200 && http_status <= 299)
        rl_buf_printf(&line, " (HTTP %d from %s)", http_status, url);
    set_error(holder, res, &line);

out:
    rl_buf_free(&line);
}

void rl_backend_parse_reply(rl_backend_api_t api, int http_status,
                            const char *body, size_t len,
                            rl_backend_result_t *res, json_t **scratch)
{
    parse_reply(api, http_status, body, len, NULL, res, scratch);
}

/*
 * Configuration
 */

static void global_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Appends @p v with the fewest digits that read back as the same double,
 * so 0.7 is sent as 0.7 and not 0.69999999999999996. */
static void put_double(rl_buf_t *buf, double v)
{
    char tmp[32];
    int prec;

    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    rl_buf_puts(buf, tmp);
}

static void put_json_string(rl_buf_t *buf, const char *s)
{
    rl_buf_putc(buf, '"');
    rl_buf_json_escape(buf, s, strlen(s));
    rl_buf_putc(buf, '"');
}

/* Builds the fixed JSON around the prompt. */
static void build_body_parts(rl_backend_t *be, const rl_backend_conf_t *conf)
{
    rl_buf_t *pre = &be->body_prefix, *suf = &be->body_suffix;
    const char *system = conf->system_prompt;

    rl_buf_puts(pre, "{\"model\":");
    put_json_string(pre, be->model);
    if (conf->api == RL_API_CHAT) {
        rl_buf_puts(pre, ",\"messages\":[");
        if (system && *system) {
            rl_buf_puts(pre, "{\"role\":\"system\",\"content\":");
            put_json_string(pre, system);
            rl_buf_puts(pre, "},");
        }
        rl_buf_puts(pre, "{\"role\":\"user\",\"content\":\"");
        rl_buf_puts(suf, "\"}]");
    } else {
        rl_buf_puts(pre, ",\"prompt\":\"");
        rl_buf_putc(suf, '"');
    }

    if (conf->temperature >= 0) {
        rl_buf_puts(suf, ",\"temperature\":");
        put_double(suf, conf->temperature);
    }
    if (conf->max_tokens > 0)
        rl_buf_printf(suf, ",\"max_tokens\":%d", conf->max_tokens);
    else if (conf->api == RL_API_COMPLETIONS)
        rl_buf_puts(suf, ",\"max_tokens\":256"); /* servers default to 16 */
    if (conf->api == RL_API_CHAT)
        rl_buf_puts(suf, ",\"stream\":false");
    rl_buf_putc(suf, '}');
}

/* Builds the request URL from the base and checks it; fills url and
 * url_shown, or returns -1 with a reason. */
static int build_url(rl_backend_t *be, const char *base, char *errstr,
                     size_t errstr_size)
{
    const char *path =
        be->api == RL_API_CHAT ? "/v1/chat/completions" : "/v1/completions";
    size_t n = strlen(base);
    rl_buf_t full = RL_BUF_INIT;
    CURLU *u = curl_url();
    char *scheme = NULL, *shown = NULL;
    int rc = -1;

    while (n > 0 && base[n - 1] == '/')
        n--;
    if (n >= 3 && memcmp(base + n - 3, "/v1", 3) == 0)
        n -= 3;
    rl_buf_append(&full, base, n);
    rl_buf_puts(&full, path);

    if (!u || curl_url_set(u, CURLUPART_URL, full.data, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        snprintf(errstr, errstr_size, "backend URL is not a valid URL");
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(errstr, errstr_size,
                 "backend URL must start with http:// or https://");
        goto out;
    }
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &shown, 0) != CURLUE_OK) {
        snprintf(errstr, errstr_size, "backend URL is not a valid URL");
        goto out;
    }
    be->url_shown = rl_xstrdup(shown);
    be->url = rl_buf_steal(&full, NULL);
    rc = 0;

out:
    curl_free(shown);
    curl_free(scheme);
    curl_url_cleanup(u);
    rl_buf_free(&full);
    return rc;
}

static int has_control_chars(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

/* Checks what rl_backend_new() cannot work without. */
static int check_conf(const rl_backend_conf_t *conf, char *errstr,
                      size_t errstr_size)
{
    if (conf->api == RL_API_BUILTIN)
        return 0;
    if (conf->api != RL_API_CHAT && conf->api != RL_API_COMPLETIONS) {
        snprintf(errstr, errstr_size, "unknown backend API %d", conf->api);
        return -1;
    }
    if (!conf->url || !*conf->url) {
        snprintf(errstr, errstr_size, "backend URL is not set");
        return -1;
    }
    if (conf->max_connections < 1) {
        snprintf(errstr, errstr_size,
                 "backend max_connections must be at least 1");
        return -1;
    }
    if (conf->max_reply_bytes < 1) {
        snprintf(errstr, errstr_size,
                 "backend max_reply_bytes must be at least 1");
        return -1;
    }
    if (isnan(conf->temperature) || isinf(conf->temperature)) {
        snprintf(errstr, errstr_size, "backend temperature is not finite");
        return -1;
    }
    /* The key goes into a header line; never repeat it in a message. */
    if (conf->api_key && has_control_chars(conf->api_key)) {
        snprintf(errstr, errstr_size,
                 "backend API key contains control characters");
        return -1;
    }
    return 0;
}

/*
 * The curl <-> rl_loop glue
 */

static void drain_finished(shard_t *shard);

static void on_socket_ready(rl_loop_t *loop, int fd, int events, void *opaque)
{
    shard_t *shard = opaque;
    int flags = 0, running;

    if (events & RL_IO_READ)
        flags |= CURL_CSELECT_IN;
    if (events & RL_IO_WRITE)
        flags |= CURL_CSELECT_OUT;
    if (events & RL_IO_ERROR)
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(shard->multi, fd, flags, &running);
    drain_finished(shard);
}

static void on_curl_timer_expired(rl_loop_t *loop, rl_timer_t *timer,
                                  void *opaque)
{
    shard_t *shard = opaque;
    int running;

    curl_multi_socket_action(shard->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_finished(shard);
}

static void sock_forget(rl_backend_t *be, sock_t *sock)
{
    if (sock->prev)
        sock->prev->next = sock->next;
    else
        be->socks = sock->next;
    if (sock->next)
        sock->next->prev = sock->prev;
    free(sock);
}

/* CURLMOPT_SOCKETFUNCTION: curl says what to wait for on a socket. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp)
{
    shard_t *shard = userp;
    rl_backend_t *be = shard->backend;
    sock_t *sock = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (sock) {
            rl_loop_io_del(be->loop, fd);
            sock_forget(be, sock);
        }
        return 0;
    }
    if (!sock) {
        sock = rl_xcalloc(1, sizeof(*sock));
        sock->fd = fd;
        sock->next = be->socks;
        if (be->socks)
            be->socks->prev = sock;
        be->socks = sock;
        curl_multi_assign(shard->multi, fd, sock);
    }
    if (what & CURL_POLL_IN)
        events |= RL_IO_READ;
    if (what & CURL_POLL_OUT)
        events |= RL_IO_WRITE;
    if (rl_loop_io_add(be->loop, fd, events, on_socket_ready, shard) < 0) {
        rl_warn(TAG, "cannot watch socket %d: %s", (int)fd, strerror(errno));
        return -1;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants one timeout, or none (-1).  A 0 ms
 * timeout also goes through the loop: curl forbids acting from inside
 * this callback. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    shard_t *shard = userp;
    rl_loop_t *loop = shard->backend->loop;

    if (timeout_ms < 0)
        rl_timer_stop(loop, &shard->timer);
    else
        rl_timer_start(loop, &shard->timer, timeout_ms);
    return 0;
}

/* max_connections split into shards of at most SHARD_CONNECTIONS; the
 * shards together hold exactly max_connections. */
static int setup_shards(rl_backend_t *be)
{
    int n = (be->max_connections + SHARD_CONNECTIONS - 1) / SHARD_CONNECTIONS;
    int i;

    be->shards = rl_xcalloc((size_t)n, sizeof(*be->shards));
    for (i = 0; i < n; i++) {
        shard_t *shard = &be->shards[i];
        long max = be->max_connections / n + (i < be->max_connections % n);

        shard->backend = be;
        rl_timer_init(&shard->timer, on_curl_timer_expired, shard);
        shard->multi = curl_multi_init();
        if (!shard->multi)
            return -1;
        be->nshards++;
        curl_multi_setopt(shard->multi, CURLMOPT_SOCKETFUNCTION,
                          on_curl_socket);
        curl_multi_setopt(shard->multi, CURLMOPT_SOCKETDATA, shard);
        curl_multi_setopt(shard->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(shard->multi, CURLMOPT_TIMERDATA, shard);
        curl_multi_setopt(shard->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max);
        curl_multi_setopt(shard->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max);
        curl_multi_setopt(shard->multi, CURLMOPT_MAXCONNECTS, max);
    }
    return 0;
}

/* The shard with the fewest calls in flight; the first of equals. */
static shard_t *pick_shard(rl_backend_t *be)
{
    shard_t *best = &be->shards[0];
    int i;

    for (i = 1; i < be->nshards && best->inflight > 0; i++)
        if (be->shards[i].inflight < best->inflight)
            best = &be->shards[i];
    return best;
}

/*
 * Calls
 */

/* CURLOPT_WRITEFUNCTION: collects the reply up to the cap. */
static size_t on_reply_data(char *data, size_t size, size_t n, void *opaque)
{
    call_t *call = opaque;
    size_t len = size * n;

    if (call->reply.len + len > call->backend->max_reply_bytes) {
        call->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    rl_buf_append(&call->reply, data, len);
    return len;
}

/* Keeps @p value if header line @p line is "@p name: value". */
static void keep_header(const char *line, size_t len, const char *name,
                        char *value, size_t value_size)
{
    size_t n = strlen(name);

    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return;
    line += n + 1;
    len -= n + 1;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (len >= value_size)
        len = value_size - 1; /* a longer hint is not valid anyway */
    memcpy(value, line, len);
    value[len] = '\0';
}

/* CURLOPT_HEADERFUNCTION: keeps the two retry hints of the final
 * response (a status line starts each response, 100 Continue too). */
static size_t on_reply_header(char *line, size_t size, size_t n, void *opaque)
{
    call_t *call = opaque;
    size_t len = size * n;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        call->retry_after[0] = '\0';
        call->retry_after_ms[0] = '\0';
    }
    keep_header(line, len, "retry-after", call->retry_after,
                sizeof(call->retry_after));
    keep_header(line, len, "retry-after-ms", call->retry_after_ms,
                sizeof(call->retry_after_ms));
    return len;
}

/* Sets the options every request of this backend shares. */
static int setup_easy(rl_backend_t *be, call_t *call)
{
    CURL *e = curl_easy_init();

    if (!e)
        return -1;
    curl_easy_setopt(e, CURLOPT_URL, be->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, be->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, be->timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_reply_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_reply_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    /* Replies are small (an answer of a few hundred tokens fits in one
     * or two reads); curl's default 16 KB a transfer came to 16 MB at
     * 1,024 in flight, 4 KB to 4 MB. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    call->easy = e;
    return 0;
}

static void call_free(call_t *call)
{
    if (call->easy)
        curl_easy_cleanup(call->easy);
    rl_buf_free(&call->body);
    rl_buf_free(&call->reply);
    free(call);
}

/* @returns a call ready for a request, or NULL if curl cannot make an
 *          easy handle. */
static call_t *call_take(rl_backend_t *be)
{
    call_t *call = be->free_calls;

    if (call) {
        be->free_calls = call->next;
        be->nfree--;
        call->next = NULL;
        return call;
    }
    call = rl_xcalloc(1, sizeof(*call));
    call->backend = be;
    if (be->api != RL_API_BUILTIN && setup_easy(be, call) < 0) {
        free(call);
        return NULL;
    }
    return call;
}

static void shrink_buf(rl_buf_t *buf)
{
    if (buf->cap > KEEP_BUF_BYTES)
        rl_buf_free(buf);
    else
        rl_buf_reset(buf);
}

/* Puts a finished call back on the free list, or frees it when the
 * list already holds as many as can be in flight at once. */
static void call_release(rl_backend_t *be, call_t *call)
{
    call->cb = NULL;
    call->opaque = NULL;
    call->prev = NULL;
    if (be->nfree >= (size_t)be->max_connections + FREE_LIST_SLACK) {
        call_free(call);
        return;
    }
    shrink_buf(&call->body);
    shrink_buf(&call->reply);
    call->next = be->free_calls;
    be->free_calls = call;
    be->nfree++;
}

static void active_link(rl_backend_t *be, call_t *call)
{
    call->prev = NULL;
    call->next = be->active;
    if (be->active)
        be->active->prev = call;
    be->active = call;
}

static void active_unlink(rl_backend_t *be, call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        be->active = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

/* Copies the id for the X-Request-Id header and logs: anything outside
 * printable ASCII becomes '_', so an id can never split the header. */
static void set_request_id(call_t *call, const char *id)
{
    size_t i;

    for (i = 0; id && id[i] && i < MAX_REQUEST_ID; i++) {
        unsigned char c = (unsigned char)id[i];

        call->request_id[i] = c > 0x20 && c < 0x7f ? (char)c : '_';
    }
    call->request_id[i] = '\0';
}

/* Links the call's header nodes into the list curl is given. */
static void set_headers(rl_backend_t *be, call_t *call)
{
    /* "Expect:" stops curl from waiting for a 100 Continue on big
     * prompts, which many servers never send. */
    static const char *const fixed[] = {
        "Content-Type: application/json",
        "Accept: application/json",
        "Expect:",
    };
    struct curl_slist *h = call->headers;
    size_t n = 0, i;

    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        h[n++].data = (char *)fixed[i];
    if (be->auth_header)
        h[n++].data = be->auth_header;
    if (call->request_id[0]) {
        snprintf(call->id_line, sizeof(call->id_line), "X-Request-Id: %s",
                 call->request_id);
        h[n++].data = call->id_line;
    }
    for (i = 0; i < n; i++)
        h[i].next = i + 1 < n ? &h[i + 1] : NULL;
}

void rl_backend_body_start(const rl_backend_t *be, rl_buf_t *body)
{
    rl_buf_reset(body);
    rl_buf_append(body, be->body_prefix.data, be->body_prefix.len);
}

static int prepare_http(rl_backend_t *be, call_t *call,
                        const rl_backend_req_t *req)
{
    if (req->body) {
        rl_buf_t mine = call->body;

        rl_buf_reset(&mine);
        call->body = *req->body;
        *req->body = mine;
    } else {
        rl_backend_body_start(be, &call->body);
        rl_buf_json_escape(&call->body, req->prompt ? req->prompt : "",
                           req->prompt ? req->prompt_len : 0);
    }
    rl_buf_append(&call->body, be->body_suffix.data, be->body_suffix.len);

    set_headers(be, call);
    curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, call->body.data);
    curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)call->body.len);
    call->errbuf[0] = '\0';
    call->retry_after[0] = '\0';
    call->retry_after_ms[0] = '\0';
    call->too_big = 0;
    rl_buf_reset(&call->reply);
    return 0;
}

static void on_pending_timer(rl_loop_t *loop, rl_timer_t *timer, void *opaque);

int rl_backend_submit(rl_backend_t *be, const rl_backend_req_t *req,
                      rl_backend_done_cb *cb, void *opaque)
{
    call_t *call;

    if (!be || !req || !cb || (!req->prompt && req->prompt_len > 0))
        return -1;
    call = call_take(be);
    if (!call)
        return -1;
    set_request_id(call, req->request_id);
    call->cb = cb;
    call->opaque = opaque;
    call->start_us = rl_now_us();

    if (be->api == RL_API_BUILTIN) {
        if (req->body)
            rl_buf_reset(req->body);
        rl_buf_reset(&call->reply);
        if (req->recommended)
            rl_buf_append(&call->reply, req->recommended, req->recommended_len);
        call->next = NULL;
        if (be->pending_tail)
            be->pending_tail->next = call;
        else
            be->pending_head = call;
        be->pending_tail = call;
        if (!rl_timer_active(&be->pending_timer))
            rl_timer_start(be->loop, &be->pending_timer, 0);
        be->inflight++;
        return 0;
    }

    call->shard = pick_shard(be);
    if (prepare_http(be, call, req) < 0 ||
        curl_multi_add_handle(call->shard->multi, call->easy) != CURLM_OK) {
        call->shard = NULL;
        call_release(be, call);
        return -1;
    }
    active_link(be, call);
    call->shard->inflight++;
    be->inflight++;
    return 0;
}

static double elapsed_ms(const call_t *call)
{
    return (double)(rl_now_us() - call->start_us) / 1000.0;
}

/* Fills @p res for a transfer that ended without a usable HTTP reply;
 * the error line is written to @p line. */
static void transport_failure(rl_backend_t *be, call_t *call, CURLcode code,
                              rl_backend_result_t *res, char *line,
                              size_t line_size)
{
    long status = 0;

    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (call->too_big) {
        /* Permanent: the model would write as much again. */
        result_init(res, (int)status);
        snprintf(line, line_size, "reply over %zu bytes from %s",
                 be->max_reply_bytes, be->url_shown);
    } else {
        /* Refused, reset, timed out: the server may do better later. */
        result_init(res, 0);
        res->retriable = 1;
        snprintf(line, line_size, "request to %s failed: %s", be->url_shown,
                 call->errbuf[0] ? call->errbuf : curl_easy_strerror(code));
    }
    res->error = line;
}

/* @returns the server's hint of when to retry, in ms, or -1. */
static long long retry_hint(const call_t *call)
{
    struct timespec now;

    if (!call->retry_after[0] && !call->retry_after_ms[0])
        return -1;
    /* an HTTP-date hint is relative to the wall clock */
    clock_gettime(CLOCK_REALTIME, &now);
    return rl_retry_after_ms(
        call->retry_after_ms[0] ? call->retry_after_ms : NULL,
        call->retry_after[0] ? call->retry_after : NULL,
        (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
}

static void finish_http(rl_backend_t *be, call_t *call, CURLcode code)
{
    rl_backend_result_t res;
    json_t *scratch = NULL;
    char line[CURL_ERROR_SIZE + 256];
    long status = 0;

    if (code == CURLE_OK) {
        /* The reply's tree lives only as long as the callback: it goes
         * in an arena (when jansson's hooks are ragline's). */
        rl_arena_t *previous = rl_arena_use(be->arena);

        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        parse_reply(be->api, (int)status, call->reply.data, call->reply.len,
                    be->url_shown, &res, &scratch);
        rl_arena_use(previous);
    } else {
        transport_failure(be, call, code, &res, line, sizeof(line));
    }
    res.elapsed_ms = elapsed_ms(call);
    if (!res.ok)
        res.retry_after_ms = retry_hint(call);
    rl_debug(TAG, "request %s: %s, HTTP %d, %.1f ms", call->request_id,
             res.ok          ? "ok"
             : res.retriable ? "retriable"
                             : "failed",
             res.http_status, res.elapsed_ms);

    curl_multi_remove_handle(call->shard->multi, call->easy);
    call->shard->inflight--;
    call->shard = NULL;
    active_unlink(be, call);
    be->inflight--;
    call->cb(call->opaque, &res);

    json_decref(scratch);
    rl_arena_reset(be->arena);
    call_release(be, call);
}

/* Runs the callbacks of every transfer curl reports finished.  A
 * callback may submit again: that only adds handles, which is safe
 * while messages are being read. */
static void drain_finished(shard_t *shard)
{
    rl_backend_t *be = shard->backend;
    CURLMsg *msg;
    int left;
    char *priv;

    for (;;) {
        msg = curl_multi_info_read(shard->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        finish_http(be, (call_t *)priv, msg->data.result);
    }
}

/* Answers the builtin calls queued so far; calls submitted from these
 * callbacks wait for the next turn of the loop. */
static void on_pending_timer(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_backend_t *be = opaque;
    call_t *call = be->pending_head;
    rl_backend_result_t res;

    be->pending_head = be->pending_tail = NULL;
    while (call) {
        call_t *next = call->next;

        result_init(&res, 0);
        res.ok = 1;
        res.text = rl_buf_cstr(&call->reply);
        res.text_len = call->reply.len;
        res.finish_reason = "stop";
        res.model = "builtin";
        res.elapsed_ms = elapsed_ms(call);

        be->inflight--;
        call->cb(call->opaque, &res);
        call_release(be, call);
        call = next;
    }
}

/*
 * Life cycle
 */

rl_backend_t *rl_backend_new(rl_loop_t *loop, const rl_backend_conf_t *conf,
                             char *errstr, size_t errstr_size)
{
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    rl_backend_t *be;

    if (!loop || !conf) {
        snprintf(errstr, errstr_size, "backend needs a loop and a conf");
        return NULL;
    }
    if (check_conf(conf, errstr, errstr_size) < 0)
        return NULL;

    be = rl_xcalloc(1, sizeof(*be));
    be->loop = loop;
    be->api = conf->api;
    be->model = rl_xstrdup(conf->model ? conf->model : "");
    be->connect_timeout_ms = conf->connect_timeout_ms;
    be->timeout_ms = conf->timeout_ms;
    be->max_connections = conf->max_connections > 0 ? conf->max_connections : 1;
    be->max_reply_bytes = conf->max_reply_bytes;
    rl_timer_init(&be->pending_timer, on_pending_timer, be);
    if (be->api == RL_API_BUILTIN)
        return be;

    pthread_once(&curl_once, global_init_once);
    if (build_url(be, conf->url, errstr, errstr_size) < 0)
        goto fail;
    be->arena = rl_arena_new(16 * 1024);
    if (setup_shards(be) < 0) {
        snprintf(errstr, errstr_size, "curl_multi_init failed");
        goto fail;
    }
    if (conf->api_key && *conf->api_key) {
        rl_buf_t h = RL_BUF_INIT;

        rl_buf_printf(&h, "Authorization: Bearer %s", conf->api_key);
        be->auth_header = rl_buf_steal(&h, NULL);
    }
    build_body_parts(be, conf);
    return be;

fail:
    rl_backend_destroy(be);
    return NULL;
}

size_t rl_backend_inflight(const rl_backend_t *be)
{
    return be->inflight;
}

const char *rl_backend_name(const rl_backend_t *be)
{
    switch (be->api) {
    case RL_API_CHAT:
        return "openai-chat";
    case RL_API_COMPLETIONS:
        return "openai-completions";
    default:
        return "builtin";
    }
}

const char *rl_backend_model(const rl_backend_t *be)
{
    return be->model;
}

/* Frees a NULL-ended chain of calls linked by next. */
static void free_chain(call_t *call)
{
    while (call) {
        call_t *next = call->next;

        call_free(call);
        call = next;
    }
}

void rl_backend_destroy(rl_backend_t *be)
{
    call_t *call;
    int i;

    if (!be)
        return;

    /* In-flight transfers end here, silently. */
    while (be->active) {
        call = be->active;
        active_unlink(be, call);
        curl_multi_remove_handle(call->shard->multi, call->easy);
        call_free(call);
    }
    free_chain(be->pending_head);
    free_chain(be->free_calls);
    for (i = 0; i < be->nshards; i++) {
        curl_multi_cleanup(be->shards[i].multi);
        rl_timer_stop(be->loop, &be->shards[i].timer);
    }
    free(be->shards);
    rl_arena_destroy(be->arena);

    /* Sockets curl did not hand back; the loop must not keep calling
     * into a freed backend. */
    while (be->socks) {
        rl_loop_io_del(be->loop, be->socks->fd);
        sock_forget(be, be->socks);
    }
    rl_timer_stop(be->loop, &be->pending_timer);

    if (be->auth_header) {
        /* Do not leave the key in freed heap memory. */
        explicit_bzero(be->auth_header, strlen(be->auth_header));
        free(be->auth_header);
    }
    rl_buf_free(&be->body_prefix);
    rl_buf_free(&be->body_suffix);
    free(be->url);
    free(be->url_shown);
    free(be->model);
    free(be);
}
