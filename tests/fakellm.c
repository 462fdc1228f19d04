/*
 * fakellm - an OpenAI-compatible HTTP server that stands in for a model
 * in tests and benchmarks.
 *
 * One thread, one ragline event loop, non-blocking sockets.  Each
 * connection reads one request at a time (HTTP/1.1 keep-alive; requests
 * sent back to back are served in order), builds the whole reply at
 * once, then holds it on a loop timer for the simulated latency before
 * writing.  Nothing ever sleeps, so thousands of connections can wait
 * at the same time.  `fakellm --help` lists the options and the fault
 * triggers a request body may carry.
 */
#include "ragline/buf.h"
#include "ragline/loop.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD     (64 * 1024) /* request line and headers */
#define MAX_HEADERS  100
#define READ_CHUNK   16384
#define MAX_STATUS   600
#define MAX_HUGE     (1L << 30)
#define DEFAULT_BODY (8L * 1024 * 1024)
#define DRIP_BYTES   8 /* written at a time under FAKELLM:drip */

typedef enum { DIST_FIXED, DIST_UNIFORM, DIST_LOGNORMAL } dist_t;

/* The JSON an error reply is shaped as, after a server's habits. */
typedef enum {
    SHAPE_OPENAI,   /* {"error": {"message", "type", "param", "code"}} */
    SHAPE_VLLM_OLD, /* {"object": "error", "message", "type", "code"} */
    SHAPE_TGI,      /* {"error": "...", "error_type": "..."} */
    SHAPE_LLAMACPP, /* {"error": {"code", "message", "type"}} */
    SHAPE_OLLAMA,   /* {"error": "..."} */
} shape_t;

typedef struct options_s {
    const char *host;
    const char *port;
    const char *port_file;
    long latency_ms;
    dist_t dist;
    double sigma;
    double error_rate;
    int error_status;
    long retry_after; /* -1: no Retry-After header */
    long max_conns;
    long reply_bytes;
    long max_body;
    unsigned long long seed;
} options_t;

typedef struct stats_s {
    unsigned long long requests;
    unsigned long long replies[MAX_STATUS];
    unsigned long long dropped; /* requests closed without a reply */
    unsigned long long conns_total;
    unsigned long long conns_rejected;
    long inflight;
    long max_inflight;
    long conns;
    long max_conns;
} stats_t;

typedef struct server_s server_t;
typedef struct conn_s conn_t;

typedef enum {
    CONN_READ,  /* waiting for (the rest of) a request */
    CONN_DELAY, /* reply built, held back by the latency timer, or
                   between two pieces of a dripped reply */
    CONN_WRITE, /* reply being written */
} conn_state_t;

struct conn_s {
    server_t *srv;
    int fd;
    conn_state_t state;
    rl_buf_t in;  /* bytes read, not yet consumed by a request */
    rl_buf_t out; /* the reply */
    size_t out_off;
    int status;        /* of the reply in out */
    int close_after;   /* close once out is written */
    int drop;          /* close instead of replying */
    int in_request;    /* counted in stats.inflight */
    int sent_continue; /* a 100 Continue went out for this request */
    long drip_ms;      /* > 0: write the reply in pieces this far apart */
    rl_timer_t timer;
    conn_t *prev, *next;
};

struct server_s {
    options_t opt;
    rl_loop_t *loop;
    int listen_fd;
    int signal_fd;
    int stop;
    uint64_t rng;
    unsigned long long next_id;
    stats_t st;
    conn_t *conns;
};

typedef struct header_s {
    const char *name, *value;
    size_t name_len, value_len;
} header_t;

typedef struct request_s {
    const char *method, *target;
    size_t method_len, target_len;
    header_t headers[MAX_HEADERS];
    size_t nheaders;
    const char *body;
    size_t body_len;
    size_t head_len; /* through the blank line */
    const char *request_id;
    size_t request_id_len;
    int keep_alive;
    int expect_continue;
} request_t;

/* What a request body asks of the server through FAKELLM: triggers. */
typedef struct faults_s {
    int status; /* 0: none */
    long sleep; /* -1: none */
    long huge;  /* -1: none */
    long drip;  /* -1: none */
    int garbage;
    int close;
    int echo;
    shape_t shape;
} faults_t;

/*
 * Random numbers: xorshift64*, seeded from --seed, so a benchmark run
 * can be repeated.
 */

