/*
 * ragline - the command line: serve, render, check-config.
 *
 * Exit status: 0 success, 1 a runtime failure, 2 a usage or
 * configuration error.
 */
#include "ragline/arena.h"
#include "ragline/buf.h"
#include "ragline/config.h"
#include "ragline/event.h"
#include "ragline/evidence.h"
#include "ragline/kafka.h"
#include "ragline/log.h"
#include "ragline/loop.h"
#include "ragline/pipeline.h"
#include "ragline/render.h"
#include "ragline/template.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#ifndef RAGLINE_VERSION
#define RAGLINE_VERSION "0.1.0"
#endif

extern char **environ;

static const char usage_text[] =
    "usage: ragline <command> [options]\n"
    "\n"
    "Answers query events from Kafka with retrieval-augmented prompts.\n"
    "\n"
    "commands:\n"
    "  serve [--config FILE]         run the worker until SIGINT/SIGTERM\n"
    "                                (a second signal exits at once)\n"
    "  render [--template FILE] [--evidence FILE.jsonl] [EVENT_FILE]\n"
    "                                print the prompt of one event (standard\n"
    "                                input when no file is given)\n"
    "  check-config [--config FILE]  validate a configuration and print it\n"
    "                                with secrets redacted\n"
    "  check-config --keys           print the table of every key (the one\n"
    "                                in docs/configuration.md)\n"
    "  help | --help                 this text\n"
    "  version | --version           the version\n"
    "\n"
    "The configuration file holds key = value lines; RAGLINE_<KEY> variables\n"
    "override it (RAGLINE_BACKEND_URL sets backend.url) and RAGLINE_CONFIG\n"
    "names the file when --config is not given.  With no\n"
    "kafka.bootstrap.servers, serve starts an embedded in-memory cluster;\n"
    "with no backend.url, it answers with the built-in backend.\n"
    "See docs/configuration.md for every key.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ragline: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'ragline --help'.\n");
    return 2;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

/* Loads the file (if any) and the environment, then validates. */
static rl_config_t *load_config(const char *path,
                                const rl_settings_t **settings)
{
    rl_config_t *conf = rl_config_new();
    char errstr[512];

    if (!path)
        path = getenv("RAGLINE_CONFIG");
    if (path && *path &&
        rl_config_load_file(conf, path, errstr, sizeof(errstr)) < 0)
        goto fail;
    if (rl_config_load_env(conf, environ, errstr, sizeof(errstr)) < 0)
        goto fail;
    *settings = rl_config_validate(conf, errstr, sizeof(errstr));
    if (!*settings)
        goto fail;
    return conf;

fail:
    fprintf(stderr, "ragline: configuration: %s\n", errstr);
    rl_config_destroy(conf);
    return NULL;
}

/* Parses "--config FILE" (or --config=FILE) as the only option. */
static int config_option(int argc, char **argv, const char **path)
{
    int i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", argv[i]);
            *path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else {
            return usage_error("unexpected argument '%s'", argv[i]);
        }
    }
    return 0;
}

static int cmd_check_config(int argc, char **argv)
{
    const rl_settings_t *settings;
    const char *path = NULL;
    rl_config_t *conf;

    if (argc == 1 && strcmp(argv[0], "--keys") == 0) {
        rl_config_print_keys(stdout);
        return 0;
    }
    if (config_option(argc, argv, &path))
        return 2;
    conf = load_config(path, &settings);
    if (!conf)
        return 2;
    rl_config_print(conf, stdout);
    rl_config_destroy(conf);
    return 0;
}

/* ------------------------------------------------------------------ */
/* serve                                                               */

typedef struct {
    rl_pipeline_t *pl;
    int fd;
    int signals;
} signals_t;

