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
 * usually one or two, and each compile (about 20 ms) is paid that many times, not per answer.
 *
 * Every jq run is bounded in CPU time: EXPR_CPU_BUDGET_MS of the calling thread's CPU time, plus
 * a millisecond per EXPR_CPU_BYTES_PER_MS bytes of its input (CPU time, not wall time, so a busy
 * machine does not trip it; not steps, which libjq 1.6 cannot count). A per-thread CPU-time
 * timer (timer_create on CLOCK_THREAD_CPUTIME_ID, its signal sent to this thread) is armed
 * around the evaluation; its handler calls jq_halt on the state being run, and libjq's main loop
 * stops at its next instruction. An expression that runs past it (a loop that never ends, an
 * endless generator) fails with EXPR_OVER_BUDGET, whatever the driver: the curl-multi event
 * loop and a worker thread get their time back. A bound and not an option: a stage's expression
 * picks values out of one answer, which takes microseconds on answers of kilobytes; the
 * heaviest walks take longer on large answers, in proportion to their size (on a 10 MB answer,
 * .result | map(select(.score > 100)) took 0.5 s of CPU, [.. | numbers] | add 1.5 s, against a
 * budget of 6 s there). So a runaway expression costs about a second per answer of the usual
 * size, and no real one comes near its budget. Should the thread's timer not be had (the
 * kernel's limit on timers), the run is unbounded and the run says so once on stderr.
 *
 * One limit of the design: libjq 1.6 asserts that a state is not halted twice, so an
 * expression that calls halt or halt_error itself at the very instant its budget runs out would
 * abort. Expressions are trusted code from the pipeline file (README), and a program that calls
 * halt has no use in a stage. */
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

#define EXPR_CPU_BUDGET_MS 1000
#define EXPR_CPU_BYTES_PER_MS 2000
#define EXPR_OVER_BUDGET (-2)

/* Runs e on one JSON text, which json_check has accepted. Returns the number of outputs handed to
 * out, or -1 with err: jq raised an error (its message), or out asked to stop (err as out left
 * it; out writes its own reason there); or EXPR_OVER_BUDGET with err naming the expression: it
 * ran past its CPU-time budget and was stopped (a fault of the pipeline, not of the answer: not
 * worth another attempt). */
int expr_run(const struct expr *e, const char *json, size_t len, expr_out out, void *arg, char *err,
             size_t errlen);

/* A JSON text's truth as jq has it: false and null are false, everything else is true. */
int expr_text_truthy(const char *text, size_t len);

#endif