static uint64_t rng_next(server_t *srv)
{
    uint64_t x = srv->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    srv->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* @returns a double in [0, 1). */
static double rng_unit(server_t *srv)
{
    return (double)(rng_next(srv) >> 11) * 0x1.0p-53;
}

static double rng_normal(server_t *srv)
{
    double u1 = 1.0 - rng_unit(srv); /* (0, 1]: log() stays finite */
    double u2 = rng_unit(srv);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static long draw_latency(server_t *srv)
{
    double n = (double)srv->opt.latency_ms;

    switch (srv->opt.dist) {
    case DIST_UNIFORM:
        return lround(rng_unit(srv) * 2.0 * n);
    case DIST_LOGNORMAL:
        return n > 0 ? lround(n * exp(srv->opt.sigma * rng_normal(srv))) : 0;
    default:
        return srv->opt.latency_ms;
    }
}

/*
 * Replies
 */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 424:
        return "Failed Dependency";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

/* Writes a complete reply into c->out. */
static void put_reply(conn_t *c, int status, const char *content_type,
                      const char *body, size_t len, long retry_after)
{
    rl_buf_t *out = &c->out;

    rl_buf_reset(out);
    c->out_off = 0;
    c->status = status;
    rl_buf_printf(out, "HTTP/1.1 %d %s\r\nServer: fakellm\r\n", status,
                  reason_phrase(status));
    rl_buf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                  content_type, len);
    if (retry_after >= 0)
        rl_buf_printf(out, "Retry-After: %ld\r\n", retry_after);
    if (c->close_after)
        rl_buf_puts(out, "Connection: close\r\n");
    rl_buf_puts(out, "\r\n");
    rl_buf_append(out, body, len);
}

static void put_json_reply(conn_t *c, int status, const rl_buf_t *json,
                           long retry_after)
{
    put_reply(c, status, "application/json", json->data ? json->data : "",
              json->len, retry_after);
}

static void put_string(rl_buf_t *b, const char *s, size_t len)
{
    rl_buf_putc(b, '"');
    rl_buf_json_escape(b, s, len);
    rl_buf_putc(b, '"');
}

static const char *error_type(int status, shape_t shape)
{
    if (shape == SHAPE_TGI) {
        switch (status) {
        case 422:
            return "validation";
        case 424:
            return "generation";
        case 429:
            return "overloaded";
        default:
            return status < 500 ? "validation" : "incomplete_generation";
        }
    }
    if (status == 429)
        return "rate_limit_error";
    return status < 500 ? "invalid_request_error" : "server_error";
}

/* Builds an error reply in the JSON shape of the server being imitated. */
static void put_error(conn_t *c, int status, shape_t shape, const char *msg,
                      long retry_after)
{
    rl_buf_t b = RL_BUF_INIT;
    const char *type = error_type(status, shape);

    switch (shape) {
    case SHAPE_VLLM_OLD:
        rl_buf_puts(&b, "{\"object\":\"error\",\"message\":");
        put_string(&b, msg, strlen(msg));
        rl_buf_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}", type,
                      status);
        break;
    case SHAPE_TGI:
        rl_buf_puts(&b, "{\"error\":");
        put_string(&b, msg, strlen(msg));
        rl_buf_printf(&b, ",\"error_type\":\"%s\"}", type);
        break;
    case SHAPE_LLAMACPP:
        rl_buf_printf(&b, "{\"error\":{\"code\":%d,\"message\":", status);
        put_string(&b, msg, strlen(msg));
        rl_buf_printf(&b, ",\"type\":\"%s\"}}", type);
        break;
    case SHAPE_OLLAMA:
        rl_buf_puts(&b, "{\"error\":");
        put_string(&b, msg, strlen(msg));
        rl_buf_putc(&b, '}');
        break;
    default:
        rl_buf_puts(&b, "{\"error\":{\"message\":");
        put_string(&b, msg, strlen(msg));
        rl_buf_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}}", type,
                      status);
        break;
    }
    put_json_reply(c, status, &b, retry_after);
    rl_buf_free(&b);
}

static void put_stats(conn_t *c)
{
    const stats_t *st = &c->srv->st;
    rl_buf_t b = RL_BUF_INIT;
    const char *sep = "";
    int s;

    rl_buf_printf(&b, "{\"requests\":%llu,\"replies\":{", st->requests);
    for (s = 0; s < MAX_STATUS; s++) {
        if (!st->replies[s])
            continue;
        rl_buf_printf(&b, "%s\"%d\":%llu", sep, s, st->replies[s]);
        sep = ",";
    }
    rl_buf_printf(&b,
                  "},\"dropped\":%llu,\"inflight\":%ld,\"max_inflight\":%ld,"
                  "\"connections\":%ld,\"max_connections\":%ld,"
                  "\"connections_total\":%llu,"
                  "\"connections_rejected\":%llu}",
                  st->dropped, st->inflight, st->max_inflight, st->conns,
                  st->max_conns, st->conns_total, st->conns_rejected);
    put_json_reply(c, 200, &b, -1);
    rl_buf_free(&b);
}

/* The echo trigger answers with what arrived, so that a test can check
 * the method, path, headers and body a client sent. */
