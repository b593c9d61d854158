/* sweep: see sweep.h.
 *
 * A stage is swept alone in a run of its own pipeline: the stage and the stages it needs (its
 * "when", "result_of", "each" and template references, and theirs), the later ones left out, so
 * that a slower stage after it cannot hold it back; those it needs run on "auto". Everything
 * else of the user's file (bodies, headers, timeouts, max_rps, defaults) is kept as written: the
 * run's pipeline is the user's JSON with stages removed and "concurrency" set. The stage takes
 * the values of --concurrency in turn (default 1, 2, 4, ... 256) until a point does not raise its
 * best requests/s by more than SWEEP_GROWTH, or is rejected for load (images that failed on an
 * answer that says load, chain_load_shaped; or retries of the stage's attempts SWEEP_MAX_RETRY
 * or more over its first point's, beyond chance: retries_rose), or its request p99 is over
 * SWEEP_P99_CLIMB times the sweep's lowest while its requests/s grew by less than
 * SWEEP_P99_GROWTH. The knee is the smallest value of an accepted point within SWEEP_KNEE of the
 * best accepted one. A stage that needs another cannot be driven faster than that one delivers:
 * when its sweep stopped growing while its requests in flight (Little's law: its requests/s
 * times their mean time) averaged under SWEEP_BUSY of its limit, it was starved, not saturated,
 * and is said to be held back by the slowest (in images/s) of the stages it needs (its own
 * capacity was not reached). Its knee only just keeps up with that stage, and two knees in a row
 * lose twice, so what is recommended for it is the value it was starved at (no retries, no climb
 * of p99 there: its server had room). The bottleneck is the stage of the lowest images/s that is
 * not held back. Last, the whole pipeline is run at the recommended limits and on auto
 * (check_against_auto): a recommendation slower than --concurrency auto is not made; auto is. */
#include "bench/sweep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/point.h"
#include "bench/report.h"
#include "endpoint/limit.h"

#define SWEEP_GROWTH 0.05
#define SWEEP_MAX_RETRY 0.03 /* retries of the stage's attempts beyond its first point's that reject a point */
#define SWEEP_RETRY_Z 3.0    /* ... when chance does not explain the rise: more than this many standard errors */
#define SWEEP_P99_CLIMB 4.0
#define SWEEP_P99_GROWTH 0.5 /* ... while its requests/s grew by less than this (a lone slow answer is no climb) */
#define SWEEP_KNEE 0.95
#define SWEEP_BUSY 0.7 /* a stage whose requests in flight average less than this share of its limit is starved */
enum { SWEEP_STOP_NONE, SWEEP_STOP_GROWTH, SWEEP_STOP_P99, SWEEP_STOP_REJECTED };
#define SWEEP_AUTO_SPARE 64 /* --concurrency (curl-multi) or --workers beyond the swept stage's, for the auto ones */

struct sweep_stage {
    int index;        /* in the user's pipeline */
    int sub;          /* in the run's pipeline (the last stage of it) */
    uint64_t keep;    /* the stages its runs have */
    int first, n;     /* its points in the sweep's array */
    int knee;         /* index of the knee's point, -1: none */
    int rec;          /* index of the point whose value is recommended: the knee, or for a starved
                       * stage the value it was starved at (its knee only just keeps up) */
    int best;         /* index of the best accepted point, -1: none */
    double best_req_s;  /* its requests/s (0: none) */
    double low_p99;     /* the lowest request p99 of its accepted points (0: none) */
    double base_retry, base_attempts; /* its first accepted point's retry share, and its attempts:
                                       * the retries it has without load (base_attempts 0: none) */
    double bound_img_s; /* the most images/s of its accepted points */
    double busy;      /* its last point's requests in flight on average, as a share of its limit */
    int starved;      /* it stopped growing with its limit not kept busy */
    int held_back_by; /* starved: the slowest swept stage it needs; -1: none, -2: not known (annotate
                       * itself, or stages not swept) */
};

/* A sweep under way. */
struct sweep {
    const struct config *cfg;
    const struct bench_opts *b;
    const struct pipeline *p;
    const char *url;
    pid_t mock;
    const char *strategy;
    int blocking;       /* the strategy has workers, not curl-multi's requests in flight */
    const int *concs;
    int nc;
    cJSON *doc;         /* the user's pipeline file */
    struct sweep_stage ss[MAX_STAGE_COUNTS];
    int nss;
    struct point *pts;  /* every point of every stage, in the order run */
    int np;
    char pfile[512];    /* the runs' pipeline file */
    struct config run;  /* cfg with --config pfile */
    int rc;
    /* the check of the recommendation against --concurrency auto (check_against_auto) */
    struct point check[2]; /* CHECK_SWEPT: the recommended pipeline; CHECK_AUTO: on auto */
    int checked;           /* the two points were measured */
    int chose_auto;        /* auto was as fast or faster: it is what is recommended */
};
enum { CHECK_SWEPT, CHECK_AUTO };

/* ---- checks ---- */

