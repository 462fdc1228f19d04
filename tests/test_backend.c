/*
 * Tests of the generation backend: reply parsing and classification on
 * their own, then whole calls against fakellm, a real HTTP server that
 * this test starts on an ephemeral port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ragline/backend.h"
#include "ragline/buf.h"
#include "ragline/loop.h"

#include <curl/curl.h>
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *argv0;

/*
 * Reply parsing
 */

typedef struct parsed_s {
    rl_backend_result_t res;
    json_t *scratch;
} parsed_t;

static void parse(parsed_t *p, rl_backend_api_t api, int status,
                  const char *body)
{
    rl_backend_parse_reply(api, status, body, body ? strlen(body) : 0, &p->res,
                           &p->scratch);
}

static void test_parse_chat_success(void **state)
{
    parsed_t p;

    parse(&p, RL_API_CHAT, 200,
          "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
          "\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,"
          "\"message\":{\"role\":\"assistant\",\"content\":\"B\\n\"},"
          "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":12,"
          "\"completion_tokens\":2,\"total_tokens\":14}}");
    assert_int_equal(p.res.ok, 1);
    assert_int_equal(p.res.http_status, 200);
    assert_null(p.res.error);
    assert_int_equal(p.res.text_len, 2);
    assert_memory_equal(p.res.text, "B\n", 2);
    assert_string_equal(p.res.finish_reason, "length");
    assert_string_equal(p.res.model, "Qwen/Qwen2.5-7B-Instruct");
    assert_int_equal(p.res.prompt_tokens, 12);
    assert_int_equal(p.res.completion_tokens, 2);
    assert_int_equal(p.res.total_tokens, 14);
    assert_int_equal(p.res.retry_after_ms, -1);
    json_decref(p.scratch);
}

static void test_parse_completions_success(void **state)
{
    parsed_t p;

    /* No usage, no model: llama.cpp's older servers omit both. */
    parse(&p, RL_API_COMPLETIONS, 201,
          "{\"choices\":[{\"text\":\"a\\u0000b\",\"index\":0,"
          "\"finish_reason\":null}]}");
    assert_int_equal(p.res.ok, 1);
    assert_int_equal(p.res.text_len, 3);
    assert_memory_equal(p.res.text, "a\0b", 3);
    assert_null(p.res.finish_reason);
    assert_null(p.res.model);
    assert_int_equal(p.res.prompt_tokens, -1);
    assert_int_equal(p.res.completion_tokens, -1);
    assert_int_equal(p.res.total_tokens, -1);
    json_decref(p.scratch);
}

typedef struct error_case_s {
    const char *server;
    int status;
    const char *body;
    const char *error; /* the whole expected line */
    int retriable;
} error_case_t;

static const error_case_t error_cases[] = {
    {"vLLM", 400,
     "{\"error\":{\"message\":\"This model's maximum context length is 4096 "
     "tokens.\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}",
     "HTTP 400: This model's maximum context length is 4096 tokens. "
     "(BadRequestError)",
     0},
    {"vLLM before 0.6", 404,
     "{\"object\":\"error\",\"message\":\"The model `x` does not exist.\","
     "\"type\":\"NotFoundError\",\"param\":null,\"code\":404}",
     "HTTP 404: The model `x` does not exist. (NotFoundError)", 0},
    {"OpenAI", 401,
     "{\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":"
     "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
     "HTTP 401: Incorrect API key provided. (invalid_request_error)", 0},
    {"OpenAI", 429,
     "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}",
     "HTTP 429: Rate limit reached (requests)", 1},
    {"TGI", 424,
     "{\"error\":\"Request failed during generation: Server error: CUDA out "
     "of memory\",\"error_type\":\"generation\"}",
     "HTTP 424: Request failed during generation: Server error: CUDA out of "
     "memory (generation)",
     1},
    {"TGI", 422,
     "{\"error\":\"Input validation error: `inputs` must have less than 4096 "
     "tokens\",\"error_type\":\"validation\"}",
     "HTTP 422: Input validation error: `inputs` must have less than 4096 "
     "tokens (validation)",
     0},
    {"TGI", 429,
     "{\"error\":\"Model is overloaded\",\"error_type\":"
     "\"overloaded\"}",
     "HTTP 429: Model is overloaded (overloaded)", 1},
    {"llama.cpp", 503,
     "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":"
     "\"unavailable_error\"}}",
     "HTTP 503: Loading model (unavailable_error)", 1},
    {"llama.cpp", 400,
     "{\"error\":{\"code\":400,\"message\":\"the request exceeds the "
     "available context size\",\"type\":\"exceed_context_size_error\"}}",
     "HTTP 400: the request exceeds the available context size "
     "(exceed_context_size_error)",
     0},
    {"Ollama", 404,
     "{\"error\":\"model \\\"llama3\\\" not found, try pulling it first\"}",
     "HTTP 404: model \"llama3\" not found, try pulling it first", 0},
    {"Ollama", 500, "{\"error\":\"llama runner process has terminated\"}",
     "HTTP 500: llama runner process has terminated", 1},
    {"FastAPI", 404, "{\"detail\":\"Not Found\"}", "HTTP 404: Not Found", 0},
    {"proxy", 502, "<html>\r\n<body>Bad Gateway</body>\r\n</html>\n",
     "HTTP 502: <html>  <body>Bad Gateway</body>  </html> ", 1},
    {"proxy", 504, "", "HTTP 504: empty body", 1},
    {"unknown JSON", 403, "{\"reason\":\"forbidden\"}",
     "HTTP 403: {\"reason\":\"forbidden\"}", 0},
};

