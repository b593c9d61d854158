/* expr: see expr.h. */
#include "pipeline/expr.h"
#include "common/secrets.h"

#include <jq.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct jq_pool {
    pthread_mutex_t mu;
    jq_state **free;
    int n, cap;
};

struct compile_msg {
    char *buf;
    size_t len;
};

/* jq reports compile errors through this callback (it owns msg): keep the first line. */
static void on_jq_error(void *data, jv msg)
{
    struct compile_msg *m = data;
    if (m->buf[0] == 0) {
        jv s = jv_get_kind(msg) == JV_KIND_STRING ? jv_copy(msg) : jq_format_error(jv_copy(msg));
        if (jv_get_kind(s) == JV_KIND_STRING) {
            const char *t = jv_string_value(s);
            size_t l = strcspn(t, "\n");
            if (!strncmp(t, "jq: error: ", 11) && l > 11) {
                t += 11;
                l -= 11;
            }
            while (l && (t[l - 1] == ':' || t[l - 1] == ' '))
                l--; /* "..., line 1:" introduces the program's text, which is not repeated */
            snprintf(m->buf, m->len, "%.*s", (int)l, t);
        }
        jv_free(s);
    }
    jv_free(msg);
}

static void quiet(void *data, jv msg)
{
    (void)data;
    jv_free(msg);
}

static jq_state *compile_state(const char *text, char *err, size_t errlen)
{
    jq_state *jq = jq_init();
    if (!jq) {
        snprintf(err, errlen, "out of memory for jq");
        return NULL;
    }
    char first[512] = "";
    struct compile_msg m = {first, sizeof first};
    jq_set_error_cb(jq, on_jq_error, &m);
    if (!jq_compile(jq, text)) {
        snprintf(err, errlen, "jq: %s", first[0] ? first : "the expression does not compile");
        jq_teardown(&jq);
        return NULL;
    }
    jq_set_error_cb(jq, quiet, NULL); /* run-time errors come back from jq_next, not here */
    return jq;
}

static void pool_give(struct jq_pool *p, jq_state *jq)
{
    pthread_mutex_lock(&p->mu);
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 4;
        jq_state **nf = realloc(p->free, (size_t)cap * sizeof *nf);
        if (!nf) {
            pthread_mutex_unlock(&p->mu);
            jq_teardown(&jq); /* compiled again when needed */
            return;
        }
        p->free = nf;
        p->cap = cap;
    }
    p->free[p->n++] = jq;
    pthread_mutex_unlock(&p->mu);
}

static jq_state *pool_take(struct jq_pool *p, const char *text, char *err, size_t errlen)
{
    jq_state *jq = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        jq = p->free[--p->n];
    pthread_mutex_unlock(&p->mu);
    return jq ? jq : compile_state(text, err, errlen);
}

int expr_compile(struct expr *e, const char *text, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    if (!(e->text = strdup(text))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char why[128];
    if (json_path_parse(text, &e->path, why, sizeof why) == 0) {
        e->plain = 1;
        return 0;
    }
    e->pool = calloc(1, sizeof *e->pool);
    if (!e->pool) {
        snprintf(err, errlen, "out of memory");
        expr_free(e);
        return -1;
    }
    pthread_mutex_init(&e->pool->mu, NULL);
    jq_state *jq = compile_state(text, err, errlen);
    if (!jq) {
        expr_free(e);
        return -1;
    }
    pool_give(e->pool, jq);
    return 0;
}

void expr_free(struct expr *e)
{
    if (!e)
        return;
    if (e->pool) {
        for (int i = 0; i < e->pool->n; i++)
            jq_teardown(&e->pool->free[i]);
        free(e->pool->free);
        pthread_mutex_destroy(&e->pool->mu);
        free(e->pool);
    }
    if (e->plain)
        json_path_free(&e->path);
    free(e->text);
    memset(e, 0, sizeof *e);
}

/* ---- the CPU-time budget of a jq run (see expr.h) ---- */

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* The signal of the budget timers: a real-time one nothing else in the program uses. */
#define BUDGET_SIGNAL (SIGRTMIN + 4)

/* This thread's budget timer, and the state it evaluates under it (NULL between runs). The
 * handler runs on this thread, between two of its instructions: it reads only these. */
static _Thread_local timer_t budget_timer;
static _Thread_local int budget_made;          /* 1: made; -1: cannot be made */
static _Thread_local _Atomic(jq_state *) budgeted;
static _Thread_local volatile sig_atomic_t budget_tripped;

static pthread_once_t budget_once = PTHREAD_ONCE_INIT;
static pthread_key_t budget_key;  /* deletes a thread's timer when the thread ends */
static int budget_ready;          /* the handler and the key are set up */
static atomic_int budget_warned;

/* The timer's signal: stop the jq program this thread is running, at its next instruction.
 * jq_halted and jq_halt only read and set fields of the state (jv_invalid allocates nothing). */
static void on_budget(int sig)
{
    (void)sig;
    jq_state *jq = atomic_load_explicit(&budgeted, memory_order_relaxed);
    if (jq && !jq_halted(jq)) {
        jq_halt(jq, jv_invalid(), jv_invalid());
        budget_tripped = 1;
    }
}

static void delete_timer(void *arg)
{
    timer_delete(*(timer_t *)arg);
}

static void budget_setup(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_budget;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    budget_ready = sigaction(BUDGET_SIGNAL, &sa, NULL) == 0 && pthread_key_create(&budget_key, delete_timer) == 0;
}

/* This thread's timer, made at its first jq run. 0, or -1 when there is none (said once). */
static int budget_timer_get(void)
{
    if (!budget_made) {
        pthread_once(&budget_once, budget_setup);
        struct sigevent sev = {0};
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = BUDGET_SIGNAL;
        sev.sigev_notify_thread_id = gettid();
        budget_made = budget_ready && timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &budget_timer) == 0 ? 1 : -1;
        if (budget_made > 0) {
            pthread_setspecific(budget_key, &budget_timer);
            sigset_t set; /* a thread that blocks signals still takes this one */
            sigemptyset(&set);
            sigaddset(&set, BUDGET_SIGNAL);
            pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        }
        else if (!atomic_exchange(&budget_warned, 1))
            fprintf(stderr, "annotate: no CPU-time timer for jq expressions (%s): they run unbounded\n",
                    strerror(errno));
    }
    return budget_made > 0 ? 0 : -1;
}