/* The options of --sweep: a single strategy, and fixed limits. 0, or 2 with the reason said. */
static int check_options(const struct bench_opts *b, int *concs, int *nc)
{
    if (strchr(b->strategies, ',') && strcmp(b->strategies, "serial,threads,processes,curl-multi")) {
        fprintf(stderr, "annotate bench: --sweep measures one strategy; give one with --strategies (default curl-multi)\n");
        return 2;
    }
    if (!strcmp(b->strategies, "serial")) {
        fprintf(stderr, "annotate bench: --sweep varies a stage's concurrency; serial has none: give --strategies "
                        "curl-multi, threads or processes\n");
        return 2;
    }
    *nc = bench_concurrencies(b->concurrency ? b->concurrency : "1-256", concs, 64);
    if (*nc <= 0) {
        fprintf(stderr, "annotate bench: --concurrency %s: give a list (1,2,4,8) or a range (1-256)\n", b->concurrency);
        return 2;
    }
    for (int i = 0; i < *nc; i++)
        if (concs[i] == CONC_AUTO) {
            fprintf(stderr, "annotate bench: --sweep gives the swept stage fixed limits: leave auto out of --concurrency\n");
            return 2;
        }
    return 0;
}

/* A pipeline with stages to sweep, whose text reads back as the same stages. 0 or 2. */
static int check_pipeline(const struct pipeline *p)
{
    if (!p || p->n < 1 || p->n > MAX_STAGE_COUNTS) {
        fprintf(stderr, "annotate bench: --sweep: the pipeline has no stage to sweep\n");
        return 2;
    }
    cJSON *doc = cJSON_ParseWithLength(p->text, p->text_len);
    int ok = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "stages")) == p->n;
    cJSON_Delete(doc);
    if (!ok) {
        fprintf(stderr, "annotate bench: --sweep: %s does not read back as JSON with %d stages (a bug)\n", p->source, p->n);
        return 2;
    }
    return 0;
}

/* The stages --sweep-stages names (every stage without it), as a mask. 0 or 2. */
static int stages_named(const struct pipeline *p, const char *list, uint64_t *which)
{
    *which = 0;
    if (!list) {
        *which = p->n == 64 ? ~0ull : (1ull << p->n) - 1;
        return 0;
    }
    char *copy = strdup(list), *save = NULL;
    if (!copy) {
        fprintf(stderr, "annotate bench: out of memory\n");
        return 2;
    }
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < p->n; i++)
            if (!strcmp(p->stages[i].name, t))
                found = i;
        if (found < 0) {
            char names[1024] = "";
            for (int i = 0; i < p->n; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", p->stages[i].name);
            char buf[256];
            fprintf(stderr, "annotate bench: --sweep-stages: %s has no stage \"%s\" (its stages: %s)\n", p->source,
                    pipeline_printable(t, buf, sizeof buf), names);
            rc = 2;
        } else
            *which |= 1ull << found;
    }
    free(copy);
    if (!rc && !*which) {
        fprintf(stderr, "annotate bench: --sweep-stages: give stage names, e.g. --sweep-stages %s\n", p->stages[0].name);
        rc = 2;
    }
    return rc;
}

int sweep_check(const struct config *cfg, const struct bench_opts *b, int *concs, int *nc, uint64_t *which)
{
    if (!b->sweep) {
        if (b->sweep_stages) {
            fprintf(stderr, "annotate bench: --sweep-stages is for --sweep; add --sweep\n");
            return 2;
        }
        return 0;
    }
    int rc = check_options(b, concs, nc);
    if (!rc)
        rc = check_pipeline(cfg->pipeline);
    if (!rc)
        rc = stages_named(cfg->pipeline, b->sweep_stages, which);
    return rc;
}

/* ---- the runs' pipelines ---- */

/* The stages s needs, and theirs, with s: a mask of the user's pipeline. */
static uint64_t sweep_closure(const struct pipeline *p, int s)
{
    uint64_t keep = 1ull << s;
    for (int i = s; i >= 0; i--)
        if (keep >> i & 1)
            keep |= p->stages[i].dep_mask;
    return keep;
}

/* Sets o's "concurrency" to n (STAGE_CONCURRENCY_AUTO: "auto"), where it was or at the end. */
static void set_concurrency(cJSON *o, int n)
{
    cJSON *v = n == STAGE_CONCURRENCY_AUTO ? cJSON_CreateString("auto") : cJSON_CreateNumber(n);
    if (cJSON_GetObjectItemCaseSensitive(o, "concurrency"))
        cJSON_ReplaceItemInObjectCaseSensitive(o, "concurrency", v);
    else
        cJSON_AddItemToObject(o, "concurrency", v);
}

/* The run's pipeline of a point: the user's document with only the stages of keep, stage s at
 * conc and the others on auto. NULL when out of memory. */
static char *sweep_pipeline(const cJSON *doc, uint64_t keep, int s, int conc)
{
    cJSON *d = cJSON_Duplicate(doc, 1);
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(d, "stages");
    for (int i = cJSON_GetArraySize(stages) - 1; i >= 0; i--) {
        if (!(keep >> i & 1))
            cJSON_DeleteItemFromArray(stages, i);
        else
            set_concurrency(cJSON_GetArrayItem(stages, i), i == s ? conc : STAGE_CONCURRENCY_AUTO);
    }
    char *txt = d ? cJSON_Print(d) : NULL;
    cJSON_Delete(d);
    return txt;
}

/* ---- what it prints and writes ---- */