static void put_echo(rl_buf_t *content, const request_t *req)
{
    size_t i;

    rl_buf_puts(content, "{\"method\":");
    put_string(content, req->method, req->method_len);
    rl_buf_puts(content, ",\"path\":");
    put_string(content, req->target, req->target_len);
    rl_buf_puts(content, ",\"headers\":{");
    for (i = 0; i < req->nheaders; i++) {
        const header_t *h = &req->headers[i];
        char name[256];
        size_t j, n = h->name_len < sizeof(name) ? h->name_len : 255;

        /* Header names are case-insensitive: show them lower case. */
        for (j = 0; j < n; j++) {
            char ch = h->name[j];

            name[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
        rl_buf_puts(content, i ? "," : "");
        put_string(content, name, n);
        rl_buf_putc(content, ':');
        put_string(content, h->value, h->value_len);
    }
    rl_buf_puts(content, "},\"body\":");
    put_string(content, req->body, req->body_len);
    rl_buf_putc(content, '}');
}

/* The answer's text: the request id, optionally padded. */
static void put_content(server_t *srv, rl_buf_t *content, const request_t *req,
                        const faults_t *f)
{
    static const char pad[] = " lorem ipsum dolor sit amet";
    size_t want;

    if (f->echo) {
        put_echo(content, req);
        return;
    }
    if (f->huge >= 0) {
        rl_buf_reserve(content, (size_t)f->huge);
        memset(content->data, 'x', (size_t)f->huge);
        content->len = (size_t)f->huge;
        content->data[content->len] = '\0';
        return;
    }
    rl_buf_puts(content, "answer to ");
    rl_buf_append(content, req->request_id, req->request_id_len);
    want = (size_t)srv->opt.reply_bytes;
    while (content->len < want) {
        size_t n = want - content->len;

        rl_buf_append(content, pad, n < sizeof(pad) - 1 ? n : sizeof(pad) - 1);
    }
}

/* Token counts are an estimate of four bytes a token; clients only need
 * plausible, consistent numbers. */
static long long tokens(size_t bytes)
{
    return bytes ? (long long)((bytes + 3) / 4) : 0;
}

static size_t prompt_bytes(const json_t *root, int chat)
{
    size_t i, n = 0;
    json_t *m;

    if (!chat)
        return json_string_length(json_object_get(root, "prompt"));
    json_array_foreach(json_object_get(root, "messages"), i, m) n +=
        json_string_length(json_object_get(m, "content"));
    return n;
}

static void put_completion(conn_t *c, const request_t *req, const json_t *root,
                           int chat, const faults_t *f)
{
    server_t *srv = c->srv;
    rl_buf_t content = RL_BUF_INIT, b = RL_BUF_INIT;
    const char *model = json_string_value(json_object_get(root, "model"));
    long long pt = tokens(prompt_bytes(root, chat));
    long long ct;

    put_content(srv, &content, req, f);
    ct = tokens(content.len);
    if (!model || !*model)
        model = "fakellm";

    rl_buf_printf(&b,
                  "{\"id\":\"cmpl-fakellm-%llu\",\"object\":\"%s\","
                  "\"created\":%lld,\"model\":",
                  ++srv->next_id, chat ? "chat.completion" : "text_completion",
                  (long long)time(NULL));
    put_string(&b, model, strlen(model));
    rl_buf_puts(&b, ",\"choices\":[{\"index\":0,");
    rl_buf_puts(&b, chat ? "\"message\":{\"role\":\"assistant\",\"content\":"
                         : "\"text\":");
    put_string(&b, content.data ? content.data : "", content.len);
    rl_buf_puts(&b, chat ? "}," : ",\"logprobs\":null,");
    rl_buf_printf(&b,
                  "\"finish_reason\":\"stop\"}],\"usage\":{"
                  "\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                  "\"total_tokens\":%lld}}",
                  pt, ct, pt + ct);
    put_json_reply(c, 200, &b, -1);
    rl_buf_free(&content);
    rl_buf_free(&b);
}

/*
 * Fault triggers
 */

static long trigger_number(const char *body, size_t len, const char *name,
                           long max)
{
    size_t n = strlen(name);
    const char *p = memmem(body, len, name, n);
    long v = 0;

    if (!p)
        return -1;
    p += n;
    if (p >= body + len || *p < '0' || *p > '9')
        return -1;
    while (p < body + len && *p >= '0' && *p <= '9' && v <= max)
        v = v * 10 + (*p++ - '0');
    return v > max ? max : v;
}

static int has_trigger(const char *body, size_t len, const char *name)
{
    return body && memmem(body, len, name, strlen(name)) != NULL;
}

static void read_faults(const request_t *req, faults_t *f)
{
    static const struct {
        const char *name;
        shape_t shape;
    } shapes[] = {
        {"FAKELLM:shape=vllm-old", SHAPE_VLLM_OLD},
        {"FAKELLM:shape=tgi", SHAPE_TGI},
        {"FAKELLM:shape=llamacpp", SHAPE_LLAMACPP},
        {"FAKELLM:shape=ollama", SHAPE_OLLAMA},
    };
    const char *b = req->body;
    size_t i, n = req->body_len;
    long status;

    memset(f, 0, sizeof(*f));
    f->sleep = -1;
    f->huge = -1;
    f->drip = -1;
    if (!n || !memmem(b, n, "FAKELLM:", 8))
        return;
    status = trigger_number(b, n, "FAKELLM:status=", 999);
    f->status = status >= 100 && status < MAX_STATUS ? (int)status : 0;
    f->sleep = trigger_number(b, n, "FAKELLM:sleep=", 3600 * 1000L);
    f->huge = trigger_number(b, n, "FAKELLM:huge=", MAX_HUGE);
    f->drip = trigger_number(b, n, "FAKELLM:drip=", 60 * 1000L);
    f->garbage = has_trigger(b, n, "FAKELLM:garbage");
    f->close = has_trigger(b, n, "FAKELLM:close");
    f->echo = has_trigger(b, n, "FAKELLM:echo");
    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (has_trigger(b, n, shapes[i].name))
            f->shape = shapes[i].shape;
    }
}

/*
 * Request handling
 */

static int header_is(const header_t *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(h->name, name, h->name_len) == 0;
}

static int target_is(const request_t *req, const char *path)
{
    return req->target_len == strlen(path) &&
           memcmp(req->target, path, req->target_len) == 0;
}

static int method_is(const request_t *req, const char *m)
{
    return req->method_len == strlen(m) &&
           memcmp(req->method, m, req->method_len) == 0;
}

static void start_timer_or_write(conn_t *c, long delay_ms)
{
    if (delay_ms > 0) {
        c->state = CONN_DELAY;
        rl_timer_start(c->srv->loop, &c->timer, delay_ms);
    } else {
        c->state = CONN_WRITE;
    }
}

/* A model endpoint: validate the body, apply the faults it asks for,
 * then answer after the simulated latency. */
static void serve_model(conn_t *c, const request_t *req, int chat)
{
    server_t *srv = c->srv;
    faults_t f;
    json_t *root;
    const char *need = chat ? "messages" : "prompt";
    char msg[96];

    read_faults(req, &f);
    c->drip_ms = f.drip > 0 ? f.drip : 0;
    if (f.close) {
        c->drop = 1;
        start_timer_or_write(c, f.sleep > 0 ? f.sleep : 0);
        return;
    }
    if (!f.status && srv->opt.error_rate > 0 &&
        rng_unit(srv) < srv->opt.error_rate) {
        /* Like an overloaded server: refuse at once, no latency. */
        put_error(c, srv->opt.error_status, SHAPE_OPENAI,
                  "injected error (--error-rate)", srv->opt.retry_after);
        start_timer_or_write(c, 0);
        return;
    }

    root = json_loadb(req->body, req->body_len, 0, NULL);
    if (!json_is_object(root) || !json_object_get(root, need)) {
        snprintf(msg, sizeof(msg),
                 "request body must be a JSON object "
                 "with \"%s\"",
                 need);
        put_error(c, 400, f.shape, msg, -1);
    } else if (f.status) {
        snprintf(msg, sizeof(msg), "injected HTTP %d", f.status);
        put_error(c, f.status, f.shape, msg, -1);
    } else if (f.garbage) {
        static const char junk[] = "<html><body>\n<h1>Bad Gateway</h1>\n"
                                   "</body></html>\n";

        put_reply(c, 200, "text/html", junk, sizeof(junk) - 1, -1);
    } else {
        put_completion(c, req, root, chat, &f);
    }
    json_decref(root);
    start_timer_or_write(c, f.sleep >= 0 ? f.sleep : draw_latency(srv));
}

static void serve_request(conn_t *c, const request_t *req)
{
    int chat = target_is(req, "/v1/chat/completions");
    int model = chat || target_is(req, "/v1/completions");
    rl_buf_t b = RL_BUF_INIT;

    if (model && method_is(req, "POST")) {
        serve_model(c, req, chat);
        return;
    }
    if (target_is(req, "/health") && method_is(req, "GET")) {
        rl_buf_puts(&b, "{\"status\":\"ok\"}");
        put_json_reply(c, 200, &b, -1);
    } else if (target_is(req, "/stats") && method_is(req, "GET")) {
        put_stats(c);
    } else if (model || target_is(req, "/health") || target_is(req, "/stats")) {
        put_error(c, 405, SHAPE_OPENAI, "method not allowed", -1);
    } else {
        put_error(c, 404, SHAPE_OPENAI, "no such endpoint", -1);
    }
    rl_buf_free(&b);
    c->state = CONN_WRITE;
}

/*
 * HTTP/1.1 request parsing: enough to serve real clients correctly, not
 * a general-purpose parser.
 */

/* @returns 1 if the comma-separated header value holds @p token. */
static int has_token(const header_t *h, const char *token)
{
    size_t n = strlen(token), i = 0;

    while (i < h->value_len) {
        size_t start, end;

        while (i < h->value_len && (h->value[i] == ' ' || h->value[i] == ','))
            i++;
        start = i;
        while (i < h->value_len && h->value[i] != ',')
            i++;
        end = i;
        while (end > start && h->value[end - 1] == ' ')
            end--;
        if (end - start == n && strncasecmp(h->value + start, token, n) == 0)
            return 1;
    }
    return 0;
}

static int parse_request_line(const char *p, size_t len, request_t *req)
{
    const char *sp1 = memchr(p, ' ', len), *sp2, *version;
    size_t vlen;

    if (!sp1 || sp1 == p)
        return 400;
    sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p));
    if (!sp2 || sp2 == sp1 + 1)
        return 400;
    version = sp2 + 1;
    vlen = len - (size_t)(version - p);
    if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0)
        return vlen >= 5 && memcmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    if (version[7] != '0' && version[7] != '1')
        return 505;

    req->method = p;
    req->method_len = (size_t)(sp1 - p);
    req->target = sp1 + 1;
    req->target_len = (size_t)(sp2 - sp1 - 1);
    req->keep_alive = version[7] == '1'; /* 1.0 closes by default */
    return 0;
}