static void test_parse_error_shapes(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const error_case_t *c = &error_cases[i];
        parsed_t p;

        parse(&p, RL_API_CHAT, c->status, c->body);
        if (strcmp(p.res.error, c->error) != 0 ||
            p.res.retriable != c->retriable)
            fail_msg("%s %d: got \"%s\" retriable=%d", c->server, c->status,
                     p.res.error, p.res.retriable);
        assert_int_equal(p.res.ok, 0);
        assert_int_equal(p.res.http_status, c->status);
        assert_null(p.res.text);
        json_decref(p.scratch);
    }
}

static void test_parse_unparseable_2xx(void **state)
{
    static const struct {
        rl_backend_api_t api;
        const char *body, *error;
    } cases[] = {
        {RL_API_CHAT, "<html>oops</html>",
         "unparseable reply: not JSON: <html>oops</html>"},
        {RL_API_CHAT, "", "unparseable reply: not JSON: empty body"},
        {RL_API_CHAT, "{\"choices\":[]}",
         "unparseable reply: no choices[0]: {\"choices\":[]}"},
        {RL_API_CHAT, "[1,2]", "unparseable reply: not a JSON object: [1,2]"},
        /* a completions reply read as chat, and the other way round */
        {RL_API_CHAT, "{\"choices\":[{\"text\":\"x\"}]}",
         "unparseable reply: no string choices[0].message.content: "
         "{\"choices\":[{\"text\":\"x\"}]}"},
        {RL_API_COMPLETIONS,
         "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}",
         "unparseable reply: no string choices[0].text: "
         "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}"},
        /* a server that reports errors with a 200 */
        {RL_API_CHAT, "{\"error\":\"busy\"}",
         "unparseable reply: no choices[0]: busy"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed_t p;

        parse(&p, cases[i].api, 200, cases[i].body);
        assert_int_equal(p.res.ok, 0);
        assert_int_equal(p.res.retriable, 0);
        assert_string_equal(p.res.error, cases[i].error);
        json_decref(p.scratch);
    }
}

static void test_parse_long_message_is_one_short_line(void **state)
{
    rl_buf_t body = RL_BUF_INIT;
    parsed_t p;
    int i;

    rl_buf_puts(&body, "{\"error\":\"");
    for (i = 0; i < 500; i++)
        rl_buf_puts(&body, "line\\nof text \\u00e9\\t");
    rl_buf_puts(&body, "\"}");
    parse(&p, RL_API_CHAT, 500, body.data);
    assert_non_null(strstr(p.res.error, "HTTP 500: line of text"));
    assert_null(strchr(p.res.error, '\n'));
    assert_null(strchr(p.res.error, '\t'));
    assert_true(strlen(p.res.error) < 400);
    /* cut on a character boundary, and marked */
    assert_string_equal(p.res.error + strlen(p.res.error) - 3, "...");
    assert_int_not_equal((unsigned char)p.res.error[strlen(p.res.error) - 4],
                         0xC3);
    json_decref(p.scratch);
    rl_buf_free(&body);
}

static void test_parse_error_line_is_valid_utf8(void **state)
{
    /* bad bytes: a stray continuation, an overlong '/', a surrogate, a
     * lead byte cut short; then a character cut by the 200-byte limit */
    static const char body[] = "a\x80"
                               "b\xc0\xaf"
                               "c\xed\xa0\x80"
                               "d\xe2\x82";
    rl_buf_t big = RL_BUF_INIT;
    parsed_t p;
    int i;

    parse(&p, RL_API_CHAT, 502, body);
    assert_string_equal(p.res.error, "HTTP 502: a?b??c???d??");
    json_decref(p.scratch);

    for (i = 0; i < 199; i++)
        rl_buf_putc(&big, 'x');
    rl_buf_puts(&big, "\xe2\x82\xac tail");
    parse(&p, RL_API_CHAT, 502, big.data);
    assert_int_equal(strlen(p.res.error), strlen("HTTP 502: ") + 199 + 3);
    assert_string_equal(p.res.error + strlen(p.res.error) - 4, "x...");
    json_decref(p.scratch);
    rl_buf_free(&big);
}

static void test_classification_table(void **state)
{
    static const struct {
        int status, retriable;
    } table[] = {
        {0, 1},   {400, 0}, {401, 0}, {403, 0}, {404, 0}, {408, 1},
        {409, 1}, {413, 0}, {422, 0}, {424, 1}, {429, 1}, {500, 1},
        {501, 1}, {502, 1}, {503, 1}, {504, 1}, {599, 1}, {301, 0},
    };
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        parsed_t p;

        if (rl_backend_status_retriable(table[i].status) != table[i].retriable)
            fail_msg("status %d", table[i].status);
        if (table[i].status == 0)
            continue;
        parse(&p, RL_API_COMPLETIONS, table[i].status, "{\"error\":\"x\"}");
        assert_int_equal(p.res.retriable, table[i].retriable);
        json_decref(p.scratch);
    }
}