static double pt_retry(const struct point *pt, int sub)
{
    double a = pt->stage_attempts[sub], r = pt->stage_requests[sub];
    return a > 0 && a > r ? (a - r) / a : 0;
}

/* The stage's requests in flight on average (Little's law). */
static double pt_in_flight(const struct point *pt, int sub)
{
    return pt->stage_req_s[sub] * pt->stage_mean[sub] / 1e3;
}

static void sweep_print_stage_header(const struct pipeline *p, const struct sweep_stage *ss)
{
    char with[1024] = "", without[1024] = "";
    for (int i = 0; i < p->n; i++) {
        if (i == ss->index)
            continue;
        char *into = ss->keep >> i & 1 ? with : without;
        size_t l = strlen(into);
        snprintf(into + l, 1024 - l, "%s%s", l ? ", " : "", p->stages[i].name);
    }
    printf("\nstage %s (%s%s%s%s%s)\n", p->stages[ss->index].name, with[0] ? "with " : "alone", with, with[0] ? " on auto" : "",
           without[0] ? "; not run, as it does not need them: " : "", without);
    printf("  %6s %9s %9s %8s %9s %9s %6s\n", "conc", "req/s", "images/s", "retry %", "p99 ms", "in flight", "failed");
    fflush(stdout);
}

static void sweep_print_point(const struct point *pt, int sub)
{
    char note[600];
    if (pt->rejected[0])
        snprintf(note, sizeof note, "rejected: %s; stop", pt->rejected);
    else
        snprintf(note, sizeof note, "%s%s", pt->stop[0] ? "stop: " : "", pt->stop);
    if (pt->note[0] && !pt->rejected[0])
        snprintf(note + strlen(note), sizeof note - strlen(note), "%s%s", note[0] ? "; " : "", pt->note);
    printf("  %6d %9.1f %9.1f %7.1f%% %9.1f %9.1f %6.0f  %s%s%s\n", pt->sweep_conc, pt->stage_req_s[sub], pt->img_s,
           100 * pt_retry(pt, sub), pt->stage_p99[sub], pt_in_flight(pt, sub), pt->failed, note,
           pt->stable ? "" : note[0] ? " (" : "(", pt->stable ? "" : "unsettled)");
    fflush(stdout);
}

static cJSON *sweep_point_json(const struct point *pt, int sub)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "concurrency", pt->sweep_conc);
    cJSON_AddNumberToObject(o, "stage_requests_per_s", pt->stage_req_s[sub]);
    cJSON_AddNumberToObject(o, "images_per_s", pt->img_s);
    cJSON_AddNumberToObject(o, "stage_retry_share", pt_retry(pt, sub));
    cJSON_AddNumberToObject(o, "stage_request_p99_ms", pt->stage_p99[sub]);
    cJSON_AddNumberToObject(o, "stage_request_mean_ms", pt->stage_mean[sub]);
    cJSON_AddNumberToObject(o, "stage_in_flight", pt_in_flight(pt, sub));
    cJSON_AddNumberToObject(o, "images_ok", pt->ok);
    cJSON_AddNumberToObject(o, "images_failed", pt->failed);
    cJSON_AddNumberToObject(o, "images_failed_for_load", pt->failed_load);
    if (pt->note[0])
        cJSON_AddStringToObject(o, "failed_on_their_own", pt->note);
    cJSON_AddNumberToObject(o, "wall_s", pt->wall_s);
    cJSON_AddBoolToObject(o, "stable", pt->stable);
    if (!pt->stable)
        cJSON_AddStringToObject(o, "unsettled", pt->why);
    if (pt->rejected[0])
        cJSON_AddStringToObject(o, "rejected", pt->rejected);
    if (pt->stop[0])
        cJSON_AddStringToObject(o, "stop", pt->stop);
    if (pt->error[0])
        cJSON_AddStringToObject(o, "error", pt->error);
    if (pt->limits)
        cJSON_AddItemToObject(o, "limits", cJSON_Duplicate(pt->limits, 1));
    return o;
}

/* A swept stage in the report: its points and what was found. */
static cJSON *sweep_stage_json(const struct sweep *w, const struct sweep_stage *s)
{
    const struct pipeline *p = w->p;
    const struct point *pts = w->pts;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "stage", p->stages[s->index].name);
    cJSON *pa = cJSON_AddArrayToObject(o, "points");
    for (int i = 0; i < s->n; i++)
        cJSON_AddItemToArray(pa, sweep_point_json(&pts[s->first + i], s->sub));
    if (s->knee >= 0) {
        cJSON_AddNumberToObject(o, "knee", pts[s->knee].sweep_conc);
        cJSON_AddNumberToObject(o, "knee_requests_per_s", pts[s->knee].stage_req_s[s->sub]);
        cJSON_AddNumberToObject(o, "recommended", pts[s->rec].sweep_conc);
        cJSON_AddNumberToObject(o, "best_requests_per_s", pts[s->best].stage_req_s[s->sub]);
        cJSON_AddNumberToObject(o, "images_per_s", s->bound_img_s);
    } else
        cJSON_AddNullToObject(o, "knee");
    if (s->held_back_by >= 0)
        cJSON_AddStringToObject(o, "held_back_by", p->stages[s->held_back_by].name);
    else if (s->held_back_by == -2)
        cJSON_AddStringToObject(o, "held_back_by", s->keep == 1ull << s->index ? "annotate" : "stages not swept");
    cJSON_AddBoolToObject(o, "starved", s->starved);
    cJSON_AddNumberToObject(o, "busy_share", s->busy);
    if (s->base_attempts > 0) /* what its later points' retries were compared with */
        cJSON_AddNumberToObject(o, "retry_base_share", s->base_retry);
    return o;
}

