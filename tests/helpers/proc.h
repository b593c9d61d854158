/* util_proc: test helpers that run programs and talk HTTP: the mock model server as a child
 * process, any command with a timeout and its output captured, and small libcurl requests.
 *
 * Environment:
 *   MOCK_BIN       the mock server binary (default build/mock-model-server)
 *   MOCK_WRAP      words put before it, e.g. "valgrind -q --error-exitcode=99"
 *   ANNOTATE_WRAP  words put before every run_cmd command (make valgrind sets it)
 * Words are split on blanks; there is no quoting. */
#ifndef ANNOTATE_TESTS_UTIL_PROC_H
#define ANNOTATE_TESTS_UTIL_PROC_H

#include <stddef.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

struct mock_proc {
    pid_t pid;          /* 0 when not running */
    int port;
    char base_url[128]; /* "http://127.0.0.1:PORT", no trailing slash */
};

/* $MOCK_BIN, or build/mock-model-server. */
const char *mock_bin(void);

/* Starts $MOCK_BIN --port 0 EXTRA... (extra_args NULL-terminated, or NULL for none) and waits
 * (10 s, 60 s when MOCK_WRAP is set) for its "listening on HOST:PORT" line. Its stderr is the
 * test's. Returns 0 and fills *m, or -1 (a message on stderr; nothing left running). */
int mock_start(struct mock_proc *m, const char *const extra_args[]);

/* Starts argv (argv[0] looked up in PATH) as mock_start starts the mock, for another server that
 * prints "listening on HOST:PORT" once bound, and waits 10 s for that line (60 s if patient). The
 * result is stopped with mock_stop. Returns 0 and fills *m, or -1. */
int listener_start(struct mock_proc *m, const char *const argv[], int patient);

/* For a server started some other way, which prints no "listening on" line (nginx, a script
 * given its port): waits until 127.0.0.1:port accepts a TCP connection, the process pid (0: not
 * watched) has exited, or tmo(10) seconds have passed. The one wait every such test uses: no
 * sleep that guesses, no loop of its own. 0 once a connection was accepted, else -1 (a message
 * on stderr). */
int wait_accepting(pid_t pid, int port);

/* SIGTERM, then SIGKILL after 5 s (30 s under MOCK_WRAP). Returns the exit status, 128 + the
 * signal when it died of one, or -1 when m was not running. Sets m->pid to 0. */
int mock_stop(struct mock_proc *m);

/* GET /stats, parsed; NULL on any failure. The caller frees it with cJSON_Delete. */
cJSON *mock_stats(const struct mock_proc *m);

/* Shorthand for an integer field of the stats: mock_stat(stats, "ok"),
 * mock_stat(stats, "requests.model_01"), mock_stat(stats, "faults.429"); -1 when missing. */
long mock_stat(const cJSON *stats, const char *dotted);

/* Runs argv (NULL-terminated; argv[0] looked up in PATH) with ANNOTATE_WRAP's words in front,
 * stdin from /dev/null, stdout and stderr both into out: its last outlen - 1 bytes, NUL
 * terminated (out may be NULL when outlen is 0). After timeout_s seconds the command's process
 * group is killed (SIGKILL) and out ends with a note saying so. Returns the exit status, or
 * 128 + the signal, or -1 when it could not be started. */
int run_cmd(const char *const argv[], int timeout_s, char *out, size_t outlen);

/* run_cmd, calling in_child(arg) in the child just before the exec (after its output is
 * redirected): to set a resource limit, drop privileges, change the environment. A message it
 * prints on stderr goes into out. */
int run_cmd_hook(const char *const argv[], int timeout_s, char *out, size_t outlen, void (*in_child)(void *),
                 void *arg);

struct http_opts {
    const char *method;       /* NULL: POST when there is a body, else GET */
    const char *content_type; /* NULL: application/json; "": no Content-Type header at all */
    long timeout_ms;          /* 0: 10 s */
};

/* One request with a fresh easy handle. body may be NULL (no body). *status gets the HTTP
 * status (0 when none came); *resp (may be NULL) a malloc'd NUL-terminated body, *headers (may
 * be NULL) the raw response headers, both freed by the caller, both set even on failure.
 * Returns 0 or the CURLcode of the failure (CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING...). */
int http_request(const char *url, const struct http_opts *o, const char *body, size_t len,
                 long *status, char **resp, char **headers);

/* http_request as POST with Content-Type: application/json. */
int http_post(const char *url, const char *body, size_t len, long *status, char **resp);

#endif