/*
 * fakellm, the server the integration tests talk to
 */

typedef struct server_s {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:PORT */
} server_t;

static const char *fakellm_path(void)
{
    static char path[4096];
    const char *env = getenv("FAKELLM");
    char *copy;

    if (env && *env)
        return env;
    copy = rl_xstrdup(argv0);
    snprintf(path, sizeof(path), "%s/../fakellm", dirname(copy));
    free(copy);
    return path;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Reads the port fakellm wrote; 0 while the file is not there yet. */
static int read_port(const char *path)
{
    FILE *f = fopen(path, "r");
    int port = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%d", &port) != 1)
        port = 0;
    fclose(f);
    return port;
}

static void server_start(server_t *srv, const char *const *extra)
{
    static int serial;
    char port_file[256];
    const char *args[32];
    size_t n = 0;
    int i;

    snprintf(port_file, sizeof(port_file), "/tmp/test_backend.%d.%d.port",
             (int)getpid(), serial++);
    unlink(port_file);
    args[n++] = fakellm_path();
    args[n++] = "--port-file";
    args[n++] = port_file;
    while (extra && *extra && n < 30)
        args[n++] = *extra++;
    args[n] = NULL;

    srv->pid = fork();
    assert_true(srv->pid >= 0);
    if (srv->pid == 0) {
        /* A failed assertion skips server_stop(): the server must not
         * outlive the test (nor keep its output pipes open). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(args[0], (char *const *)args);
        fprintf(stderr, "cannot run %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    for (i = 0; i < 500; i++) {
        int status;

        srv->port = read_port(port_file);
        if (srv->port > 0)
            break;
        if (waitpid(srv->pid, &status, WNOHANG) == srv->pid)
            fail_msg("fakellm (%s) exited early", args[0]);
        sleep_ms(10);
    }
    unlink(port_file);
    if (srv->port <= 0)
        fail_msg("fakellm did not start");
    snprintf(srv->base, sizeof(srv->base), "http://127.0.0.1:%d", srv->port);
}

/* Stops the server and checks that SIGTERM made it exit cleanly. */
static void server_stop(server_t *srv)
{
    int status = 0;

    if (srv->pid <= 0)
        return;
    kill(srv->pid, SIGTERM);
    assert_int_equal(waitpid(srv->pid, &status, 0), srv->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    srv->pid = 0;
}

static size_t collect(char *data, size_t size, size_t n, void *opaque)
{
    rl_buf_append(opaque, data, size * n);
    return size * n;
}

/* @returns fakellm's /stats, fetched with a blocking request. */
static json_t *server_stats(const server_t *srv)
{
    rl_buf_t body = RL_BUF_INIT, url = RL_BUF_INIT;
    CURL *e = curl_easy_init();
    json_t *stats;

    rl_buf_printf(&url, "%s/stats", srv->base);
    curl_easy_setopt(e, CURLOPT_URL, url.data);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_cleanup(e);
    stats = json_loads(rl_buf_cstr(&body), 0, NULL);
    assert_non_null(stats);
    rl_buf_free(&body);
    rl_buf_free(&url);
    return stats;
}

static long long stat_int(const json_t *stats, const char *key)
{
    json_t *v = json_object_get(stats, key);

    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/*
 * Driving the backend
 */

/* What a callback saw, copied: result strings die with the callback. */
typedef struct outcome_s {
    int done;
    int order; /* 1 for the first call to finish */
    int ok, retriable, http_status;
    char *error, *text, *finish_reason, *model;
    long long prompt_tokens, completion_tokens, total_tokens;
    long long retry_after_ms;
    double elapsed_ms;
} outcome_t;

typedef struct harness_s {
    rl_loop_t *loop;
    rl_backend_t *backend;
    int finished;
    int in_submit; /* a callback from inside submit would see this set */
    server_t *srv;
} harness_t;

static harness_t *g_h;

static char *dup_or_null(const char *s)
{
    return s ? rl_xstrdup(s) : NULL;
}

static void on_done(void *opaque, const rl_backend_result_t *res)
{
    outcome_t *o = opaque;

    assert_false(g_h->in_submit);
    assert_false(o->done);
    o->done = 1;
    o->order = ++g_h->finished;
    o->ok = res->ok;
    o->retriable = res->retriable;
    o->http_status = res->http_status;
    o->error = dup_or_null(res->error);
    o->text = res->text ? rl_xmemdup(res->text, res->text_len) : NULL;
    o->finish_reason = dup_or_null(res->finish_reason);
    o->model = dup_or_null(res->model);
    o->prompt_tokens = res->prompt_tokens;
    o->completion_tokens = res->completion_tokens;
    o->total_tokens = res->total_tokens;
    o->elapsed_ms = res->elapsed_ms;
    o->retry_after_ms = res->retry_after_ms;
}

static void outcome_free(outcome_t *o)
{
    free(o->error);
    free(o->text);
    free(o->finish_reason);
    free(o->model);
    memset(o, 0, sizeof(*o));
}

static rl_backend_conf_t base_conf(rl_backend_api_t api, const char *url)
{
    rl_backend_conf_t conf;

    memset(&conf, 0, sizeof(conf));
    conf.api = api;
    conf.url = url;
    conf.model = "test-model";
    conf.temperature = -1;
    conf.connect_timeout_ms = 2000;
    conf.timeout_ms = 10000;
    conf.max_connections = 8;
    conf.max_reply_bytes = 1 << 20;
    return conf;
}

static void open_backend(harness_t *h, const rl_backend_conf_t *conf)
{
    char err[256] = "";

    h->backend = rl_backend_new(h->loop, conf, err, sizeof(err));
    if (!h->backend)
        fail_msg("rl_backend_new: %s", err);
}

static void close_backend(harness_t *h)
{
    rl_backend_destroy(h->backend);
    h->backend = NULL;
}

static void submit(harness_t *h, const char *id, const char *prompt,
                   outcome_t *o)
{
    rl_backend_req_t req;
    int rc;

    memset(&req, 0, sizeof(req));
    req.prompt = prompt;
    req.prompt_len = strlen(prompt);
    req.recommended = "the recommended answer";
    req.recommended_len = strlen(req.recommended);
    req.request_id = id;
    h->in_submit = 1;
    rc = rl_backend_submit(h->backend, &req, on_done, o);
    h->in_submit = 0;
    assert_int_equal(rc, 0);
    assert_false(o->done);
}

/* Runs the loop until @p target calls have finished in all. */
static void run_until(harness_t *h, int target, int timeout_ms)
{
    int64_t deadline = rl_now_us() / 1000 + timeout_ms;

    while (h->finished < target) {
        if (rl_now_us() / 1000 > deadline)
            fail_msg("only %d of %d calls finished", h->finished, target);
        assert_true(rl_loop_run_once(h->loop, 50) >= 0);
    }
}

static void run_for(harness_t *h, int ms)
{
    int64_t until = rl_now_us() / 1000 + ms;

    while (rl_now_us() / 1000 < until)
        rl_loop_run_once(h->loop, 10);
}

/* One call from start to end. */
static void call_once(harness_t *h, const char *id, const char *prompt,
                      outcome_t *o)
{
    int target = h->finished + 1;

    memset(o, 0, sizeof(*o));
    submit(h, id, prompt, o);
    run_until(h, target, 15000);
    assert_true(o->done);
}

static int setup(void **state)
{
    static server_t srv;
    static harness_t h;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&h, 0, sizeof(h));
    server_start(&srv, NULL);
    h.srv = &srv;
    h.loop = rl_loop_new();
    g_h = &h;
    *state = &h;
    return 0;
}

static int teardown(void **state)
{
    harness_t *h = *state;

    server_stop(h->srv);
    rl_loop_destroy(h->loop);
    curl_global_cleanup();
    return 0;
}

static int reset_counts(void **state)
{
    harness_t *h = *state;

    h->finished = 0;
    return 0;
}

/*
 * Integration
 */

static void test_chat_round_trip(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, h->srv->base);
    outcome_t o;

    open_backend(h, &conf);
    assert_string_equal(rl_backend_name(h->backend), "openai-chat");
    assert_string_equal(rl_backend_model(h->backend), "test-model");
    call_once(h, "req-chat-1", "What is 2+2?", &o);
    assert_int_equal(o.ok, 1);
    assert_int_equal(o.http_status, 200);
    assert_string_equal(o.text, "answer to req-chat-1");
    assert_string_equal(o.finish_reason, "stop");
    assert_string_equal(o.model, "test-model");
    assert_true(o.prompt_tokens > 0 && o.completion_tokens > 0);
    assert_int_equal(o.total_tokens, o.prompt_tokens + o.completion_tokens);
    assert_true(o.elapsed_ms > 0);
    assert_int_equal(rl_backend_inflight(h->backend), 0);
    outcome_free(&o);
    close_backend(h);
}

static void test_completions_round_trip(void **state)
{
    harness_t *h = *state;
    char url[128];
    rl_backend_conf_t conf;
    outcome_t o;

    snprintf(url, sizeof(url), "%s/v1/", h->srv->base);
    conf = base_conf(RL_API_COMPLETIONS, url);
    open_backend(h, &conf);
    assert_string_equal(rl_backend_name(h->backend), "openai-completions");
    call_once(h, "req-cmpl-1", "Q: 2+2\nA:", &o);
    assert_int_equal(o.ok, 1);
    assert_string_equal(o.text, "answer to req-cmpl-1");
    assert_string_equal(o.model, "test-model");
    outcome_free(&o);
    close_backend(h);
}

/* Sends a FAKELLM:echo request; @returns what the server saw. */
static json_t *echo_call(harness_t *h, const rl_backend_conf_t *conf,
                         const char *prompt)
{
    outcome_t o;
    json_t *seen;

    open_backend(h, conf);
    call_once(h, "req\r\nX-Evil: 1", prompt, &o);
    if (!o.ok)
        fail_msg("echo call failed: %s", o.error);
    seen = json_loads(o.text, 0, NULL);
    assert_non_null(seen);
    outcome_free(&o);
    close_backend(h);
    return seen;
}

static void test_chat_request_shape(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, h->srv->base);
    const char *prompt = "say \"hi\"\n\ttab \xc3\xa9 FAKELLM:echo";
    json_t *seen, *headers, *body, *msgs;

    conf.system_prompt = "You are terse.";
    conf.temperature = 0.7;
    conf.max_tokens = 64;
    conf.api_key = "sk-test-123";
    seen = echo_call(h, &conf, prompt);

    assert_string_equal(json_string_value(json_object_get(seen, "method")),
                        "POST");
    assert_string_equal(json_string_value(json_object_get(seen, "path")),
                        "/v1/chat/completions");
    headers = json_object_get(seen, "headers");
    assert_string_equal(
        json_string_value(json_object_get(headers, "content-type")),
        "application/json");
    assert_string_equal(
        json_string_value(json_object_get(headers, "authorization")),
        "Bearer sk-test-123");
    /* the id cannot inject a header */
    assert_string_equal(
        json_string_value(json_object_get(headers, "x-request-id")),
        "req__X-Evil:_1");
    assert_null(json_object_get(headers, "x-evil"));
    assert_null(json_object_get(headers, "expect"));

    body =
        json_loads(json_string_value(json_object_get(seen, "body")), 0, NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "model")),
                        "test-model");
    msgs = json_object_get(body, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
        "system");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
        "You are terse.");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
        "user");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
        prompt);
    assert_true(json_real_value(json_object_get(body, "temperature")) == 0.7);
    assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")),
                     64);
    assert_true(json_is_false(json_object_get(body, "stream")));
    assert_int_equal(json_object_size(body), 5);
    json_decref(body);
    json_decref(seen);
}