/* The report of the sweep so far, its first nss stages (and, once complete, its outcome). */
static void sweep_report(const struct sweep *w, int nss, int complete, int bottleneck, long total)
{
    const struct bench_opts *b = w->b;
    if (!b->report)
        return;
    cJSON *rep = cJSON_CreateObject();
    cJSON *mode = report_mode(rep, w->cfg, b, w->url);
    cJSON_AddStringToObject(mode, "pipeline", w->p->source);
    cJSON_AddStringToObject(mode, "strategy", w->strategy);
    if (b->limit)
        cJSON_AddNumberToObject(mode, "limit", (double)b->limit);
    else
        cJSON_AddNumberToObject(mode, "duration_s", b->duration_s);
    cJSON_AddNumberToObject(mode, "window_s", b->window_s);
    cJSON_AddBoolToObject(rep, "complete", complete);
    cJSON *sw = cJSON_AddObjectToObject(rep, "sweep");
    char rule[400];
    snprintf(rule, sizeof rule,
             "a point is rejected only for load: images that failed for load (timeouts, 429, 503, other 5xx, resets), or "
             "a stage retry share %.0f points or more over its first point's (retry_base_share) and more than %.0f "
             "standard errors of the difference; images that failed on their own are counted, not held against it",
             100 * SWEEP_MAX_RETRY, SWEEP_RETRY_Z);
    cJSON_AddStringToObject(sw, "reject_rule", rule);
    cJSON *arr = cJSON_AddArrayToObject(sw, "stages");
    for (int k = 0; k < nss; k++)
        cJSON_AddItemToArray(arr, sweep_stage_json(w, &w->ss[k]));
    if (bottleneck >= 0)
        cJSON_AddStringToObject(sw, "bottleneck", w->p->stages[bottleneck].name);
    if (complete && w->checked) {
        cJSON *chk = cJSON_AddObjectToObject(sw, "check");
        cJSON_AddNumberToObject(chk, "recommended_images_per_s", w->check[CHECK_SWEPT].img_s);
        cJSON_AddNumberToObject(chk, "auto_images_per_s", w->check[CHECK_AUTO].img_s);
        cJSON_AddNumberToObject(chk, "recommended_images_failed_for_load", w->check[CHECK_SWEPT].failed_load);
        cJSON_AddStringToObject(chk, "chosen", w->chose_auto ? "auto" : "sweep");
    }
    if (complete) {
        cJSON_AddBoolToObject(sw, "auto", w->chose_auto);
        cJSON_AddNumberToObject(sw, "concurrency", (double)total);
        if (b->recommend)
            cJSON_AddStringToObject(sw, "recommended_pipeline", b->recommend);
    }
    char *txt = cJSON_Print(rep);
    cJSON_Delete(rep);
    if (!txt || report_write_file(b->report, txt))
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->report, strerror(errno));
    free(txt);
}

static const char *held_name(const struct pipeline *p, const struct sweep_stage *s)
{
    if (s->held_back_by >= 0)
        return p->stages[s->held_back_by].name;
    return s->keep == 1ull << s->index ? "annotate itself: it needs no other stage" : "the stages it needs, not swept";
}

/* ---- one stage ---- */

/* 1 when pt's retries rose with load: its share of the stage's attempts is SWEEP_MAX_RETRY or
 * more over the share at the stage's first accepted point (its lowest concurrency: the faults a
 * server has whatever its load, a share of hangs or garbled answers, are there too), by more than
 * SWEEP_RETRY_Z standard errors of the difference of two shares (so that a few retries among few
 * attempts are not read as a rise). The first accepted point is the base: never rejected for its
 * retries. */
static int retries_rose(const struct sweep_stage *s, const struct point *pt)
{
    double r = pt_retry(pt, s->sub), n = pt->stage_attempts[s->sub];
    if (s->base_attempts <= 0)
        return 0; /* the first point is the base */
    double r0 = s->base_retry, n0 = s->base_attempts;
    if (r - r0 < SWEEP_MAX_RETRY || n <= 0)
        return 0;
    double pooled = (r * n + r0 * n0) / (n + n0);
    double se = sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0));
    return r - r0 > SWEEP_RETRY_Z * se;
}

/* Why pt cannot be the stage's knee (pt->rejected), or why the stage's sweep stops after it
 * (pt->stop); an accepted point may raise the stage's best. */