static void on_signal(rl_loop_t *loop, int fd, int events, void *opaque)
{
    signals_t *sig = opaque;
    struct signalfd_siginfo info;

    while (read(fd, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
        if (++sig->signals > 1) {
            rl_warn("main", "second signal (%s): exiting now",
                    strsignal((int)info.ssi_signo));
            _exit(1);
        }
        rl_info("main",
                "%s: stopping gracefully (send it again to exit "
                "at once)",
                strsignal((int)info.ssi_signo));
        rl_pipeline_shutdown(sig->pl);
    }
}

/* Blocks SIGINT and SIGTERM before any thread starts (librdkafka's and
 * curl's inherit the mask), so that only the signalfd receives them. */
static int block_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static rl_mock_t *start_embedded(const rl_settings_t *s)
{
    const char *topics[] = {s->input_topic, s->output_topic, s->dlq_topic,
                            s->evidence_topic, NULL};
    char errstr[512];
    rl_mock_t *mock = rl_mock_start(topics, 4, errstr, sizeof(errstr));

    if (!mock) {
        fprintf(stderr, "ragline: embedded cluster: %s\n", errstr);
        return NULL;
    }
    printf("ragline: embedded Kafka cluster at %s (bootstrap.servers); it "
           "lives in memory and keeps nothing when ragline stops\n",
           rl_mock_bootstrap(mock));
    printf("ragline: topics %s -> %s, dead letters %s, evidence %s\n",
           s->input_topic, s->output_topic, s->dlq_topic,
           *s->evidence_topic ? s->evidence_topic : "(none)");
    fflush(stdout);
    return mock;
}

static int serve_loop(const rl_config_t *conf, const rl_settings_t *s,
                      const char *bootstrap, int sigfd)
{
    rl_loop_t *loop = rl_loop_new();
    signals_t sig = {NULL, sigfd, 0};
    char errstr[512];
    int status = 1;

    if (!loop) {
        fprintf(stderr, "ragline: epoll: %s\n", strerror(errno));
        return 1;
    }
    sig.pl = rl_pipeline_new(loop, conf, s, bootstrap, errstr, sizeof(errstr));
    if (!sig.pl) {
        rl_error("main", "%s", errstr);
        goto out;
    }
    rl_loop_io_add(loop, sigfd, RL_IO_READ, on_signal, &sig);
    while (!rl_pipeline_finished(sig.pl))
        if (rl_loop_run_once(loop, 1000) < 0) {
            rl_error("main", "epoll: %s", strerror(errno));
            break;
        }
    status = rl_pipeline_exit_status(sig.pl);
    rl_loop_io_del(loop, sigfd);

out:
    rl_pipeline_destroy(sig.pl);
    rl_loop_destroy(loop);
    return status;
}

static int cmd_serve(int argc, char **argv)
{
    const rl_settings_t *settings;
    const char *path = NULL;
    rl_config_t *conf;
    rl_mock_t *mock = NULL;
    int sigfd, status = 1;

    if (config_option(argc, argv, &path))
        return 2;
    conf = load_config(path, &settings);
    if (!conf)
        return 2;
    rl_log_set_level(settings->log_level);

    sigfd = block_signals();
    if (sigfd < 0) {
        fprintf(stderr, "ragline: signalfd: %s\n", strerror(errno));
        goto out;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (settings->embedded) {
        mock = start_embedded(settings);
        if (!mock)
            goto out;
    }
    if (settings->backend.api == RL_API_BUILTIN)
        rl_notice("main",
                  "no backend.url: answering with the built-in "
                  "backend, which returns each event's recommended answer "
                  "(marked \"backend\": \"builtin\"; it is not a model)");

    status = serve_loop(conf, settings, mock ? rl_mock_bootstrap(mock) : NULL,
                        sigfd);

out:
    rl_mock_stop(mock);
    if (sigfd >= 0)
        close(sigfd);
    curl_global_cleanup();
    rl_config_destroy(conf);
    return status;
}

/* ------------------------------------------------------------------ */
/* render                                                              */

/* Reads a whole file ("-" or NULL: standard input). */
static int read_all(const char *path, rl_buf_t *out)
{
    FILE *f = path && strcmp(path, "-") != 0 ? fopen(path, "rb") : stdin;
    char chunk[65536];
    size_t n;

    if (!f) {
        fprintf(stderr, "ragline: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rl_buf_append(out, chunk, n);
    if (ferror(f)) {
        fprintf(stderr, "ragline: %s: read error\n", path ? path : "stdin");
        if (f != stdin)
            fclose(f);
        return -1;
    }
    if (f != stdin)
        fclose(f);
    return 0;
}

/* json_dump_callback() sink: jansson's own json_dumps() would hand back
 * memory from its allocator, which plain free() must not take. */
static int append_json(const char *data, size_t size, void *opaque)
{
    rl_buf_append(opaque, data, size);
    return 0;
}

/* Loads {"key": ..., "value": ...} lines, the evidence topic's records. */
static int load_evidence(const char *path, rl_evcache_t *cache)
{
    FILE *f = fopen(path, "r");
    rl_buf_t text = RL_BUF_INIT;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, ret = 0;

    if (!f) {
        fprintf(stderr, "ragline: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (ret == 0 && (n = getline(&line, &cap, f)) >= 0) {
        json_error_t jerr;
        json_t *rec, *key, *value;
        char why[256];

        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)n)
            continue;
        rec = json_loadb(line, (size_t)n, 0, &jerr);
        key = json_object_get(rec, "key");
        value = json_object_get(rec, "value");
        if (!rec || !json_is_string(key) || !value) {
            fprintf(stderr,
                    "ragline: %s:%d: expected {\"key\": string, \"value\": "
                    "...}\n",
                    path, lineno);
            ret = -1;
        } else {
            rl_buf_reset(&text);
            if (!json_is_null(value))
                json_dump_callback(value, append_json, &text,
                                   JSON_COMPACT | JSON_ENCODE_ANY);
            if (rl_evcache_apply(cache, json_string_value(key),
                                 json_string_length(key),
                                 json_is_null(value) ? NULL : text.data,
                                 text.len, why, sizeof(why)) < 0) {
                fprintf(stderr, "ragline: %s:%d: %s\n", path, lineno, why);
                ret = -1;
            }
        }
        json_decref(rec);
    }
    free(line);
    rl_buf_free(&text);
    fclose(f);
    return ret;
}

typedef struct {
    const char *template_path;
    const char *evidence_path;
    const char *event_path;
} render_args_t;

static int render_options(int argc, char **argv, render_args_t *a)
{
    int i;

    for (i = 0; i < argc; i++) {
        const char **slot = NULL;

        if (strcmp(argv[i], "--template") == 0)
            slot = &a->template_path;
        else if (strcmp(argv[i], "--evidence") == 0)
            slot = &a->evidence_path;
        if (slot) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", argv[i]);
            *slot = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("unknown option '%s'", argv[i]);
        } else if (a->event_path) {
            return usage_error("one event file at most ('%s')", argv[i]);
        } else {
            a->event_path = argv[i];
        }
    }
    return 0;
}

static int cmd_render(int argc, char **argv)
{
    render_args_t a = {NULL, NULL, NULL};
    const rl_settings_t *settings;
    rl_config_t *conf = NULL;
    rl_template_t *tpl = NULL;
    rl_evcache_t *cache = rl_evcache_new();
    rl_buf_t input = RL_BUF_INIT, prompt = RL_BUF_INIT;
    rl_event_t ev;
    char errstr[512];
    int status = 1;

    memset(&ev, 0, sizeof(ev));
    if (render_options(argc, argv, &a)) {
        status = 2;
        goto out;
    }
    conf = load_config(NULL, &settings); /* limits and template.file */
    if (!conf) {
        status = 2;
        goto out;
    }
    if (!a.template_path && settings->template_file && *settings->template_file)
        a.template_path = settings->template_file;
    tpl = a.template_path
              ? rl_template_load(a.template_path, rl_render_names, errstr,
                                 sizeof(errstr))
              : rl_template_parse(rl_default_template, rl_default_template_len,
                                  rl_render_names, "<default>", errstr,
                                  sizeof(errstr));
    if (!tpl) {
        fprintf(stderr, "ragline: %s\n", errstr);
        status = 2;
        goto out;
    }
    if (a.evidence_path && load_evidence(a.evidence_path, cache) < 0)
        goto out;
    if (read_all(a.event_path, &input) < 0)
        goto out;
    if (rl_event_parse(&ev, input.data, input.len, NULL, 0, &settings->limits,
                       errstr, sizeof(errstr)) != RL_ERR_NONE ||
        rl_render(tpl, &ev.prompt, cache, &prompt, NULL, errstr,
                  sizeof(errstr)) < 0) {
        fprintf(stderr, "ragline: %s: %s\n",
                a.event_path ? a.event_path : "stdin", errstr);
        goto out;
    }
    if (fwrite(prompt.data, 1, prompt.len, stdout) != prompt.len ||
        fflush(stdout) != 0) {
        fprintf(stderr, "ragline: writing the prompt: %s\n", strerror(errno));
        goto out;
    }
    status = 0;

out:
    rl_event_clear(&ev);
    rl_buf_free(&input);
    rl_buf_free(&prompt);
    rl_template_destroy(tpl);
    rl_evcache_destroy(cache);
    rl_config_destroy(conf);
    return status;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";

    rl_arena_install(); /* before any jansson allocation */

    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "render") == 0)
        return cmd_render(argc - 2, argv + 2);
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
        return argc > 1 ? 0 : 2;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ragline %s (librdkafka %s, jansson %s, %s)\n", RAGLINE_VERSION,
               rd_kafka_version_str(), JANSSON_VERSION, curl_version());
        return 0;
    }
    return usage_error("unknown command '%s'", cmd);
}