static void test_completions_request_shape(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_COMPLETIONS, h->srv->base);
    json_t *seen, *body, *headers;

    conf.model = "";
    seen = echo_call(h, &conf, "Q: FAKELLM:echo\nA:");
    headers = json_object_get(seen, "headers");
    assert_null(json_object_get(headers, "authorization"));
    body =
        json_loads(json_string_value(json_object_get(seen, "body")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "model")), "");
    assert_string_equal(json_string_value(json_object_get(body, "prompt")),
                        "Q: FAKELLM:echo\nA:");
    assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")),
                     256);
    assert_null(json_object_get(body, "temperature"));
    assert_null(json_object_get(body, "stream"));
    json_decref(body);
    json_decref(seen);
}

/* A body begun by rl_backend_body_start() goes out without a copy and
 * its prompt, escaped already (rl_render_escaped()), is not escaped a
 * second time; the caller's buffer comes back empty, ready for the next
 * one. */
static void test_body_rendered_in_place(void **state)
{
    static const struct {
        const char *escaped, *text;
    } rounds[] = {
        {"first \\\"one\\\" FAKELLM:echo", "first \"one\" FAKELLM:echo"},
        {"second \\\\ FAKELLM:echo", "second \\ FAKELLM:echo"},
        {"say \\\"hi\\\"\\n\\\\ FAKELLM:echo", "say \"hi\"\n\\ FAKELLM:echo"},
    };
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_COMPLETIONS, h->srv->base);
    rl_buf_t body = RL_BUF_INIT;
    rl_backend_req_t req;
    outcome_t o;
    json_t *seen, *sent;
    size_t round;

    open_backend(h, &conf);
    for (round = 0; round < sizeof(rounds) / sizeof(rounds[0]); round++) {
        rl_backend_body_start(h->backend, &body);
        assert_true(body.len > 0);
        rl_buf_puts(&body, rounds[round].escaped);
        memset(&req, 0, sizeof(req));
        memset(&o, 0, sizeof(o));
        req.body = &body;
        req.request_id = "in-place";
        assert_int_equal(rl_backend_submit(h->backend, &req, on_done, &o), 0);
        assert_int_equal((int)body.len, 0);
        run_until(h, h->finished + 1, 15000);
        if (!o.ok)
            fail_msg("echo call failed: %s", o.error);
        seen = json_loads(o.text, 0, NULL);
        assert_non_null(seen);
        sent = json_loads(json_string_value(json_object_get(seen, "body")), 0,
                          NULL);
        assert_non_null(sent);
        assert_string_equal(json_string_value(json_object_get(sent, "prompt")),
                            rounds[round].text);
        assert_string_equal(json_string_value(json_object_get(sent, "model")),
                            "test-model");
        json_decref(sent);
        json_decref(seen);
        outcome_free(&o);
    }
    rl_buf_free(&body);
    close_backend(h);
}