static void judge_point(struct sweep_stage *s, struct point *pt, int idx, const struct point *pts)
{
    int sub = s->sub;
    double thr = sub < pt->n_stages ? pt->stage_req_s[sub] : 0, retry = pt_retry(pt, sub), best = s->best_req_s;
    char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4] = "";
    if (pt->ntop)
        errtally_label(&pt->top[0], label, sizeof label);
    if (pt->interrupted)
        snprintf(pt->rejected, sizeof pt->rejected, "stopped by a signal");
    else if (pt->failed_load > 0)
        snprintf(pt->rejected, sizeof pt->rejected, "%.0f images failed for load (%s)", pt->failed_load,
                 label[0] ? label : "?");
    else if (retries_rose(s, pt))
        snprintf(pt->rejected, sizeof pt->rejected,
                 "retries %.1f%% of the stage's attempts, %.1f points over the %.1f%% of its first point (%d)", 100 * retry,
                 100 * (retry - s->base_retry), 100 * s->base_retry, pts[s->first].sweep_conc);
    else if (thr <= 0)
        snprintf(pt->rejected, sizeof pt->rejected, "no request of the stage completed");
    if (pt->rejected[0]) {
        snprintf(pt->stop, sizeof pt->stop, "rejected");
        pt->stop_kind = SWEEP_STOP_REJECTED;
        return;
    }
    if (s->low_p99 > 0 && pt->stage_p99[sub] > SWEEP_P99_CLIMB * s->low_p99 && thr < best * (1 + SWEEP_P99_GROWTH)) {
        snprintf(pt->stop, sizeof pt->stop, "p99 %.0f ms is over %.0fx the lowest (%.0f ms), for %+.0f%% req/s",
                 pt->stage_p99[sub], SWEEP_P99_CLIMB, s->low_p99, 100 * (thr / best - 1));
        pt->stop_kind = SWEEP_STOP_P99;
    } else if (best > 0 && thr <= best * (1 + SWEEP_GROWTH)) {
        snprintf(pt->stop, sizeof pt->stop, "%+.1f%% on the best so far (%.1f req/s at %d)", 100 * (thr / best - 1),
                 best, pts[s->best].sweep_conc);
        pt->stop_kind = SWEEP_STOP_GROWTH;
    }
    if (thr > best) {
        s->best_req_s = thr;
        s->best = idx;
    }
    if (s->base_attempts <= 0) {
        s->base_retry = retry;
        s->base_attempts = pt->stage_attempts[sub];
    }
    if (pt->stage_p99[sub] > 0 && (s->low_p99 == 0 || pt->stage_p99[sub] < s->low_p99))
        s->low_p99 = pt->stage_p99[sub];
    if (pt->img_s > s->bound_img_s)
        s->bound_img_s = pt->img_s;
}

/* The stage at conc: its run's pipeline written, the run measured and judged. 1 when the
 * stage's sweep stops here. */
static int sweep_point(struct sweep *w, struct sweep_stage *s, int conc)
{
    struct point *pt = &w->pts[w->np++];
    s->n++;
    pt->strategy = w->strategy;
    pt->sweep_stage = s->index;
    pt->sweep_conc = conc;
    /* the run's total: the swept stage's limit and room for the auto ones */
    pt->conc = conc + (w->blocking ? SWEEP_AUTO_SPARE : LIMIT_AUTO_TOTAL);
    if (pt->conc > 100000)
        pt->conc = 100000;
    char *txt = sweep_pipeline(w->doc, s->keep, s->index, conc);
    if (!txt || report_write_file(w->pfile, txt)) {
        free(txt);
        fprintf(stderr, "annotate bench: cannot write the run's pipeline %s: %s\n", w->pfile, strerror(errno));
        w->rc = 2;
        return 1;
    }
    free(txt);
    if (run_point(&w->run, w->b, w->url, w->mock, pt)) {
        fprintf(stderr, "annotate bench: the run of %s at %d did not finish: %s\n", w->p->stages[s->index].name, conc,
                pt->error);
        snprintf(pt->rejected, sizeof pt->rejected, "the run did not finish");
        snprintf(pt->stop, sizeof pt->stop, "the run did not finish");
        if (pt->exit_status == 2)
            w->rc = 2; /* the set-up is wrong: every other point would say the same */
        else if (w->rc == 0)
            w->rc = 1;
        return 1;
    }
    judge_point(s, pt, w->np - 1, w->pts);
    sweep_print_point(pt, s->sub);
    sweep_report(w, (int)(s - w->ss) + 1, 0, -1, 0);
    return pt->stop[0] || pt->interrupted;
}

/* The stage's knee (the smallest accepted value within SWEEP_KNEE of the best), whether it was
 * starved, and the value recommended for it. */
