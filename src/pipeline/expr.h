/* expr: the expressions a stage reads its answers with ("result", "error", "retry_if",
 * "retry_after", "when", "items").
 *
 * A plain path (`.result`, `.choices[0].message.content`, `.`: see json.h) is walked on the
 * answer's text and yields the exact bytes of the value: no tree, no number through a double.
 * It yields nothing when it names nothing (jq would yield null for a missing key).
 * Anything else is a jq program, run by Debian's libjq 1.6, which turns every number into a
 * double (10000000000000001 comes out as 1e+16). Its outputs are jq's compact text.
 *
 * libjq's state is not to be shared between threads: each expression keeps a pool of compiled
 * states, and a state is used by one thread at a time (taken from the pool under its lock, given
 * back after the run). So a pool holds as many states as threads ever ran the expression at once,
 * usually one or two, and each compile (about 20 ms) is paid that many times, not per answer. */
#ifndef ANNOTATE_EXPR_H
#define ANNOTATE_EXPR_H

#include <stddef.h>
#include "common/json.h"

struct jq_pool;

struct expr {
    char *text;           /* as written; NULL: no expression */
    int plain;            /* a plain path, walked on the text */
    struct json_path path;
    struct jq_pool *pool; /* a jq program */
};

/* Compiles text (a plain path, or jq: one state is compiled now, to check it). Returns 0, or -1
 * with jq's own message (its first line) in err. */
int expr_compile(struct expr *e, const char *text, char *err, size_t errlen);
void expr_free(struct expr *e);

/* Called once per output with its JSON text (not NUL-terminated); nonzero stops the run. */
typedef int (*expr_out)(void *arg, const char *text, size_t len);

/* Runs e on one JSON text, which json_check has accepted. Returns the number of outputs handed to
 * out, or -1 with err: jq raised an error (its message), or out asked to stop (err as out left
 * it; out writes its own reason there). */
int expr_run(const struct expr *e, const char *json, size_t len, expr_out out, void *arg, char *err,
             size_t errlen);

/* A JSON text's truth as jq has it: false and null are false, everything else is true. */
int expr_text_truthy(const char *text, size_t len);

#endif