static void test_url_forms(void **state)
{
    static const char *const suffixes[] = {"", "/", "/v1", "/v1/", "//"};
    harness_t *h = *state;
    size_t i;

    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char url[128];
        rl_backend_conf_t conf;
        json_t *seen;

        snprintf(url, sizeof(url), "%s%s", h->srv->base, suffixes[i]);
        conf = base_conf(i % 2 ? RL_API_COMPLETIONS : RL_API_CHAT, url);
        seen = echo_call(h, &conf, "FAKELLM:echo");
        assert_string_equal(json_string_value(json_object_get(seen, "path")),
                            i % 2 ? "/v1/completions" : "/v1/chat/completions");
        json_decref(seen);
    }
}

#define NCONCURRENT 150

static void test_concurrent_out_of_order(void **state)
{
    static const char *const args[] = {
        "--latency-ms", "40", "--latency-dist", "uniform", "--seed", "7", NULL};
    harness_t *h = *state;
    server_t slow;
    rl_backend_conf_t conf;
    outcome_t *o = rl_xcalloc(NCONCURRENT, sizeof(*o));
    char id[32];
    int i, inversions = 0;
    json_t *stats;

    server_start(&slow, args);
    conf = base_conf(RL_API_CHAT, slow.base);
    conf.max_connections = 200;
    open_backend(h, &conf);
    for (i = 0; i < NCONCURRENT; i++) {
        snprintf(id, sizeof(id), "c-%d", i);
        submit(h, id, "concurrent", &o[i]);
    }
    assert_int_equal(rl_backend_inflight(h->backend), NCONCURRENT);
    run_until(h, NCONCURRENT, 20000);
    assert_int_equal(rl_backend_inflight(h->backend), 0);

    for (i = 0; i < NCONCURRENT; i++) {
        snprintf(id, sizeof(id), "answer to c-%d", i);
        assert_int_equal(o[i].ok, 1);
        assert_string_equal(o[i].text, id);
        if (i > 0 && o[i].order < o[i - 1].order)
            inversions++;
    }
    for (i = 0; i < NCONCURRENT; i++)
        outcome_free(&o[i]);
    /* random latencies reorder the answers */
    assert_true(inversions > 10);

    /* and the server really had them all at once */
    stats = server_stats(&slow);
    assert_true(stat_int(stats, "max_inflight") >= NCONCURRENT / 2);
    json_decref(stats);
    close_backend(h);
    server_stop(&slow);
    free(o);
}