static void stage_outcome(struct sweep *w, struct sweep_stage *s)
{
    const struct point *pts = w->pts;
    double best = s->best_req_s;
    for (int i = 0; i < s->n && s->best >= 0; i++) {
        const struct point *pt = &pts[s->first + i];
        if (!pt->rejected[0] && pt->stage_req_s[s->sub] >= SWEEP_KNEE * best) {
            s->knee = s->first + i;
            break;
        }
    }
    if (s->knee >= 0)
        printf("  knee: %d (%.1f req/s, %.0f%% of the best: %.1f req/s at %d; %.1f images/s)\n", pts[s->knee].sweep_conc,
               pts[s->knee].stage_req_s[s->sub], 100 * pts[s->knee].stage_req_s[s->sub] / best, best,
               pts[s->best].sweep_conc, s->bound_img_s);
    else
        printf("  no knee: no point was accepted (the stage stays on auto in the recommendation)\n");
    if (s->best >= 0 && s->best == s->first + s->n - 1 && !pts[s->best].stop[0] && s->n == w->nc)
        printf("  (still growing at %d, the last value of --concurrency: give larger ones)\n", pts[s->best].sweep_conc);
    if (s->n > 0) {
        const struct point *last = &pts[s->first + s->n - 1];
        s->busy = last->sweep_conc > 0 ? pt_in_flight(last, s->sub) / last->sweep_conc : 0;
        s->starved = s->knee >= 0 && last->stop_kind == SWEEP_STOP_GROWTH && s->busy < SWEEP_BUSY;
        s->rec = s->starved ? s->first + s->n - 1 : s->knee;
        if (s->starved)
            printf("  it stopped growing with %.1f requests in flight on average, %.0f%% of its limit of %d: it was "
                   "not given more work (starved), its server was not the limit; recommended: %d, as its knee only "
                   "just keeps up with what it is given\n",
                   pt_in_flight(last, s->sub), 100 * s->busy, last->sweep_conc, last->sweep_conc);
    }
    fflush(stdout);
}

/* ---- across the stages ---- */

/* Each starved stage is held back by the slowest of the stages it needs that were swept and not
 * starved themselves. The bottleneck: the swept stage of the lowest images/s that had a knee and
 * was not held back (its index in ss, or -1). */
static int find_bottleneck(struct sweep *w)
{
    struct sweep_stage *ss = w->ss;
    for (int k = 0; k < w->nss; k++) {
        struct sweep_stage *s = &ss[k];
        if (!s->starved)
            continue;
        double lowest = -1;
        s->held_back_by = -2;
        for (int j = 0; j < w->nss; j++) {
            const struct sweep_stage *d = &ss[j];
            if (d->index != s->index && (s->keep >> d->index & 1) && d->knee >= 0 && !d->starved &&
                (lowest < 0 || d->bound_img_s < lowest)) {
                lowest = d->bound_img_s;
                s->held_back_by = d->index;
            }
        }
    }
    int bottleneck = -1;
    for (int k = 0; k < w->nss; k++)
        if (ss[k].knee >= 0 && !ss[k].starved && (bottleneck < 0 || ss[k].bound_img_s < ss[bottleneck].bound_img_s))
            bottleneck = k;
    return bottleneck;
}

/* The recommended pipeline: each swept stage's recommended value set in recd (auto where it had
 * no knee), printed stage by stage. The run's total: the sum of the stages' limits, and
 * SWEEP_AUTO_SPARE for each without a fixed one (*unbounded of them). */
static long recommended_stages(const struct sweep *w, cJSON *recd, int *unbounded)
{
    const struct pipeline *p = w->p;
    cJSON *rstages = cJSON_GetObjectItemCaseSensitive(recd, "stages");
    long total = 0;
    *unbounded = 0;
    printf("\nrecommended:");
    for (int i = 0; i < p->n; i++) {
        int k = -1;
        for (int j = 0; j < w->nss; j++)
            if (w->ss[j].index == i)
                k = j;
        cJSON *so = cJSON_GetArrayItem(rstages, i);
        if (k >= 0)
            set_concurrency(so, w->ss[k].rec >= 0 ? w->pts[w->ss[k].rec].sweep_conc : STAGE_CONCURRENCY_AUTO);
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(so, "concurrency");
        if (!cv)
            cv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(recd, "defaults"), "concurrency");
        char v[32];
        if (cJSON_IsNumber(cv)) {
            total += (long)cv->valuedouble;
            snprintf(v, sizeof v, "%d", cv->valueint);
        } else {
            (*unbounded)++;
            snprintf(v, sizeof v, "%s", cJSON_IsString(cv) ? cv->valuestring : "no limit");
        }
        printf("%s %s %s%s", i ? "," : "", p->stages[i].name, v, k < 0 ? " (not swept)" : "");
        if (k >= 0 && w->ss[k].starved)
            printf(" (held back by %s)", held_name(p, &w->ss[k]));
    }
    printf("\n");
    return total + (long)*unbounded * SWEEP_AUTO_SPARE;
}

/* The bottleneck, the stages held back, and the run's total. */
static void print_findings(const struct sweep *w, int bottleneck, long total, int unbounded)
{
    const struct pipeline *p = w->p;
    if (bottleneck < 0)
        printf("bottleneck: none found (no swept stage had a knee without being held back)\n");
    if (bottleneck >= 0) {
        const struct sweep_stage *s = &w->ss[bottleneck];
        printf("bottleneck: %s, %.1f images/s at its best (%.1f req/s): the lowest of the stages not held back\n",
               p->stages[s->index].name, s->bound_img_s, w->pts[s->best].stage_req_s[s->sub]);
    }
    int held = 0;
    for (int k = 0; k < w->nss; k++)
        held += w->ss[k].starved;
    if (held) {
        printf("held back:");
        for (int k = 0, n = 0; k < w->nss; k++)
            if (w->ss[k].starved)
                printf("%s %s (by %s)", n++ ? "," : "", p->stages[w->ss[k].index].name, held_name(p, &w->ss[k]));
        printf(": %s could not be driven past what %s given, so %s own capacity was not reached; the value %s "
               "starved at is recommended (sweep %s again once what holds %s back is faster)\n",
               held > 1 ? "they" : "it", held > 1 ? "they were" : "it was", held > 1 ? "their" : "its",
               held > 1 ? "they were" : "it was", held > 1 ? "them" : "it", held > 1 ? "them" : "it");
    }
    printf("suggested %s %ld (the sum of the stages' limits%s)\n", w->blocking ? "--workers" : "--concurrency", total,
           unbounded ? ", and 64 for each stage without a fixed one" : "");
}