/* Arms this thread's budget of ms around jq's evaluation of jq (NULL: disarms it). */
static void budget_arm(jq_state *jq, long ms)
{
    if (budget_timer_get())
        return;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (jq) {
        budget_tripped = 0;
        atomic_store_explicit(&budgeted, jq, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = ms % 1000 * 1000000L;
    }
    timer_settime(budget_timer, 0, &its, NULL);
    if (!jq) {
        atomic_signal_fence(memory_order_seq_cst);
        atomic_store_explicit(&budgeted, NULL, memory_order_relaxed);
    }
}

/* "jq: " and text[0..len) into err, scrubbed of the run's secrets before the cut: jq's messages
 * quote the answer (error(.message), a value it cannot index). */
static void put_message(const char *text, size_t len, char *err, size_t errlen)
{
    int n = snprintf(err, errlen, "jq: ");
    if (n > 0 && (size_t)n < errlen)
        secrets_scrub_to(text, len, err + n, errlen - (size_t)n);
}

/* jq's message for an invalid value, into err (at most a line of it). */
static void jq_message(jq_state *jq, jv v, char *err, size_t errlen)
{
    jv msg = jv_invalid_get_msg(v);
    if (jq_halted(jq)) {
        jv_free(msg);
        jv m = jq_get_error_message(jq);
        const char *t = jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) : "";
        char said[64];
        snprintf(said, sizeof said, "the expression halted%s", t[0] ? ": " : "");
        size_t sl = strlen(said), tl = strlen(t);
        char *whole = malloc(sl + tl + 1);
        if (whole) {
            memcpy(whole, said, sl);
            memcpy(whole + sl, t, tl);
        }
        put_message(whole ? whole : said, whole ? sl + tl : sl, err, errlen);
        free(whole);
        jv_free(m);
        return;
    }
    if (jv_get_kind(msg) != JV_KIND_STRING)
        msg = jv_dump_string(msg, 0);
    const char *t = jv_string_value(msg);
    put_message(t, strcspn(t, "\n"), err, errlen);
    jv_free(msg);
}

static int run_jq(const struct expr *e, const char *json, size_t len, expr_out out, void *arg, char *err,
                  size_t errlen)
{
    if (len > INT_MAX) {
        snprintf(err, errlen, "jq: the answer is too large for jq (%zu bytes)", len);
        return -1;
    }
    jq_state *jq = pool_take(e->pool, e->text, err, errlen);
    if (!jq)
        return -1;
    jv in = jv_parse_sized(json, (int)len);
    int n = 0;
    if (!jv_is_valid(in)) {
        jq_message(jq, in, err, errlen);
        pool_give(e->pool, jq);
        return -1;
    }
    long budget_ms = EXPR_CPU_BUDGET_MS + (long)(len / EXPR_CPU_BYTES_PER_MS);
    jq_start(jq, in, 0); /* (which also clears a halt of the state's last run) */
    budget_arm(jq, budget_ms);
    for (;;) {
        jv v = jq_next(jq);
        if (!jv_is_valid(v)) {
            /* After an invalid, jq_next must not be called again (it asserts): the next run
             * starts with jq_start. */
            if (budget_tripped) {
                jv_free(v);
                n = EXPR_OVER_BUDGET;
            } else if (jv_invalid_has_msg(jv_copy(v)) || jq_halted(jq)) {
                jq_message(jq, v, err, errlen);
                n = -1;
            } else {
                jv_free(v);
            }
            break;
        }
        jv s = jv_dump_string(v, 0);
        int stop = out(arg, jv_string_value(s), (size_t)jv_string_length_bytes(jv_copy(s)));
        jv_free(s);
        if (stop) {
            n = -1;
            break;
        }
        n++;
    }
    budget_arm(NULL, 0);
    if (n == EXPR_OVER_BUDGET)
        snprintf(err, errlen, "jq: %.120s%s ran past its CPU-time budget (%ld ms) and was stopped", e->text,
                 strlen(e->text) > 120 ? "..." : "", budget_ms);
    pool_give(e->pool, jq);
    return n;
}

int expr_run(const struct expr *e, const char *json, size_t len, expr_out out, void *arg, char *err,
             size_t errlen)
{
    if (!e->plain)
        return run_jq(e, json, len, out, arg, err, errlen);
    const char *v;
    size_t vl;
    if (json_find(json, len, &e->path, &v, &vl))
        return 0;
    return out(arg, v, vl) ? -1 : 1;
}

int expr_text_truthy(const char *t, size_t n)
{
    while (n && (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r'))
        t++, n--;
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\n' || t[n - 1] == '\r'))
        n--;
    return !((n == 4 && !memcmp(t, "null", 4)) || (n == 5 && !memcmp(t, "false", 5)));
}