static int parse_content_length(const header_t *h, long max, long *out)
{
    long v = 0;
    size_t i;

    if (h->value_len == 0)
        return 400;
    for (i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return 400;
        v = v * 10 + (h->value[i] - '0');
        if (v > max)
            return 413;
    }
    if (*out >= 0 && *out != v)
        return 400; /* two different lengths: request smuggling */
    *out = v;
    return 0;
}

/* Reads one header line into the request; @returns 0 or a status. */
static int parse_header(const char *p, size_t len, request_t *req)
{
    const char *colon = memchr(p, ':', len);
    header_t *h;
    size_t i;

    if (p[0] == ' ' || p[0] == '\t')
        return 400; /* obsolete line folding */
    if (!colon || colon == p)
        return 400;
    for (i = 0; p + i < colon; i++) {
        if (p[i] <= ' ' || p[i] == 0x7f)
            return 400;
    }
    if (req->nheaders == MAX_HEADERS)
        return 431;
    h = &req->headers[req->nheaders++];
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->value = colon + 1;
    h->value_len = len - h->name_len - 1;
    while (h->value_len && (*h->value == ' ' || *h->value == '\t')) {
        h->value++;
        h->value_len--;
    }
    while (h->value_len && (h->value[h->value_len - 1] == ' ' ||
                            h->value[h->value_len - 1] == '\t'))
        h->value_len--;
    return 0;
}