static void test_timeout_is_retriable(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, h->srv->base);
    outcome_t o;

    conf.timeout_ms = 300;
    open_backend(h, &conf);
    call_once(h, "slow-1", "FAKELLM:sleep=5000", &o);
    assert_int_equal(o.ok, 0);
    assert_int_equal(o.retriable, 1);
    assert_int_equal(o.http_status, 0);
    assert_true(o.elapsed_ms >= 250 && o.elapsed_ms < 3000);
    assert_non_null(strstr(o.error, h->srv->base));
    assert_null(strchr(o.error, '\n'));
    outcome_free(&o);
    close_backend(h);
}

static void test_connection_refused_is_retriable(void **state)
{
    harness_t *h = *state;
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char url[64];
    rl_backend_conf_t conf;
    outcome_t o;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* a port that was free a moment ago and has no listener */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));

    conf = base_conf(RL_API_COMPLETIONS, url);
    open_backend(h, &conf);
    call_once(h, "refused-1", "hello", &o);
    assert_int_equal(o.ok, 0);
    assert_int_equal(o.retriable, 1);
    assert_int_equal(o.http_status, 0);
    assert_non_null(strstr(o.error, "/v1/completions failed: "));
    outcome_free(&o);
    close_backend(h);
}

static void test_http_errors_classified(void **state)
{
    harness_t *h = *state;
    char url[128], expect[256];
    rl_backend_conf_t conf;
    outcome_t o;

    /* credentials in the URL must not reach an error line */
    snprintf(url, sizeof(url), "http://user:hunter2@127.0.0.1:%d",
             h->srv->port);
    conf = base_conf(RL_API_CHAT, url);
    conf.api_key = "sk-secret-key";
    open_backend(h, &conf);

    call_once(h, "e-503", "FAKELLM:status=503", &o);
    snprintf(expect, sizeof(expect),
             "HTTP 503 from %s/v1/chat/completions: injected HTTP 503 "
             "(server_error)",
             h->srv->base);
    assert_string_equal(o.error, expect);
    assert_int_equal(o.retriable, 1);
    assert_int_equal(o.http_status, 503);
    outcome_free(&o);

    call_once(h, "e-400", "FAKELLM:status=400", &o);
    assert_int_equal(o.retry_after_ms, -1); /* no hint sent */
    assert_int_equal(o.ok, 0);
    assert_int_equal(o.retriable, 0);
    assert_int_equal(o.http_status, 400);
    assert_null(strstr(o.error, "hunter2"));
    assert_null(strstr(o.error, "sk-secret"));
    outcome_free(&o);

    call_once(h, "e-424", "FAKELLM:status=424 FAKELLM:shape=tgi", &o);
    assert_int_equal(o.retriable, 1);
    assert_non_null(strstr(o.error, ": injected HTTP 424 (generation)"));
    outcome_free(&o);

    call_once(h, "e-404", "FAKELLM:status=404 FAKELLM:shape=ollama", &o);
    assert_int_equal(o.retriable, 0);
    assert_non_null(strstr(o.error, ": injected HTTP 404"));
    outcome_free(&o);

    call_once(h, "e-junk", "FAKELLM:garbage", &o);
    assert_int_equal(o.ok, 0);
    assert_int_equal(o.retriable, 0);
    assert_int_equal(o.http_status, 200);
    assert_non_null(strstr(o.error, "unparseable reply: not JSON: <html>"));
    assert_null(strchr(o.error, '\n'));
    outcome_free(&o);

    /* the server hangs up without a word */
    call_once(h, "e-close", "FAKELLM:close", &o);
    assert_int_equal(o.retriable, 1);
    assert_int_equal(o.http_status, 0);
    outcome_free(&o);
    close_backend(h);
}