/* Writes the recommended pipeline to --recommend and says how to run it. 0, or 2. */
static int write_recommendation(const struct sweep *w, const cJSON *recd, long total)
{
    const struct bench_opts *b = w->b;
    char *txt = cJSON_Print(recd);
    int rc = 0;
    if (!txt || !b->recommend || report_write_file(b->recommend, txt)) {
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->recommend ? b->recommend : "(none)", strerror(errno));
        rc = 2;
    } else {
        char how[160], conc[24] = "auto";
        if (!w->chose_auto)
            snprintf(conc, sizeof conc, "%ld", total);
        if (w->blocking) /* --concurrency as the check ran it: a run's default is auto */
            snprintf(how, sizeof how, "--strategy %s --workers %ld --concurrency %s", w->strategy, total, conc);
        else
            snprintf(how, sizeof how, "--concurrency %s", conc);
        for (char *c = how; *c; c++)
            if (*c == '+')
                *c = ','; /* a per-stage strategy, as a run spells it */
        printf("recommended pipeline: %s (annotate %s%s%s --config %s %s)\n%s\n", b->recommend, w->cfg->dir,
               b->server_given ? " --server " : "", b->server_given ? w->url : "", b->recommend, how, txt);
    }
    free(txt);
    return rc;
}

/* One point of the check: the whole pipeline txt at conc (CONC_AUTO: --concurrency auto), the
 * workers of a blocking strategy, measured as the sweep's points are. 0, or -1 (said). */
static int check_point(struct sweep *w, struct point *pt, const char *txt, int conc, long workers, const char *what)
{
    struct bench_opts bo = *w->b;
    bo.auto_workers = (int)(workers < 1 ? 1 : workers > 4096 ? 4096 : workers);
    memset(pt, 0, sizeof *pt);
    pt->strategy = w->strategy;
    pt->conc = conc == CONC_AUTO ? CONC_AUTO : (int)(conc > 100000 ? 100000 : conc);
    pt->sweep_stage = -1;
    if (report_write_file(w->pfile, txt)) {
        fprintf(stderr, "annotate bench: cannot write the run's pipeline %s: %s\n", w->pfile, strerror(errno));
        return -1;
    }
    if (run_point(&w->run, &bo, w->url, w->mock, pt)) {
        fprintf(stderr, "annotate bench: the check's run of %s did not finish: %s\n", what, pt->error);
        return -1;
    }
    printf("  %-40s %9.1f images/s%s%s%s%s\n", what, pt->img_s, pt->failed_load > 0 ? " (failed for load: " : "",
           pt->failed_load > 0 ? pt->why : "", pt->failed_load > 0 ? ")" : "", pt->stable ? "" : " (unsettled)");
    fflush(stdout);
    return 0;
}

/* The swept stages of recd (the user's pipeline) on "auto". */
static void swept_on_auto(const struct sweep *w, cJSON *recd)
{
    cJSON *rstages = cJSON_GetObjectItemCaseSensitive(recd, "stages");
    for (int k = 0; k < w->nss; k++)
        set_concurrency(cJSON_GetArrayItem(rstages, w->ss[k].index), STAGE_CONCURRENCY_AUTO);
}

/* The recommendation must be at least as fast as --concurrency auto (a slow server, one worker
 * with seconds of latency, can make a sweep's knees lose to the adaptive limits): the whole
 * pipeline is run with the recommended limits, then with the swept stages on "auto" and
 * --concurrency auto. When auto made more images/s, or the recommendation failed images for
 * load, auto is what is recommended (recd's swept stages set to "auto"), and said so. */
static void check_against_auto(struct sweep *w, cJSON *recd, long total)
{
    char *swept = cJSON_Print(recd);
    cJSON *autod = cJSON_Duplicate(recd, 1);
    swept_on_auto(w, autod);
    char *autotxt = cJSON_Print(autod);
    cJSON_Delete(autod);
    printf("\ncheck: the whole pipeline, recommended limits against --concurrency auto\n");
    fflush(stdout);
    if (swept && autotxt && !bench_stop &&
        !check_point(w, &w->check[CHECK_SWEPT], swept, (int)total, total, "recommended limits") &&
        !bench_stop &&
        !check_point(w, &w->check[CHECK_AUTO], autotxt, CONC_AUTO, total, "swept stages on auto, --concurrency auto")) {
        const struct point *r = &w->check[CHECK_SWEPT], *a = &w->check[CHECK_AUTO];
        w->checked = 1;
        w->chose_auto = r->failed_load > 0 || (a->failed_load == 0 && a->img_s > r->img_s);
        if (w->chose_auto) {
            swept_on_auto(w, recd);
            printf("  --concurrency auto made %.1f images/s, the swept limits %.1f%s: recommended: auto (the swept "
                   "stages on \"auto\", run with --concurrency auto), not the sweep's limits\n",
                   a->img_s, r->img_s, r->failed_load > 0 ? " with images failed for load" : "");
        } else {
            printf("  the swept limits made %.1f images/s, --concurrency auto %.1f: the sweep's limits are recommended\n",
                   r->img_s, a->img_s);
        }
    }
    for (int i = 0; i < 2; i++) {
        cJSON_Delete(w->check[i].limits);
        w->check[i].limits = NULL;
    }
    unlink(w->pfile);
    free(swept);
    free(autotxt);
}