/* Applies the headers that change how the request is read. */
static int apply_headers(request_t *req, long max_body, long *length)
{
    size_t i;
    int rc;

    for (i = 0; i < req->nheaders; i++) {
        const header_t *h = &req->headers[i];

        if (header_is(h, "content-length")) {
            rc = parse_content_length(h, max_body, length);
            if (rc)
                return rc;
        } else if (header_is(h, "transfer-encoding")) {
            return 411; /* chunked bodies are not supported */
        } else if (header_is(h, "connection")) {
            if (has_token(h, "close"))
                req->keep_alive = 0;
            else if (has_token(h, "keep-alive"))
                req->keep_alive = 1;
        } else if (header_is(h, "expect")) {
            req->expect_continue = has_token(h, "100-continue");
        } else if (header_is(h, "x-request-id")) {
            req->request_id = h->value;
            req->request_id_len = h->value_len;
        }
    }
    return 0;
}

/*
 * @returns 0 with *complete set (0: more bytes needed), or the status of
 *          an error reply after which the connection is closed.
 */
static int parse_request(const char *data, size_t len, long max_body,
                         request_t *req, int *complete)
{
    const char *end = memmem(data, len, "\r\n\r\n", 4);
    const char *line = data, *eol;
    long length = -1;
    int rc;

    *complete = 0;
    memset(req, 0, sizeof(*req));
    req->request_id = "";
    if (!end)
        return len > MAX_HEAD ? 431 : 0;
    req->head_len = (size_t)(end - data) + 4;
    if (req->head_len > MAX_HEAD)
        return 431;

    eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    rc = parse_request_line(line, (size_t)(eol - line), req);
    for (line = eol + 2; !rc && line < end + 2; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        rc = parse_header(line, (size_t)(eol - line), req);
    }
    if (!rc)
        rc = apply_headers(req, max_body, &length);
    if (rc)
        return rc;

    req->body = data + req->head_len;
    req->body_len = length > 0 ? (size_t)length : 0;
    *complete = len - req->head_len >= req->body_len;
    return 0;
}

/*
 * Connections
 */

static void conn_io(rl_loop_t *loop, int fd, int events, void *opaque);
static void conn_timer(rl_loop_t *loop, rl_timer_t *timer, void *opaque);

static void request_begin(server_t *srv, conn_t *c)
{
    srv->st.requests++;
    srv->st.inflight++;
    if (srv->st.inflight > srv->st.max_inflight)
        srv->st.max_inflight = srv->st.inflight;
    c->in_request = 1;
}

static void request_end(server_t *srv, conn_t *c, int replied)
{
    if (!c->in_request)
        return;
    c->in_request = 0;
    srv->st.inflight--;
    if (replied && c->status > 0 && c->status < MAX_STATUS)
        srv->st.replies[c->status]++;
    else if (!replied)
        srv->st.dropped++;
}