static void test_retry_after_hint(void **state)
{
    static const char *const args[] = {"--error-rate", "1", "--retry-after",
                                       "2", NULL};
    harness_t *h = *state;
    server_t busy;
    rl_backend_conf_t conf;
    outcome_t o;

    server_start(&busy, args);
    conf = base_conf(RL_API_COMPLETIONS, busy.base);
    open_backend(h, &conf);
    call_once(h, "busy-1", "hello", &o);
    assert_int_equal(o.http_status, 503);
    assert_int_equal(o.retriable, 1);
    assert_int_equal(o.retry_after_ms, 2000);
    outcome_free(&o);
    close_backend(h);
    server_stop(&busy);
}

static void test_huge_reply_is_permanent(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, h->srv->base);
    outcome_t o;

    conf.max_reply_bytes = 4096;
    open_backend(h, &conf);
    call_once(h, "huge-1", "FAKELLM:huge=200000", &o);
    assert_int_equal(o.ok, 0);
    assert_int_equal(o.retriable, 0);
    assert_non_null(strstr(o.error, "reply over 4096 bytes from "));
    outcome_free(&o);

    /* a reply just under the cap still gets through */
    call_once(h, "huge-2", "FAKELLM:huge=3000", &o);
    assert_int_equal(o.ok, 1);
    assert_int_equal(strlen(o.text), 3000);
    outcome_free(&o);
    close_backend(h);
}

/* Each answer submits the next request from inside the callback. */
typedef struct chain_s {
    harness_t *h;
    int left;
    int ok;
} chain_t;

static void chain_next(chain_t *c);

static void on_chain_done(void *opaque, const rl_backend_result_t *res)
{
    chain_t *c = opaque;

    c->ok += res->ok;
    c->h->finished++;
    if (c->left > 0)
        chain_next(c);
}

static void chain_next(chain_t *c)
{
    rl_backend_req_t req;

    memset(&req, 0, sizeof(req));
    req.prompt = "chained";
    req.prompt_len = 7;
    req.request_id = "chain";
    c->left--;
    assert_int_equal(rl_backend_submit(c->h->backend, &req, on_chain_done, c),
                     0);
}

static void test_connections_are_reused(void **state)
{
    harness_t *h = *state;
    server_t fresh;
    rl_backend_conf_t conf;
    chain_t chain = {h, 20, 0};
    outcome_t o[30];
    json_t *stats;
    int i;

    server_start(&fresh, NULL);
    conf = base_conf(RL_API_CHAT, fresh.base);
    conf.max_connections = 4;
    open_backend(h, &conf);

    /* one after the other: one connection carries them all */
    chain_next(&chain);
    run_until(h, 20, 15000);
    assert_int_equal(chain.ok, 20);
    stats = server_stats(&fresh);
    /* the stats request itself is one more connection */
    assert_int_equal(stat_int(stats, "connections_total"), 2);
    json_decref(stats);

    /* thirty at once: never more connections than the pool allows */
    memset(o, 0, sizeof(o));
    for (i = 0; i < 30; i++)
        submit(h, "pool", "FAKELLM:sleep=20", &o[i]);
    run_until(h, 50, 15000);
    stats = server_stats(&fresh);
    /* 4, plus perhaps the first stats connection if the server saw its
     * close only after a new connection arrived */
    assert_true(stat_int(stats, "max_connections") <= 4 + 1);
    assert_true(stat_int(stats, "connections_total") <= 4 + 2);
    assert_int_equal(stat_int(stats, "requests"), 20 + 1 + 30 + 1);
    json_decref(stats);
    for (i = 0; i < 30; i++) {
        assert_int_equal(o[i].ok, 1);
        outcome_free(&o[i]);
    }
    close_backend(h);
    server_stop(&fresh);
}

/* A pool larger than one curl multi handle holds is split into shards;
 * together they keep to max_connections, and every call completes. */
static void test_sharded_pool_keeps_the_cap(void **state)
{
    enum { CAP = 130, CALLS = 300 };
    harness_t *h = *state;
    server_t fresh;
    rl_backend_conf_t conf;
    outcome_t *o = rl_xcalloc(CALLS, sizeof(*o));
    char id[32];
    json_t *stats;
    int i;

    server_start(&fresh, NULL);
    conf = base_conf(RL_API_CHAT, fresh.base);
    conf.max_connections = CAP;
    open_backend(h, &conf);
    for (i = 0; i < CALLS; i++) {
        snprintf(id, sizeof(id), "s-%d", i);
        submit(h, id, "FAKELLM:sleep=100", &o[i]);
    }
    run_until(h, CALLS, 30000);
    for (i = 0; i < CALLS; i++) {
        assert_int_equal(o[i].ok, 1);
        outcome_free(&o[i]);
    }
    stats = server_stats(&fresh);
    /* the server held close to the cap at once, never more (plus the
     * stats request's own connection) */
    assert_true(stat_int(stats, "max_inflight") >= CAP * 3 / 4);
    assert_true(stat_int(stats, "max_connections") <= CAP + 1);
    json_decref(stats);
    close_backend(h);
    server_stop(&fresh);
    free(o);
}

