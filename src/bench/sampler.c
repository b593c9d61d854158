/* sampler: the writing end of the sample channel (ipc.h), in a run that `annotate bench` started:
 * a thread that writes the run's counts and latencies once per interval, and once more when the
 * run has written every row. See bench.h. */
#include "bench/bench.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/point.h"
#include "common/stats.h"
#include "drivers/ipc.h"
#include "flow/item.h"

struct bench_sampler {
    struct stats *st;
    int fd;
    double interval, t0;
    pthread_t tid;
    atomic_int stop;
};

static void hist_ms(cJSON *o, const char *name, const struct hist *h, int all)
{
    cJSON *x = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(x, "p50", (double)hist_quantile(h, 0.50) / 1e3);
    if (all)
        cJSON_AddNumberToObject(x, "p90", (double)hist_quantile(h, 0.90) / 1e3);
    cJSON_AddNumberToObject(x, "p99", (double)hist_quantile(h, 0.99) / 1e3);
    if (all)
        cJSON_AddNumberToObject(x, "max", (double)atomic_load(&h->max_us) / 1e3);
}

/* One number per stage: "stage_requests", "stage_attempts", "stage_p99_ms", "stage_mean_ms". */
static void add_stages(cJSON *o, struct stats *st)
{
    cJSON *sr = cJSON_AddArrayToObject(o, "stage_requests");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sr, cJSON_CreateNumber((double)atomic_load(&st->stage_us[i].count)));
    cJSON *sa = cJSON_AddArrayToObject(o, "stage_attempts");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sa, cJSON_CreateNumber((double)atomic_load(&st->stage_attempts[i])));
    cJSON *sp = cJSON_AddArrayToObject(o, "stage_p99_ms");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(round((double)hist_quantile(&st->stage_us[i], 0.99) / 10) / 100));
    cJSON *sm = cJSON_AddArrayToObject(o, "stage_mean_ms");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++) {
        uint64_t n = atomic_load(&st->stage_us[i].count);
        cJSON_AddItemToArray(sm, cJSON_CreateNumber(n ? round((double)atomic_load(&st->stage_us[i].sum_us) / (double)n / 10) / 100
                                                      : 0)); /* ms, to 10 us: the line stays short */
    }
}

/* "errors": the TOP_ERRORS most common failures. */
static void add_errors(cJSON *o, struct stats *st)
{
    struct errtally_entry top[TOP_ERRORS];
    int n = errtally_top(st->errors, top, TOP_ERRORS, NULL, NULL);
    cJSON *errs = cJSON_AddArrayToObject(o, "errors");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "stage", top[i].stage);
        cJSON_AddStringToObject(e, "reason", top[i].reason);
        cJSON_AddNumberToObject(e, "count", (double)top[i].count);
        cJSON_AddItemToArray(errs, e);
    }
}

/* One line of the channel: {"t", "ok", "failed", "failed_load" (of failed: not final, item.h),
 * "requests", "retries", "attempts", "stage_requests",
 * "stage_attempts", "stage_p99_ms", "stage_mean_ms" (one number per stage), "request_ms": {p50, p90,
 * p99, max}, "image_ms": {p50, p99}, "errors": [{stage, reason, count}] (the TOP_ERRORS most
 * common), "final": true on the last}. One writer (this thread), read by lines. */
static void send_sample(struct bench_sampler *s, int final)
{
    struct stats *st = s->st;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t", now_s() - s->t0);
    cJSON_AddNumberToObject(o, "ok", (double)atomic_load(&st->ok));
    /* failed_final read first: the writer counts a row's failure before its being final */
    uint64_t for_good = atomic_load(&st->failed_final), failed = atomic_load(&st->failed);
    cJSON_AddNumberToObject(o, "failed", (double)failed);
    cJSON_AddNumberToObject(o, "failed_load", (double)(failed - for_good));
    cJSON_AddNumberToObject(o, "requests", (double)atomic_load(&st->requests));
    cJSON_AddNumberToObject(o, "retries", (double)atomic_load(&st->retries));
    cJSON_AddNumberToObject(o, "attempts", (double)atomic_load(&st->attempts));
    add_stages(o, st);
    hist_ms(o, "request_ms", &st->request_us, 1);
    hist_ms(o, "image_ms", &st->image_us, 0);
    add_errors(o, st);
    if (final)
        cJSON_AddTrueToObject(o, "final");
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt)
        return;
    size_t len = strlen(txt);
    txt[len] = '\n'; /* (replaces the NUL: written by length) */
    if (write(s->fd, txt, len + 1) < 0 && !final)
        atomic_store(&s->stop, 1); /* bench has gone */
    free(txt);
}

static void *sampler_main(void *arg)
{
    struct bench_sampler *s = arg;
    double next = s->t0 + s->interval;
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double t = now_s();
        if (t < next)
            continue;
        next += s->interval;
        send_sample(s, 0);
    }
    return NULL;
}

struct bench_sampler *bench_sampler_start(struct stats *st)
{
    const char *fd = getenv(IPC_BENCH_FD_ENV), *iv = getenv(IPC_BENCH_INTERVAL_ENV);
    if (!fd || !*fd)
        return NULL;
    struct bench_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->st = st;
    s->fd = atoi(fd);
    s->interval = iv ? atof(iv) : 1.0;
    if (s->interval < 0.05)
        s->interval = 0.05;
    s->t0 = now_s();
    if (pthread_create(&s->tid, NULL, sampler_main, s)) {
        free(s);
        return NULL;
    }
    return s;
}

void bench_sampler_stop(struct bench_sampler *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->tid, NULL);
    send_sample(s, 1); /* everything the run wrote */
    free(s);
}
