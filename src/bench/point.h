/* point: one measured point of `annotate bench` (a strategy at a concurrency, or a stage of
 * --sweep at a limit), and what the files of src/bench/ share. See point.c. */
#ifndef ANNOTATE_BENCH_POINT_H
#define ANNOTATE_BENCH_POINT_H

#include <signal.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "common/errtally.h"

#define TOP_ERRORS 3        /* failure kinds a sample carries */
#define MAX_STAGE_COUNTS 64 /* SHARED_MAX_STAGES */
#define CONC_AUTO 0         /* a point's concurrency: --concurrency auto */

struct point {
    const char *strategy;
    int conc;                                  /* CONC_AUTO: --concurrency auto */
    double img_s, req_s;                       /* ok images per second; requests per second */
    double req_p50, req_p90, req_p99, req_max; /* ms */
    double img_p50, img_p99;
    double tool_cpu_s, mock_cpu_s, wall_s;
    long rss_kb;
    double ok, failed, requests, retries, attempts;
    double failed_load; /* of failed: on an answer that says load (chain_load_shaped); the others
                         * failed on their own (a corrupt file's 400) and say nothing about load */
    double bound;  /* with --capacity: images/s as a share of the bottleneck endpoint's bound; < 0: none */
    cJSON *limits; /* the run's "limits" (its stages' concurrency limits at the end), owned; may be NULL */
    struct errtally_entry top[TOP_ERRORS];
    int ntop;
    int windows, stable, ran_out, interrupted, killed, sampled;
    double spread; /* (max - min) / mean of the last three windows' requests/s */
    /* per stage of the run's pipeline: requests/s (as img_s: the last three windows), requests,
     * attempts and request p99 (ms) */
    double stage_req_s[MAX_STAGE_COUNTS], stage_requests[MAX_STAGE_COUNTS], stage_attempts[MAX_STAGE_COUNTS];
    double stage_p99[MAX_STAGE_COUNTS], stage_mean[MAX_STAGE_COUNTS];
    int n_stages;
    int sweep_stage, sweep_conc; /* --sweep: the stage swept (its index in the user's pipeline) and its limit */
    char rejected[200];          /* --sweep: why the point cannot be the knee ("" when it can) */
    char stop[200];              /* --sweep: why the stage's sweep stopped after this point */
    int stop_kind;               /* --sweep: SWEEP_STOP_* */
    char why[400];   /* why the point is not stable ("" when it is), what it did instead, what to try */
    char note[256];  /* the images that failed on their own, when some did ("" when none) */
    double suggest_duration_s; /* unsettled for want of time: the --duration that would do; 0: none */
    char error[600]; /* the run did not finish: what it said ("" when it did) */
    int exit_status;
};

/* Runs one point against url (mock: the mock server's pid, for its CPU; -1 with --server). 0
 * when it was measured (pt filled), -1 when the run did not finish (pt->error says what it said;
 * pt->exit_status is 2 when it found the set-up or the options wrong). */
int run_point(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock, struct point *pt);

/* Set by SIGINT or SIGTERM to bench (bench.c): stop the point being measured, write what was
 * measured. */
extern volatile sig_atomic_t bench_stop;

/* bench's --concurrency as numbers (CONC_AUTO for auto), at most max of them: how many, or -1. */
int bench_concurrencies(const char *s, int *out, int max);

/* The path of the running annotate binary. 0 or -1. */
int bench_self_exe(char *buf, size_t len);

/* o[a] (or o[a][b]) when it is a number, else 0. */
double bench_jnum(const cJSON *o, const char *a, const char *b);

#endif