static void conn_close(conn_t *c)
{
    server_t *srv = c->srv;

    request_end(srv, c, 0);
    rl_timer_stop(srv->loop, &c->timer);
    rl_loop_io_del(srv->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->st.conns--;
    rl_buf_free(&c->in);
    rl_buf_free(&c->out);
    free(c);
}

/* @returns 0 when everything was read for now, -1 when the peer is gone
 *          or the connection has to go. */
static int conn_read(conn_t *c)
{
    size_t cap = MAX_HEAD + (size_t)c->srv->opt.max_body + READ_CHUNK;

    for (;;) {
        ssize_t n;

        rl_buf_reserve(&c->in, READ_CHUNK);
        n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->in.data[c->in.len] = '\0';
            /* Only reachable by a client that pipelines without end. */
            if (c->in.len > cap)
                return -1;
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

/* How much of the reply to write next.  A dripped reply sends its head
 * at once, as a model server that streams its answer does, then the
 * body a few bytes at a time. */
static size_t next_piece(const conn_t *c)
{
    size_t left = c->out.len - c->out_off;
    const char *end;
    size_t head;

    if (c->drip_ms <= 0)
        return left;
    end = memmem(c->out.data, c->out.len, "\r\n\r\n", 4);
    head = end ? (size_t)(end - c->out.data) + 4 : 0;
    if (c->out_off < head)
        return head - c->out_off;
    return left < DRIP_BYTES ? left : DRIP_BYTES;
}

/* Holds the rest of a dripped reply back for c->drip_ms.  Only the
 * timer moves it on, so write readiness is of no interest meanwhile. */
static void conn_drip_pause(conn_t *c)
{
    c->state = CONN_DELAY;
    rl_loop_io_mod(c->srv->loop, c->fd, RL_IO_READ);
    rl_timer_start(c->srv->loop, &c->timer, c->drip_ms);
}

/* @returns 1 when the reply is out, 0 when the socket is full or a
 *          dripped reply waits for its next piece, -1 on a write error. */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n =
            send(c->fd, c->out.data + c->out_off, next_piece(c), MSG_NOSIGNAL);

        if (n > 0) {
            c->out_off += (size_t)n;
            if (c->drip_ms > 0 && c->out_off < c->out.len) {
                conn_drip_pause(c);
                return 0;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rl_loop_io_mod(c->srv->loop, c->fd, RL_IO_READ | RL_IO_WRITE);
            return 0;
        }
        return -1;
    }
    return 1;
}

/* Takes the next request from the input buffer, if it is all there.
 * @returns 1 if one was taken, 0 if more bytes are needed, -1 if the
 *          connection has to close after the reply prepared in out. */
static int conn_take_request(conn_t *c)
{
    server_t *srv = c->srv;
    request_t req;
    int complete, status;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    status = parse_request(c->in.data ? c->in.data : "", c->in.len,
                           srv->opt.max_body, &req, &complete);
    if (status) {
        request_begin(srv, c);
        c->close_after = 1;
        put_error(c, status, SHAPE_OPENAI, reason_phrase(status), -1);
        c->state = CONN_WRITE;
        return -1;
    }
    if (!complete) {
        /* Best effort: if the socket is full, the client sends anyway
         * after its own wait. */
        if (req.head_len && req.expect_continue && !c->sent_continue) {
            c->sent_continue = 1;
            (void)send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
        }
        return 0;
    }

    request_begin(srv, c);
    c->close_after = !req.keep_alive;
    c->sent_continue = 0;
    serve_request(c, &req);

    /* The request's bytes are no longer needed: the reply is built. */
    memmove(c->in.data, c->in.data + req.head_len + req.body_len,
            c->in.len - req.head_len - req.body_len);
    c->in.len -= req.head_len + req.body_len;
    c->in.data[c->in.len] = '\0';
    return 1;
}

/* Moves the connection along as far as it can go without waiting.
 * @returns -1 if it was closed (and freed). */
static int conn_advance(conn_t *c)
{
    for (;;) {
        int rc;

        if (c->state == CONN_READ) {
            rc = conn_take_request(c);
            if (rc == 0)
                return 0;
        }
        if (c->state == CONN_DELAY)
            return 0;
        if (c->drop) {
            conn_close(c);
            return -1;
        }
        rc = conn_flush(c);
        if (rc == 0)
            return 0;
        if (rc < 0 || c->close_after) {
            if (rc > 0)
                request_end(c->srv, c, 1);
            conn_close(c);
            return -1;
        }
        request_end(c->srv, c, 1);
        c->drip_ms = 0;
        c->state = CONN_READ;
        rl_loop_io_mod(c->srv->loop, c->fd, RL_IO_READ);
    }
}

static void conn_io(rl_loop_t *loop, int fd, int events, void *opaque)
{
    conn_t *c = opaque;

    /* Reading also while a reply waits: that is how a client that gave
     * up is noticed. */
    if (events & (RL_IO_READ | RL_IO_ERROR)) {
        if (conn_read(c) < 0) {
            conn_close(c);
            return;
        }
    }
    conn_advance(c);
}

static void conn_timer(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    conn_t *c = opaque;

    c->state = CONN_WRITE;
    conn_advance(c);
}

static void conn_new(server_t *srv, int fd)
{
    conn_t *c = rl_xcalloc(1, sizeof(*c));
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = srv;
    c->fd = fd;
    rl_timer_init(&c->timer, conn_timer, c);
    if (rl_loop_io_add(srv->loop, fd, RL_IO_READ, conn_io, c) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->st.conns_total++;
    srv->st.conns++;
    if (srv->st.conns > srv->st.max_conns)
        srv->st.max_conns = srv->st.conns;
}

static void on_accept(rl_loop_t *loop, int fd, int events, void *opaque)
{
    server_t *srv = opaque;

    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                fprintf(stderr, "fakellm: accept: %s\n", strerror(errno));
            return;
        }
        if (srv->st.conns >= srv->opt.max_conns) {
            srv->st.conns_rejected++;
            close(cfd);
            continue;
        }
        conn_new(srv, cfd);
    }
}

static void on_signal(rl_loop_t *loop, int fd, int events, void *opaque)
{
    server_t *srv = opaque;
    struct signalfd_siginfo si;

    if (read(fd, &si, sizeof(si)) > 0)
        srv->stop = 1;
}

/*
 * Set-up
 */

static int write_port_file(const char *path, int port)
{
    rl_buf_t tmp = RL_BUF_INIT;
    FILE *f;
    int rc = -1;

    /* Written aside and renamed, so a script never reads half a file. */
    rl_buf_printf(&tmp, "%s.tmp", path);
    f = fopen(tmp.data, "w");
    if (!f)
        goto out;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp.data, path) != 0)
        goto out;
    rc = 0;