static void test_builtin_backend(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_BUILTIN, NULL);
    outcome_t o[3];
    int i;

    memset(o, 0, sizeof(o));
    open_backend(h, &conf);
    assert_string_equal(rl_backend_name(h->backend), "builtin");
    for (i = 0; i < 3; i++)
        submit(h, "b", "ignored", &o[i]);
    assert_int_equal(rl_backend_inflight(h->backend), 3);
    run_until(h, 3, 2000);
    assert_int_equal(rl_backend_inflight(h->backend), 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(o[i].ok, 1);
        assert_string_equal(o[i].text, "the recommended answer");
        assert_string_equal(o[i].finish_reason, "stop");
        assert_string_equal(o[i].model, "builtin");
        assert_int_equal(o[i].prompt_tokens, -1);
        assert_int_equal(o[i].total_tokens, -1);
        assert_int_equal(o[i].order, i + 1); /* in submission order */
        outcome_free(&o[i]);
    }
    close_backend(h);
}

static void test_destroy_with_calls_in_flight(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, h->srv->base);
    outcome_t o[20];
    json_t *stats;
    int i;

    memset(o, 0, sizeof(o));
    conf.max_connections = 20;
    open_backend(h, &conf);
    for (i = 0; i < 20; i++)
        submit(h, "doomed", "FAKELLM:sleep=3000", &o[i]);
    run_for(h, 200);
    stats = server_stats(h->srv);
    assert_int_equal(stat_int(stats, "inflight"), 20 + 1);
    json_decref(stats);

    close_backend(h);
    /* nothing of the backend is left on the loop */
    assert_int_equal(rl_loop_run_once(h->loop, 50), 0);
    for (i = 0; i < 20; i++)
        assert_false(o[i].done);

    /* the builtin backend too: queued answers are dropped */
    conf = base_conf(RL_API_BUILTIN, NULL);
    open_backend(h, &conf);
    for (i = 0; i < 5; i++)
        submit(h, "doomed", "x", &o[i]);
    close_backend(h);
    assert_int_equal(rl_loop_run_once(h->loop, 20), 0);
    assert_int_equal(h->finished, 0);
}

static void test_new_rejects_bad_conf(void **state)
{
    harness_t *h = *state;
    rl_backend_conf_t conf = base_conf(RL_API_CHAT, "ftp://example.com");
    char err[256];

    assert_null(rl_backend_new(h->loop, &conf, err, sizeof(err)));
    assert_non_null(strstr(err, "http://"));

    conf.url = NULL;
    assert_null(rl_backend_new(h->loop, &conf, err, sizeof(err)));
    assert_non_null(strstr(err, "URL"));

    conf.url = "http://127.0.0.1:1";
    conf.max_connections = 0;
    assert_null(rl_backend_new(h->loop, &conf, err, sizeof(err)));
    assert_non_null(strstr(err, "max_connections"));

    conf.max_connections = 4;
    conf.api_key = "sk-line\nbreak";
    assert_null(rl_backend_new(h->loop, &conf, err, sizeof(err)));
    assert_null(strstr(err, "sk-line"));

    rl_backend_destroy(NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_parse_chat_success),
        cmocka_unit_test(test_parse_completions_success),
        cmocka_unit_test(test_parse_error_shapes),
        cmocka_unit_test(test_parse_unparseable_2xx),
        cmocka_unit_test(test_parse_long_message_is_one_short_line),
        cmocka_unit_test(test_parse_error_line_is_valid_utf8),
        cmocka_unit_test(test_classification_table),
    };
    const struct CMUnitTest integration[] = {
        cmocka_unit_test_setup(test_chat_round_trip, reset_counts),
        cmocka_unit_test_setup(test_completions_round_trip, reset_counts),
        cmocka_unit_test_setup(test_chat_request_shape, reset_counts),
        cmocka_unit_test_setup(test_completions_request_shape, reset_counts),
        cmocka_unit_test_setup(test_body_rendered_in_place, reset_counts),
        cmocka_unit_test_setup(test_url_forms, reset_counts),
        cmocka_unit_test_setup(test_concurrent_out_of_order, reset_counts),
        cmocka_unit_test_setup(test_timeout_is_retriable, reset_counts),
        cmocka_unit_test_setup(test_connection_refused_is_retriable,
                               reset_counts),
        cmocka_unit_test_setup(test_http_errors_classified, reset_counts),
        cmocka_unit_test_setup(test_retry_after_hint, reset_counts),
        cmocka_unit_test_setup(test_huge_reply_is_permanent, reset_counts),
        cmocka_unit_test_setup(test_connections_are_reused, reset_counts),
        cmocka_unit_test_setup(test_sharded_pool_keeps_the_cap, reset_counts),
        cmocka_unit_test_setup(test_builtin_backend, reset_counts),
        cmocka_unit_test_setup(test_destroy_with_calls_in_flight, reset_counts),
        cmocka_unit_test_setup(test_new_rejects_bad_conf, reset_counts),
    };
    int failed;

    argv0 = argc > 0 ? argv[0] : "test_backend";
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    failed = cmocka_run_group_tests_name("parse", unit, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("fakellm", integration, setup, teardown);
    return failed;
}
