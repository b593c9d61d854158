/* runner: one annotate run. Opens the source (a folder, an S3 bucket, a --files-from list:
 * flow/source.h) and what reads remote images (sources/sources.h), wires scan → load → query →
 * write with bounded queues and the chosen executors, handles resume, sharding and signals, and
 * fills the summary. */
#ifndef ANNOTATE_RUNNER_H
#define ANNOTATE_RUNNER_H

#include <stdint.h>
#include "config.h"
#include "common/prepstat.h"
#include "common/stats.h"

struct run_summary {
    uint64_t found, ok, failed, skipped, requests, attempts, retries;
    uint64_t failed_final; /* of the failed rows, those a retry would fail the same way */
    uint64_t skipped_failed; /* of the skipped images, those whose row (from an earlier run) is failed */
    uint64_t left;           /* images found that have no row: left to --resume (a stopped run) */
    int scan_cut;            /* the scan stopped before the source's end: --resume finds the rest */
    uint64_t not_in_shard;
    double elapsed_s;
    int interrupted;
    uint64_t folders_failed; /* folders that could not be read: one failed row each */
    char folder_last[600];   /* the last of them, with why */
    const char *slowest_stage;
    uint64_t slowest_p99_us;
    struct replica_summary { /* the replicas of stages with several URLs */
        int stage, k;
        uint64_t attempts, errors, p99_us;
        int ejections;
    } replicas[64];
    int n_replicas;
    struct batch_summary { /* the stages with "batch": HTTP attempts, and the items they carried */
        int stage;
        uint64_t sends, items;
    } batches[64];
    int n_batches;
    struct total_summary { /* --concurrency auto, curl-multi: the loops' total (limit.h) */
        int end, peak;     /* requests in flight it allowed at the end, and at most (0: no total) */
        uint64_t ups, downs; /* tries up and down that were kept */
    } total;
    struct cache_summary { /* --cache (chain/memo.h) */
        int on;            /* a store was used */
        int off;           /* it turned itself off, at the start or during the run (told on stderr) */
        uint64_t hits[64], misses[64]; /* per stage: answered from the store, asked of the server */
    } cache;
    struct prep_summary {  /* a pipeline that prepares images: is preparing them the bottleneck */
        int on;
        uint64_t images, copies;
        double prep_ms, starved_ms;
        int threads, lanes;  /* loaders; query sides the starved time is summed over (prepstat.h) */
        enum prep_by { PREP_BY_THREADS, PREP_BY_PROCESSES, PREP_BY_WORKERS, PREP_BY_SERIAL, PREP_BY_ONE } by;
                             /* the loaders are the load stage's threads, its processes, the worker
                              * processes that load and query, the one thread of a serial run, or
                              * the load stage's one thread (load=serial, load=curl-multi) */
        struct prep_verdict v; /* the rule over the whole run */
    } prep;
};

/* Runs cfg. Returns the exit status: 0 this run failed no image, 1 it failed some (rows kept
 * from an earlier run, with --resume, do not count), 2 a usage or set-up error (err says what),
 * 130 stopped by a signal. stats (may be NULL) receives the run's counters. */
int runner_run(const struct config *cfg, struct run_summary *sum, struct stats **stats_out,
               char *err, size_t errlen);

/* Asks the running run to stop as a first SIGINT would (drain, then return 130). */
void runner_stop(void);

#endif