out:
    rl_buf_free(&tmp);
    return rc;
}

static int open_listener(server_t *srv)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, one = 1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(srv->opt.host, srv->opt.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "fakellm: %s: %s\n", srv->opt.host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "fakellm: cannot listen on %s:%s: %s\n", srv->opt.host,
                srv->opt.port, strerror(errno));
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* SIGTERM and SIGINT arrive on a descriptor the loop watches. */
static int open_signal_fd(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* Thousands of connections need more than the usual 1024 descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Options
 */

static void usage(FILE *out)
{
    fputs(
        "usage: fakellm [options]\n"
        "\n"
        "An OpenAI-compatible HTTP/1.1 server that stands in for a model.\n"
        "\n"
        "Endpoints:\n"
        "  POST /v1/chat/completions   answer in choices[0].message.content\n"
        "  POST /v1/completions        answer in choices[0].text\n"
        "  GET  /health                200 {\"status\":\"ok\"}\n"
        "  GET  /stats                 counters as JSON\n"
        "The answer is \"answer to <X-Request-Id>\", with usage counted\n"
        "at four bytes a token.\n"
        "\n"
        "Options:\n"
        "  --host ADDR          address to listen on (127.0.0.1)\n"
        "  --port N             port; 0 picks a free one (0)\n"
        "  --port-file FILE     write the bound port to FILE once listening\n"
        "  --latency-ms N       simulated generation time per reply (0)\n"
        "  --latency-dist D     fixed | uniform (0..2N) | lognormal (median"
        " N)\n"
        "  --latency-sigma S    lognormal shape parameter (0.5)\n"
        "  --error-rate P       fraction of model requests refused at once"
        " (0)\n"
        "  --error-status S     status of those refusals (503)\n"
        "  --retry-after SEC    add Retry-After: SEC to those refusals\n"
        "  --reply-bytes N      pad each answer to at least N bytes (0)\n"
        "  --max-conns N        connections beyond N are closed on accept"
        " (10000)\n"
        "  --max-body N         request bodies over N bytes get 413"
        " (8388608)\n"
        "  --seed N             seed of the latency and error draws\n"
        "  --help               this text\n"
        "\n"
        "Fault triggers, anywhere in a model request's body (e.g. in the\n"
        "prompt); they may be combined:\n"
        "  FAKELLM:status=NNN   reply with that status and an error body\n"
        "  FAKELLM:shape=S      error body shape: openai (default), vllm-old,\n"
        "                       tgi, llamacpp, ollama\n"
        "  FAKELLM:sleep=MS     delay the reply by MS instead of the latency\n"
        "  FAKELLM:garbage      200 with an HTML body that is not JSON\n"
        "  FAKELLM:huge=N       an answer of N bytes\n"
        "  FAKELLM:drip=MS      once the reply is due, send its head, then\n"
        "                       its body 8 bytes at a time, MS apart (a\n"
        "                       body of B bytes takes about B / 8 * MS)\n"
        "  FAKELLM:close        close the connection without replying\n"
        "  FAKELLM:echo         answer with the request seen, as JSON text\n"
        "\n"
        "SIGTERM or SIGINT stops the server; it exits 0.\n",
        out);
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

static int parse_dist(const char *s, dist_t *out)
{
    if (strcmp(s, "fixed") == 0)
        *out = DIST_FIXED;
    else if (strcmp(s, "uniform") == 0)
        *out = DIST_UNIFORM;
    else if (strcmp(s, "lognormal") == 0)
        *out = DIST_LOGNORMAL;
    else
        return -1;
    return 0;
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PORT_FILE,
    OPT_LATENCY,
    OPT_DIST,
    OPT_SIGMA,
    OPT_ERROR_RATE,
    OPT_ERROR_STATUS,
    OPT_RETRY_AFTER,
    OPT_REPLY_BYTES,
    OPT_MAX_CONNS,
    OPT_MAX_BODY,
    OPT_SEED,
    OPT_HELP,
};

/* Applies one option; @returns 0, or -1 if its value is wrong. */
static int apply_option(options_t *o, int opt, const char *arg)
{
    long v = 0;
    int rc = 0;

    switch (opt) {
    case OPT_HOST:
        o->host = arg;
        break;
    case OPT_PORT:
        rc = parse_long(arg, 0, 65535, &v);
        o->port = arg;
        break;
    case OPT_PORT_FILE:
        o->port_file = arg;
        break;
    case OPT_LATENCY:
        rc = parse_long(arg, 0, 3600000, &o->latency_ms);
        break;
    case OPT_DIST:
        rc = parse_dist(arg, &o->dist);
        break;
    case OPT_SIGMA:
        rc = parse_double(arg, 0, 10, &o->sigma);
        break;
    case OPT_ERROR_RATE:
        rc = parse_double(arg, 0, 1, &o->error_rate);
        break;
    case OPT_ERROR_STATUS:
        rc = parse_long(arg, 100, MAX_STATUS - 1, &v);
        o->error_status = (int)v;
        break;
    case OPT_RETRY_AFTER:
        rc = parse_long(arg, 0, 86400, &o->retry_after);
        break;
    case OPT_REPLY_BYTES:
        rc = parse_long(arg, 0, MAX_HUGE, &o->reply_bytes);
        break;
    case OPT_MAX_CONNS:
        rc = parse_long(arg, 1, 1000000, &o->max_conns);
        break;
    case OPT_MAX_BODY:
        rc = parse_long(arg, 1, MAX_HUGE, &o->max_body);
        break;
    case OPT_SEED:
        rc = parse_long(arg, 0, LONG_MAX, &v);
        o->seed = (unsigned long long)v;
        break;
    default:
        rc = -1;
        break;
    }
    return rc;
}

static int parse_options(int argc, char **argv, options_t *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"latency-ms", required_argument, NULL, OPT_LATENCY},
        {"latency-dist", required_argument, NULL, OPT_DIST},
        {"latency-sigma", required_argument, NULL, OPT_SIGMA},
        {"error-rate", required_argument, NULL, OPT_ERROR_RATE},
        {"error-status", required_argument, NULL, OPT_ERROR_STATUS},
        {"retry-after", required_argument, NULL, OPT_RETRY_AFTER},
        {"reply-bytes", required_argument, NULL, OPT_REPLY_BYTES},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;

    for (;;) {
        opt = getopt_long(argc, argv, "", longopts, NULL);
        if (opt == -1)
            break;
        if (opt == OPT_HELP) {
            usage(stdout);
            exit(0);
        }
        if (opt == '?' || apply_option(o, opt, optarg) < 0) {
            if (opt != '?')
                fprintf(stderr, "fakellm: bad value '%s' for --%s\n", optarg,
                        longopts[opt - OPT_HOST].name);
            fputs("fakellm: see fakellm --help\n", stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fakellm: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

static void set_defaults(options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = "0";
    o->dist = DIST_FIXED;
    o->sigma = 0.5;
    o->error_status = 503;
    o->retry_after = -1;
    o->max_conns = 10000;
    o->max_body = DEFAULT_BODY;
    o->seed =
        (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
}

static void shutdown_server(server_t *srv)
{
    while (srv->conns)
        conn_close(srv->conns);
    if (srv->listen_fd >= 0) {
        rl_loop_io_del(srv->loop, srv->listen_fd);
        close(srv->listen_fd);
    }
    if (srv->signal_fd >= 0) {
        rl_loop_io_del(srv->loop, srv->signal_fd);
        close(srv->signal_fd);
    }
    rl_loop_destroy(srv->loop);
}

int main(int argc, char **argv)
{
    server_t srv;
    int port;

    memset(&srv, 0, sizeof(srv));
    srv.listen_fd = srv.signal_fd = -1;
    set_defaults(&srv.opt);
    if (parse_options(argc, argv, &srv.opt) < 0)
        return 2;
    srv.rng = srv.opt.seed * 2654435761ULL + 0x9E3779B97F4A7C15ULL;
    raise_fd_limit();

    srv.loop = rl_loop_new();
    srv.signal_fd = open_signal_fd();
    srv.listen_fd = open_listener(&srv);
    if (!srv.loop || srv.signal_fd < 0 || srv.listen_fd < 0)
        goto fail;
    if (rl_loop_io_add(srv.loop, srv.listen_fd, RL_IO_READ, on_accept, &srv) <
            0 ||
        rl_loop_io_add(srv.loop, srv.signal_fd, RL_IO_READ, on_signal, &srv) <
            0)
        goto fail;

    port = bound_port(srv.listen_fd);
    if (srv.opt.port_file && write_port_file(srv.opt.port_file, port) < 0) {
        fprintf(stderr, "fakellm: cannot write %s: %s\n", srv.opt.port_file,
                strerror(errno));
        goto fail;
    }
    fprintf(stderr, "fakellm: listening on %s port %d\n", srv.opt.host, port);

    while (!srv.stop) {
        if (rl_loop_run_once(srv.loop, -1) < 0 && errno != EINTR) {
            fprintf(stderr, "fakellm: epoll: %s\n", strerror(errno));
            goto fail;
        }
    }
    fprintf(stderr, "fakellm: stopping after %llu requests\n", srv.st.requests);
    shutdown_server(&srv);
    return 0;

fail:
    if (srv.loop)
        shutdown_server(&srv);
    return 1;
}
