/* progress: see progress.h. */
#include "progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "item.h"
#include "limit.h"
#include "scan.h"
#include "select.h"

struct progress {
    const struct config *cfg;
    struct stats *st;
    int tty, colour;
    pthread_t tid, count_tid;
    atomic_int stop;
    atomic_uint_fast64_t total;
    atomic_int total_known;
    double t0;
    const struct shared_page *shared;
    const struct doneset *done;
    const atomic_int *run_stop; /* the run's stop flag: RUN_GOING until a signal */
};

/* Counts what the run will settle (taken, and skipped as done) with the run's own rule. */
static void *count_thread(void *arg)
{
    struct progress *p = arg;
    char err[256];
    scanner *s = scan_open(p->cfg->dir, &p->cfg->scan, err, sizeof err);
    if (!s)
        return NULL;
    struct selection sel;
    selection_init(&sel, p->cfg, p->done);
    struct scan_entry e;
    uint64_t n = 0;
    enum pick k = PICK_TAKE;
    while (!atomic_load(&p->stop) && k != PICK_STOP && scan_next(s, &e) == 1) {
        k = selection_pick(&sel, &e);
        if ((k == PICK_TAKE || k == PICK_DONE) && ++n % 1024 == 0)
            atomic_store(&p->total, n);
    }
    atomic_store(&p->total, n);
    if (!atomic_load(&p->stop))
        atomic_store(&p->total_known, 1);
    scan_close(s);
    return NULL;
}

void progress_fmt_duration(double s, char *buf, size_t len)
{
    if (s < 0 || s > 1e8) {
        snprintf(buf, len, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, len, "%lds", t);
}

static void draw(struct progress *p, double rate)
{
    struct stats *st = p->st;
    uint64_t ok = atomic_load(&st->ok), failed = atomic_load(&st->failed),
             skipped = atomic_load(&st->skipped);
    uint64_t done = ok + failed + skipped;
    uint64_t total = atomic_load(&p->total);
    int known = atomic_load(&p->total_known);
    char eta[32] = "?";
    if (known && rate > 0 && total >= done)
        progress_fmt_duration((double)(total - done) / rate, eta, sizeof eta);
    char totals[48];
    if (known)
        snprintf(totals, sizeof totals, "%llu/%llu", (unsigned long long)done, (unsigned long long)total);
    else
        snprintf(totals, sizeof totals, "%llu/%llu+", (unsigned long long)done, (unsigned long long)total);
    const char *red = p->colour && failed ? "\033[31m" : "", *reset = p->colour && failed ? "\033[0m" : "";
    char line[1024];
    long long in_flight = (long long)atomic_load(&p->shared->in_flight);
    int n;
    if (atomic_load(p->run_stop) != 0) /* RUN_DRAIN or RUN_ABORT */
        n = snprintf(line, sizeof line, "stopping: %lld in flight  %s images  %s%llu failed%s", in_flight, totals, red,
                     (unsigned long long)failed, reset);
    else
        n = snprintf(line, sizeof line, "%s images  %.0f img/s  %lld in flight  %s%llu failed%s  ETA %s", totals, rate,
                     in_flight, red, (unsigned long long)failed, reset, eta);
    /* Each limited stage: its requests in flight / its limit now ("limits model_01 4/6"). */
    const struct pipeline *pl = p->cfg->pipeline;
    for (int s = 0, first = 1; pl && s < pl->n && n > 0 && n < 600; s++) {
        const struct limit_stage *l = &p->shared->lim[s];
        if (l->mode == LIMIT_NONE)
            continue;
        n += snprintf(line + n, sizeof line - (size_t)n, "%s %s %d/%d", first ? "  limits" : "", pl->stages[s].name,
                      atomic_load(&l->in_flight), atomic_load(&l->limit));
        first = 0;
    }
    /* A stage whose server is down: say so, and that its images wait (chain.c's outage rule). */
    double worst = 0;
    int ws = -1;
    for (int s = 0; pl && s < pl->n && s < SHARED_MAX_STAGES; s++) {
        int64_t since = atomic_load(&p->shared->stage[s].down_since_ms);
        double down = since ? now_s() - (double)since / 1000 : 0;
        if (down > worst) {
            worst = down;
            ws = s;
        }
    }
    if (ws >= 0 && n > 0 && n < (int)sizeof line - 1)
        snprintf(line + n, sizeof line - (size_t)n, "  %s unreachable for %.0f s, retrying", pl->stages[ws].name, worst);
    if (p->tty)
        fprintf(stderr, "\r\033[K%s", line);
    else {
        char el[32];
        progress_fmt_duration(now_s() - p->t0, el, sizeof el);
        fprintf(stderr, "annotate: [%s] %s\n", el, line);
    }
    fflush(stderr);
}

static void *draw_thread(void *arg)
{
    struct progress *p = arg;
    double interval = p->tty ? 0.1 : p->cfg->progress_interval;
    double last = now_s(), next = last + interval;
    uint64_t last_done = 0;
    double rate = 0;
    while (!atomic_load(&p->stop)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double t = now_s();
        if (t < next)
            continue;
        uint64_t done = atomic_load(&p->st->ok) + atomic_load(&p->st->failed);
        double inst = (double)(done - last_done) / (t - last);
        /* Smoothed over about five seconds, so the ETA does not jump with every batch. */
        double a = (t - last) / 5.0;
        rate = rate == 0 ? inst : rate + (a > 1 ? 1 : a) * (inst - rate);
        last = t;
        last_done = done;
        next = t + interval;
        draw(p, rate);
    }
    return NULL;
}

struct progress *progress_new(const struct config *cfg, struct stats *st, const struct shared_page *shared,
                              const struct doneset *done, const atomic_int *stop)
{
    if (cfg->quiet)
        return NULL;
    struct progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL; /* no progress line is no reason to stop a run */
    p->cfg = cfg;
    p->st = st;
    p->shared = shared;
    p->done = done;
    p->run_stop = stop;
    p->t0 = now_s();
    p->tty = isatty(STDERR_FILENO);
    const char *nc = getenv("NO_COLOR");
    p->colour = p->tty && !(nc && *nc);
    pthread_create(&p->count_tid, NULL, count_thread, p);
    pthread_create(&p->tid, NULL, draw_thread, p);
    return p;
}

void progress_end(struct progress *p)
{
    if (!p || atomic_exchange(&p->stop, 1))
        return;
    pthread_join(p->tid, NULL);
    pthread_join(p->count_tid, NULL);
    if (p->tty) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    progress_end(p);
    free(p);
}