/* What the sweep found, once every stage was swept: printed, checked against auto, the pipeline
 * written, and the final report. */
static void conclude(struct sweep *w)
{
    int bottleneck = find_bottleneck(w), done = !bench_stop && w->rc != 2, unbounded = 0;
    long total = 0;
    cJSON *recd = cJSON_Duplicate(w->doc, 1);
    if (done) {
        total = recommended_stages(w, recd, &unbounded);
        print_findings(w, bottleneck, total, unbounded);
        check_against_auto(w, recd, total);
        done = !bench_stop;
    }
    if (done) {
        if (write_recommendation(w, recd, total))
            w->rc = 2;
        for (int k = 0; k < w->nss; k++)
            if (w->ss[k].knee < 0 && w->rc == 0)
                w->rc = 1;
    }
    sweep_report(w, w->nss, done, bottleneck >= 0 ? w->ss[bottleneck].index : -1, total);
    if (w->b->report)
        printf("report: %s%s\n", w->b->report, done ? "" : " (the points that finished)");
    cJSON_Delete(recd);
}

/* ---- the sweep ---- */

/* The stages to sweep (which), each with the stages its runs have. */
static void sweep_stages(struct sweep *w, uint64_t which)
{
    const struct pipeline *p = w->p;
    for (int i = 0; i < p->n; i++)
        if (which >> i & 1) {
            struct sweep_stage *s = &w->ss[w->nss++];
            memset(s, 0, sizeof *s);
            s->index = i;
            s->keep = sweep_closure(p, i);
            for (int j = 0; j < i; j++)
                s->sub += (int)(s->keep >> j & 1);
            s->knee = s->best = s->rec = s->held_back_by = -1;
        }
}

static void print_intro(const struct sweep *w)
{
    const struct bench_opts *b = w->b;
    char cdesc[64];
    if (b->concurrency)
        snprintf(cdesc, sizeof cdesc, "%s", b->concurrency);
    else
        snprintf(cdesc, sizeof cdesc, "1-256 doubling");
    printf("annotate bench --sweep: %s, %s at %s, pipeline %s, strategy %s\n", w->cfg->dir,
           b->server_given ? "server" : "mock", w->url, w->p->source, w->strategy);
    printf("each stage in turn at concurrency %s, until a point adds %.0f%% or less to its best requests/s, is rejected "
           "for load (images failed for load: timeouts, 429, 503, 5xx, resets; or retries %.0f points or more over "
           "the stage's first point) or its p99 is over %.0fx its lowest for less than %.0f%% more; the knee: the "
           "smallest within %.0f%% of the best. Images that failed on their own (a 400 for a corrupt file) are "
           "counted, and reject nothing\n",
           cdesc, 100 * SWEEP_GROWTH, 100 * SWEEP_MAX_RETRY, SWEEP_P99_CLIMB, 100 * SWEEP_P99_GROWTH,
           100 * (1 - SWEEP_KNEE));
}

int sweep_main(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock, const int *concs,
               int nc, uint64_t which)
{
    struct sweep *w = calloc(1, sizeof *w);
    if (!w) {
        fprintf(stderr, "annotate bench: out of memory\n");
        return 2;
    }
    *w = (struct sweep){.cfg = cfg, .b = b, .p = cfg->pipeline, .url = url, .mock = mock, .concs = concs, .nc = nc};
    w->strategy = strchr(b->strategies, ',') ? "curl-multi" : b->strategies;
    w->blocking = !strstr(w->strategy, "curl-multi");
    w->doc = cJSON_ParseWithLength(w->p->text, w->p->text_len);
    sweep_stages(w, which);
    w->pts = calloc((size_t)w->nss * (size_t)nc + 1, sizeof *w->pts);
    const char *tmpdir = getenv("TMPDIR");
    snprintf(w->pfile, sizeof w->pfile, "%s/annotate-sweep-%d.json", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    w->run = *cfg;
    w->run.config_file = w->pfile;
    print_intro(w);
    for (int k = 0; k < w->nss && !bench_stop && w->rc != 2 && w->pts; k++) {
        struct sweep_stage *s = &w->ss[k];
        s->first = w->np;
        sweep_print_stage_header(w->p, s);
        for (int c = 0; c < nc && !bench_stop && !sweep_point(w, s, concs[c]); c++)
            ;
        stage_outcome(w, s);
    }
    unlink(w->pfile);
    conclude(w);
    int rc = bench_stop && w->rc != 2 ? 130 : w->rc;
    cJSON_Delete(w->doc);
    for (int i = 0; i < w->np; i++)
        cJSON_Delete(w->pts[i].limits);
    free(w->pts);
    free(w);
    return rc;
}
