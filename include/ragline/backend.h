/*
 * ragline - the generation backend client.
 *
 * Requests go to an OpenAI-compatible server (vLLM, TGI, llama.cpp,
 * Ollama) over libcurl's multi-socket interface, driven by the worker's
 * rl_loop_t: many requests in flight, no thread per request.  The
 * built-in backend answers with the event's recommended answer and is
 * marked "builtin" so that nobody mistakes it for a model.
 *
 * @locality every call on the loop's thread; callbacks run there too.
 */
#ifndef RAGLINE_BACKEND_H
#define RAGLINE_BACKEND_H

#include <stddef.h>

#include <jansson.h>

#include "ragline/buf.h"
#include "ragline/loop.h"

typedef enum {
    RL_API_CHAT,        /**< POST {url}/v1/chat/completions */
    RL_API_COMPLETIONS, /**< POST {url}/v1/completions */
    RL_API_BUILTIN,     /**< no HTTP: echo the recommended answer */
} rl_backend_api_t;

typedef struct rl_backend_conf_s {
    rl_backend_api_t api;
    const char *url;           /**< base URL; "/v1" suffix optional */
    const char *model;         /**< sent as "model"; may be "" */
    const char *api_key;       /**< Bearer token or NULL; never logged */
    const char *system_prompt; /**< chat only; NULL or "" = none */
    double temperature;        /**< < 0: not sent */
    int max_tokens;            /**< <= 0: not sent (completions: 256) */
    long connect_timeout_ms;
    long timeout_ms;        /**< whole request */
    int max_connections;    /**< keep-alive pool size = in-flight cap */
    size_t max_reply_bytes; /**< larger replies fail as permanent */
} rl_backend_conf_t;

/** The outcome of one call.  Strings are owned by the backend and valid
 *  only during the callback. */
typedef struct rl_backend_result_s {
    int ok;            /**< 1: text holds the answer */
    int retriable;     /**< on failure: a retry might succeed */
    int http_status;   /**< 0 when no HTTP reply was received */
    const char *error; /**< one line, on failure */
    const char *text;
    size_t text_len;
    const char *finish_reason; /**< may be NULL */
    const char *model;         /**< as the server reported it; may be NULL */
    long long prompt_tokens;   /**< -1 when not reported */
    long long completion_tokens;
    long long total_tokens;
    double elapsed_ms;
    /** on failure: the server's Retry-After / retry-after-ms hint in ms
     *  (see rl_retry_after_ms()), or -1 when it gave none */
    long long retry_after_ms;
} rl_backend_result_t;

typedef void(rl_backend_done_cb)(void *opaque,
                                 const rl_backend_result_t *result);

typedef struct rl_backend_req_s {
    const char *prompt; /**< plain text, escaped into the body */
    size_t prompt_len;
    /** Instead of @c prompt: a buffer that rl_backend_body_start() began
     *  and the caller then appended the escaped prompt to.  The call
     *  takes its bytes without copying them and leaves @c body empty,
     *  holding a buffer of the call's in exchange. */
    rl_buf_t *body;
    const char *recommended; /**< what the builtin backend answers */
    size_t recommended_len;
    const char *request_id; /**< event id, for logs and X-Request-Id */
} rl_backend_req_t;

typedef struct rl_backend_s rl_backend_t;

/**
 * @returns a backend, or NULL with a one-line reason in @p errstr.
 *          @p conf's strings are copied.
 */
rl_backend_t *rl_backend_new(rl_loop_t *loop, const rl_backend_conf_t *conf,
                             char *errstr, size_t errstr_size);

/**
 * @brief Begins a request body in @p body (reset first): what goes before
 *        the escaped prompt, which the caller appends before passing
 *        @p body as rl_backend_req_t.body.  Rendering straight into the
 *        body saves copying each prompt.
 */
void rl_backend_body_start(const rl_backend_t *backend, rl_buf_t *body);

/**
 * @brief Starts one call.  @p req is copied; @p cb runs exactly once,
 *        later, on the loop (never from inside this function).
 * @returns 0, or -1 if the call could not be started (cb will not run).
 */
int rl_backend_submit(rl_backend_t *backend, const rl_backend_req_t *req,
                      rl_backend_done_cb *cb, void *opaque);

/** @returns the calls started whose callback has not run yet. */
size_t rl_backend_inflight(const rl_backend_t *backend);

/** @returns "openai-chat", "openai-completions" or "builtin". */
const char *rl_backend_name(const rl_backend_t *backend);

/** @returns the configured model name ("" if none). */
const char *rl_backend_model(const rl_backend_t *backend);

/**
 * @brief Cancels what is in flight (no callbacks) and frees.  NULL is a
 *        no-op.  Call it before destroying the loop, and never from one
 *        of this backend's callbacks.
 */
void rl_backend_destroy(rl_backend_t *backend);

/**
 * @returns 1 if a failure with this HTTP status may succeed when tried
 *          again (0 = no reply, 408, 409, 424, 429, 5xx), else 0.
 */
int rl_backend_status_retriable(int http_status);

/**
 * @brief Interprets one HTTP reply (exposed for unit tests).
 *
 * Understands the success shapes of both APIs and the error shapes of
 * vLLM/OpenAI ({"error": {"message"}}), TGI ({"error": "...",
 * "error_type"}), llama.cpp ({"error": {"code", "message"}}) and Ollama
 * ({"error": "..."}).  Fills @p res; its strings point into @p scratch,
 * which the caller frees with json_decref().
 */
void rl_backend_parse_reply(rl_backend_api_t api, int http_status,
                            const char *body, size_t len,
                            rl_backend_result_t *res, json_t **scratch);

#endif
