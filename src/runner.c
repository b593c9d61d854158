/* runner: see runner.h.
 *
 * Threads of a run: the scanner (takes the source's entries: a folder's walk, a bucket's listing,
 * a list's lines; produces items), the load executor, the query executor (or one fused executor
 * when both are processes and the source is a folder, so a worker gets a path and reads the file
 * itself), the writer (this thread), and a signal thread. Every queue is bounded, so the number of items
 * alive at once is at most the sum of the queue sizes plus what the workers hold, whatever the
 * number of images. With every stage serial there are no queues and no threads at all: one loop
 * scans, loads, queries and writes an image before the next — the reference the others match. */
#include "runner.h"
#include "flow/budget.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "chain/memo.h"
#include "common/errtally.h"
#include "common/secrets.h"
#include "drivers/exec.h"
#include "fdlimit.h"
#include "endpoint/limit.h"
#include "flow/source.h"
#include "progress.h"
#include "results/results.h"
#include "run.h"
#include "endpoint/ratelimit.h"
#include "select.h"
#include "sources/sources.h"

struct runner {
    struct run run;
    atomic_int stop;        /* run.stop points here */
    const struct config *cfg;
    struct config cfg_fit; /* the run's copy of the settings (see fdlimit.h); cfg points at it */
    struct shared shared;
    struct sources *sources; /* S3 clients, image-URL headers (run.sources) */
    struct source *src;     /* the folder, the bucket or the list (source.h) */
    struct doneset *done;
    struct resume_info info;
    struct selection sel;
    queue *q_scan, *q_load, *q_out;
    atomic_uint_fast64_t found, skipped, not_in_shard;
    atomic_uint_fast64_t skipped_failed; /* skipped images whose row is failed */
    atomic_int finished;
    atomic_int scan_cut;    /* the scan was stopped before its end (a signal, an abort) */
    struct results *out;
    pthread_mutex_t out_mu; /* the writer and the signal thread's last-resort sync */
    struct progress *prog;
    struct bench_sampler *sampler;
    /* Folders the scan could not read (and list entries that name no image), each written as a
     * failed row by the scanning thread. */
    atomic_uint_fast64_t folders_failed;
    pthread_mutex_t folder_mu; /* the last one, for the summary */
    char folder_last[600];
    int limits_set;         /* limit_setup has run: limit_teardown */
    enum prep_by prep_by;   /* who prepares images (prep_shape) */
    struct prep_sample prep_t0; /* preparation's figures when the images started (t_us 0: never) */
};

/* An entry that is a failed row (source.h): a folder the scan could not read (path = the folder,
 * with its '/'), a list's entry that names no image. Written at once from the scanning thread (it
 * goes through no stage). Not in this shard, or already with a row (a resume): nothing. A row
 * that cannot be written stops the run. */
static void folder_row(struct runner *r, const struct scan_entry *e)
{
    if (!selection_in_shard(r->cfg, e->rel, e->rel_len))
        return;
    if (r->done && doneset_has(r->done, e->path, e->path_len))
        return;
    struct item *it = item_new(e->path, e->path_len, (size_t)(e->rel - e->path), r->run.p->n, 0);
    char err[512] = "";
    int rc = -1;
    if (it) {
        item_fail(it, "%s", e->error);
        if (it->error) {
            pthread_mutex_lock(&r->out_mu);
            rc = results_write(r->out, it, err, sizeof err);
            pthread_mutex_unlock(&r->out_mu);
        }
    }
    if (rc == 0) {
        atomic_fetch_add(&r->folders_failed, 1);
        pthread_mutex_lock(&r->folder_mu);
        snprintf(r->folder_last, sizeof r->folder_last, "%.*s (%s)", (int)(e->path_len > 300 ? 300 : e->path_len),
                 e->path, e->error);
        pthread_mutex_unlock(&r->folder_mu);
    } else {
        fprintf(stderr, "annotate: cannot write the row of the folder %.*s (%s): %s\n",
                (int)(e->path_len > 300 ? 300 : e->path_len), e->path, e->error, err[0] ? err : "out of memory");
        atomic_store(r->run.stop, RUN_ABORT);
    }
    item_free(it);
}

/* The next item the run should process, or NULL at the end (or when stopping). */
static struct item *next_item(struct runner *r, uint64_t *seq)
{
    struct source_entry se;
    const struct scan_entry *e = &se.e;
    for (;;) {
        if (atomic_load(r->run.stop) != RUN_GOING) {
            atomic_store(&r->scan_cut, 1);
            break;
        }
        int got = source_next(r->src, &se);
        if (got == 2) {
            folder_row(r, e);
            continue;
        }
        if (got != 1)
            break;
        enum pick k = selection_pick(&r->sel, e);
        if (k == PICK_STOP)
            break;
        if (k == PICK_SELF)
            continue;
        if (k == PICK_OTHER_SHARD) {
            atomic_fetch_add(&r->not_in_shard, 1);
            continue;
        }
        atomic_fetch_add(&r->found, 1);
        atomic_fetch_add(&r->run.stats->found, 1);
        if (k == PICK_DONE) {
            uint64_t v = 0;
            atomic_fetch_add(&r->skipped, 1);
            atomic_fetch_add(&r->run.stats->skipped, 1);
            if (doneset_get(r->done, e->path, e->path_len, &v) && v == RESUME_ROW_FAILED)
                atomic_fetch_add(&r->skipped_failed, 1);
            continue;
        }
        struct item *it = item_new(e->path, e->path_len, (size_t)(e->rel - e->path), r->run.p->n, (*seq)++);
        if (it) {
            it->kind = se.kind;
            it->size_known = se.size_known;
            it->size = se.size;
            return it;
        }
        /* Not this image's failure, and no row may be claimed for it: stop (exit 2); the rows
         * written are whole, and --resume runs the rest. */
        fprintf(stderr, "annotate: out of memory for the image %.*s: stopping\n",
                (int)(e->path_len > 300 ? 300 : e->path_len), e->path);
        atomic_store(r->run.stop, RUN_ABORT);
    }
    return NULL;
}

static void *scan_thread(void *arg)
{
    struct runner *r = arg;
    uint64_t seq = 0;
    struct item *it;
    while ((it = next_item(r, &seq)))
        if (queue_push(r->q_scan, it)) {
            item_free(it); /* found, and left to --resume: the run is stopping */
            atomic_store(&r->scan_cut, 1);
            break;
        }
    queue_producer_done(r->q_scan);
    return NULL;
}

/* Writes one settled item and forgets it. Returns 0, or -1 when the results file cannot be
 * written (the run must stop: a row that cannot be written must not be claimed done). */
static int write_item(struct runner *r, struct item *it, char *err, size_t errlen)
{
    struct stats *st = r->run.stats;
    if (it->no_row) {
        /* Failed because the set-up is wrong, not the image (chain_attempt_end): no row, so
         * that --resume runs it once the set-up is mended. */
        atomic_fetch_add(&st->unsent, 1);
        item_free(it);
        return 0;
    }
    pthread_mutex_lock(&r->out_mu);
    int rc = results_write(r->out, it, err, errlen);
    pthread_mutex_unlock(&r->out_mu);
    if (rc == 0) {
        /* Tallied here, where rows are written, so worker processes' rows count too; before the
         * count, so that a reader who sees a failure finds its reason. */
        if (it->status != ITEM_OK)
            errtally_add(st->errors, it->error);
        atomic_fetch_add(it->status == ITEM_OK ? &st->ok : &st->failed, 1);
        if (it->status != ITEM_OK && it->fail_final)
            atomic_fetch_add(&st->failed_final, 1);
        atomic_fetch_add(&st->requests, it->requests);
        atomic_fetch_add(&st->attempts, it->attempts);
        atomic_fetch_add(&st->retries, it->attempts > it->requests ? it->attempts - it->requests : 0);
        hist_add(&st->image_us, (uint64_t)((now_s() - it->t_start) * 1e6));
        for (int i = 0; i < it->n_log; i++) {
            hist_add(&st->request_us, it->log[i].us);
            if (it->log[i].stage < st->n_stages) {
                hist_add(&st->stage_us[it->log[i].stage], it->log[i].us);
                atomic_fetch_add(&st->stage_attempts[it->log[i].stage], it->log[i].attempts);
            }
        }
    }
    item_free(it);
    return rc;
}

/* Lock-free, so the handler may touch it; atomic so two signals on two threads both count. */
static atomic_int signals_seen;

void runner_stop(void)
{
    atomic_fetch_add(&signals_seen, 1); /* the same as a first Ctrl-C: stop scanning, drain, exit 130 */
}

static void on_signal(int sig)
{
    (void)sig;
    if (atomic_fetch_add(&signals_seen, 1) + 1 >= 2)
        _exit(130); /* rows are whole write()s: the file is resumable as it is */
}

/* Watches for the drain deadline after the first signal. */
static void *signal_thread(void *arg)
{
    struct runner *r = arg;
    double deadline = 0;
    while (!atomic_load(&r->finished)) {
        if (atomic_load(&r->run.shared->fatal)) /* a worker process found the set-up wrong */
            atomic_store(r->run.stop, RUN_ABORT);
        if (atomic_load(&signals_seen) && deadline == 0) {
            /* Whatever state the run is in (even already aborting), a signal starts the clock. */
            int going = RUN_GOING;
            atomic_compare_exchange_strong(r->run.stop, &going, RUN_DRAIN);
            deadline = now_s() + (double)r->cfg->drain_timeout_ms / 1e3;
            if (!r->cfg->quiet)
                fprintf(stderr, "\nannotate: stopping: finishing the images already sent (up to %.1f s; "
                                "press Ctrl-C again to stop at once); the rest is left to --resume\n",
                        (double)r->cfg->drain_timeout_ms / 1e3);
        }
        if (deadline && now_s() > deadline) {
            /* The writer may be stuck in write() holding the lock (a stalled pipe, NFS): sync only
             * if we can; rows are whole writes, so the file is resumable either way. */
            if (pthread_mutex_trylock(&r->out_mu) == 0)
                results_sync(r->out);
            fprintf(stderr, "annotate: images in flight did not finish within --drain-timeout-ms; "
                            "stopped. Run again with --resume to finish.\n");
            _exit(130);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Who prepares images and who waits for them (prepstat.h): threads loaders; the starved time
 * summed over lanes query sides (1: the queue between load and query; each worker that loads
 * its own images is one). */
static void prep_shape(struct runner *r, enum prep_by by, int threads, int lanes)
{
    r->prep_by = by;
    atomic_store(&r->run.shared->prep.threads, threads);
    atomic_store(&r->run.shared->prep.lanes, lanes);
}

/* Every stage serial: no queues and no threads; one image at a time from scan to row. */
static int run_serial(struct runner *r, char *err, size_t errlen)
{
    prep_shape(r, PREP_BY_SERIAL, 1, 1);
    struct job_worker *w = job_worker_new(&r->run, JOB_LOAD | JOB_QUERY);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return 2;
    }
    uint64_t seq = 0;
    struct item *it;
    int rc = 0;
    while (rc == 0 && (it = next_item(r, &seq))) {
        job_worker_run(w, it);
        if (write_item(r, it, err, errlen))
            rc = 2;
    }
    job_worker_free(w);
    return rc;
}

/* Unblocks everyone still pushing or popping: the run is being torn down. */
static void close_queues(struct runner *r)
{
    atomic_store(r->run.stop, RUN_ABORT);
    queue_close(r->q_scan);
    if (r->q_load)
        queue_close(r->q_load);
    queue_close(r->q_out);
}

static void drain_free(queue *q)
{
    void *x;
    while (q && queue_try_pop(q, &x) == 1)
        item_free(x);
}

/* scan → load → query → write over bounded queues, with the strategies' executors. Images of a
 * bucket or a list are loaded in this process (threads where processes are asked for): its S3
 * credentials and image-URL headers go to no worker process. */
static int run_queued(struct runner *r, char *err, size_t errlen)
{
    const struct config *cfg = r->cfg;
    size_t qs = cfg->queue_size;
    r->q_scan = queue_new(qs, 1);
    r->q_out = queue_new(qs, 1);
    int folder = !cfg->files_from && strncmp(cfg->dir, "s3://", 5);
    enum strategy load = !folder && cfg->load == STRAT_PROCESSES ? STRAT_THREADS : cfg->load;
    int fused = load == STRAT_PROCESSES && cfg->query == STRAT_PROCESSES;
    if (!fused)
        r->q_load = queue_new(qs, 1);
    if (!r->q_scan || !r->q_out || (!fused && !r->q_load)) {
        queue_free(r->q_scan);
        queue_free(r->q_out);
        queue_free(r->q_load);
        snprintf(err, errlen, "out of memory");
        return 2;
    }
    struct exec *e_load = NULL, *e_query = NULL;
    pthread_t scan_tid;
    int rc = 0, scanning = pthread_create(&scan_tid, NULL, scan_thread, r) == 0;
    if (!scanning) {
        snprintf(err, errlen, "cannot start the scanner thread");
        rc = 2;
        queue_producer_done(r->q_scan);
    }
    if (fused)
        prep_shape(r, PREP_BY_WORKERS, cfg->workers, cfg->workers);
    else if (load == STRAT_SERIAL || load == STRAT_CURL_MULTI)
        prep_shape(r, PREP_BY_ONE, 1, 1);
    else
        prep_shape(r, load == STRAT_PROCESSES ? PREP_BY_PROCESSES : PREP_BY_THREADS, config_load_workers(cfg), 1);
    if (r->q_load)
        queue_watch_starved(r->q_load, &r->run.shared->prep);
    if (fused) {
        /* One worker process does both: it is sent a path, never the image. */
        e_query = exec_start(STRAT_PROCESSES, &r->run, JOB_LOAD | JOB_QUERY, cfg->workers, r->q_scan, r->q_out,
                             err, errlen);
    } else {
        e_load = exec_start(load, &r->run, JOB_LOAD, config_load_workers(cfg), r->q_scan, r->q_load, err, errlen);
        if (e_load)
            e_query = exec_start(cfg->query, &r->run, JOB_QUERY, cfg->workers, r->q_load, r->q_out, err, errlen);
    }
    if (!e_query || rc) {
        rc = 2; /* could not start: stop the scanner, let what started drain into the void */
        close_queues(r);
    }
    struct item *it;
    while (rc == 0 && (it = queue_pop(r->q_out)))
        if (write_item(r, it, err, errlen)) {
            rc = 2;
            close_queues(r);
        }
    if (atomic_load(r->run.stop) == RUN_ABORT)
        close_queues(r); /* a stage gave up: unblock everyone */
    if (scanning)
        pthread_join(scan_tid, NULL);
    drain_free(r->q_scan);
    exec_join(e_load);
    drain_free(r->q_load);
    exec_join(e_query);
    drain_free(r->q_out);
    queue_free(r->q_scan);
    queue_free(r->q_load);
    queue_free(r->q_out);
    return rc;
}

/* resume's can_redo (results.h): will the source give this path again. */
static int source_finds(void *ud, const char *path, size_t len)
{
    struct source *s = ud;
    return s->finds(s, path, len);
}

/* What reads images that are not local files (S3 clients, image-URL headers), then the source:
 * for a bucket, its first listing page, so that S3 refusing the set-up exits 2 here, before any
 * model request. A list is read through first when it is a file: an s3:// entry then needs S3's
 * configuration now. */
static int open_source(struct runner *r, char *err, size_t errlen)
{
    const struct config *cfg = r->cfg;
    int need_s3 = cfg->dir && !strncmp(cfg->dir, "s3://", 5);
    if (cfg->files_from && (need_s3 = source_list_check(cfg, err, errlen)) < 0)
        return -1;
    if ((cfg->files_from || need_s3) && !(r->run.sources = r->sources = sources_new(cfg, need_s3, err, errlen)))
        return -1;
    if (need_s3 && !cfg->quiet) {
        char how[700];
        s3_config_describe(r->sources->s3cfg, how, sizeof how);
        fprintf(stderr, "annotate: S3: %s\n", how);
    }
    if (!(r->src = source_open(cfg, r->sources, 0, err, errlen)))
        return -1;
    r->src->stop = r->run.stop;
    return 0;
}

/* Everything before the first image: limits, the source, the results file (locked, resumed). */
static int setup(struct runner *r, char *err, size_t errlen)
{
    const struct config *cfg = r->cfg;
    if (shared_create(&r->shared)) {
        snprintf(err, errlen, "cannot set up the run's shared counters: %s", strerror(errno));
        return -1;
    }
    r->run.shared = r->shared.page;
    r->run.shared_fd = r->shared.fd;
    budget_use(&r->shared.page->budget, 0);
    budget_set(cfg->max_memory, chain_answer_room(&r->run));
    if (limit_setup(r->run.shared, cfg, now_s(), err, errlen))
        return -1;
    r->limits_set = 1;
    if (ratelimit_wanted(cfg->max_rps, cfg->pipeline) && !(r->run.rl = ratelimit_new_stages(cfg->max_rps, cfg->pipeline))) {
        snprintf(err, errlen, "cannot set up the rate limiter: %s", strerror(errno));
        return -1;
    }
    /* The answer store: a file that cannot be one is a set-up error, before anything is sent; one
     * that cannot be written is told, and the run goes on without it. */
    if (!(r->run.memo = memo_open(&r->run, 0, err, errlen)) && err[0])
        return -1;
    if (open_source(r, err, errlen))
        return -1;
    struct results_opts ro = {.path = cfg->out, .format = cfg->format, .under = r->src->rows_under,
                              .resume = cfg->resume, .retry_failed = cfg->retry_failed, .force = cfg->force,
                              .sync_every = cfg->sync_every, .can_redo = source_finds, .can_redo_ud = r->src};
    if (!(r->out = results_open(&ro, cfg->pipeline, &r->done, &r->info, err, errlen)))
        return -1;
    const struct resume_info *info = &r->info;
    if (cfg->resume && !cfg->quiet && info->rows) {
        char redo[48] = "";
        if (info->dropped_failed)
            snprintf(redo, sizeof redo, ", %llu to be retried", (unsigned long long)info->dropped_failed);
        fprintf(stderr, "annotate: resuming %s: %llu rows already there (%llu ok, %llu failed%s)%s\n", cfg->out,
                (unsigned long long)info->rows, (unsigned long long)info->ok, (unsigned long long)info->failed, redo,
                info->torn_bytes ? "; repaired a torn last row" : "");
    }
    if (cfg->resume && !cfg->quiet && info->kept_missing)
        fprintf(stderr, "annotate: kept %llu failed row%s as %s: %s no longer in %s (deleted, or not selected)\n",
                (unsigned long long)info->kept_missing, info->kept_missing == 1 ? "" : "s",
                info->kept_missing == 1 ? "it was" : "they were", info->kept_missing == 1 ? "its image is" : "their images are",
                r->src->name);
    selection_init(&r->sel, cfg, r->done);
    return 0;
}

/* Preparation over the whole run (prepstat.h), read before the shared page goes. */
static void fill_prep(const struct runner *r, struct run_summary *sum)
{
    struct prep_summary *ps = &sum->prep;
    const struct prepstat *st = &r->run.shared->prep;
    struct prep_sample end;
    prepstat_sample(st, &end);
    ps->on = 1;
    ps->images = end.images;
    ps->copies = atomic_load(&st->copies);
    ps->prep_ms = (double)end.prep_us / 1e3;
    ps->starved_ms = (double)end.starved_us / 1e3;
    ps->threads = atomic_load(&st->threads);
    ps->lanes = atomic_load(&st->lanes);
    ps->by = r->prep_by;
    prepstat_judge(st, &r->prep_t0, &end, &ps->v); /* from the first image: not the set-up (a resume's reading) */
}

static void fill_summary(const struct runner *r, int rc, double t0, struct run_summary *sum)
{
    struct stats *st = r->run.stats;
    sum->elapsed_s = now_s() - t0;
    sum->found = atomic_load(&r->found);
    sum->skipped = atomic_load(&r->skipped);
    sum->skipped_failed = atomic_load(&r->skipped_failed);
    sum->scan_cut = atomic_load(&r->scan_cut);
    sum->not_in_shard = atomic_load(&r->not_in_shard);
    sum->ok = atomic_load(&st->ok);
    sum->failed = atomic_load(&st->failed);
    sum->failed_final = atomic_load(&st->failed_final);
    sum->requests = atomic_load(&st->requests);
    sum->attempts = atomic_load(&st->attempts);
    sum->retries = atomic_load(&st->retries);
    sum->interrupted = rc == 130;
    /* Each image found is skipped, written, or left without a row (not started, or failed by a
     * set-up error) for --resume. */
    uint64_t settled = sum->skipped + sum->ok + sum->failed;
    sum->left = sum->found > settled ? sum->found - settled : 0;
    const struct pipeline *p = r->cfg->pipeline;
    for (int s = 0; s < p->n; s++)
        for (int k = 0; p->stages[s].n_urls > 1 && k < p->stages[s].n_urls && sum->n_replicas < 64; k++) {
            const struct shared_replica *x = &r->run.shared->replica[p->stages[s].replica_base + k];
            sum->replicas[sum->n_replicas++] = (struct replica_summary){
                s, k, atomic_load(&x->attempts), atomic_load(&x->errors), hist_quantile(&x->latency_us, 0.99),
                atomic_load(&x->ejected_total)};
        }
    for (int s = 0; s < r->cfg->pipeline->n && sum->n_batches < 64; s++)
        if (r->cfg->pipeline->stages[s].batch_size > 0)
            sum->batches[sum->n_batches++] = (struct batch_summary){
                s, atomic_load(&r->run.shared->stage[s].batch_sends), atomic_load(&r->run.shared->stage[s].batch_items)};
    if (r->run.shared && (sum->total.peak = atomic_load(&r->run.shared->total_peak)) > 0) {
        sum->total.end = atomic_load(&r->run.shared->total_now);
        sum->total.ups = atomic_load(&r->run.shared->total_ups);
        sum->total.downs = atomic_load(&r->run.shared->total_downs);
    }
    sum->cache.on = r->cfg->cache != NULL && r->run.shared && rc != 2;
    sum->cache.off = sum->cache.on && atomic_load(&r->run.shared->memo.told);
    for (int s = 0; sum->cache.on && s < r->cfg->pipeline->n && s < 64; s++) {
        sum->cache.hits[s] = atomic_load(&r->run.shared->stage[s].memo_hits);
        sum->cache.misses[s] = atomic_load(&r->run.shared->stage[s].memo_misses);
    }
    if (r->prep_t0.t_us && pipeline_prepares(r->cfg->pipeline))
        fill_prep(r, sum);
    sum->folders_failed = atomic_load(&r->folders_failed);
    snprintf(sum->folder_last, sizeof sum->folder_last, "%s", r->folder_last);
    /* The stages' limits as they ended, with their history, before the shared page goes. */
    int any = 0;
    for (int s = 0; r->limits_set && s < r->cfg->pipeline->n; s++)
        any |= r->run.shared->lim[s].mode != LIMIT_NONE;
    if (any && !st->limits && (st->limits = calloc((size_t)st->n_stages, sizeof *st->limits)))
        for (int s = 0; s < st->n_stages; s++)
            limit_read(r->run.shared, s, &st->limits[s]);
    for (int s = 0; s < r->cfg->pipeline->n; s++) {
        uint64_t p99 = hist_quantile(&st->stage_us[s], 0.99);
        if (p99 > sum->slowest_p99_us) {
            sum->slowest_p99_us = p99;
            sum->slowest_stage = r->cfg->pipeline->stages[s].name;
        }
    }
}

/* A runner for cfg: the run's own copy of the settings, fitted to the open-file limit (every
 * stage, worker processes too, which are sent it, and the progress line see the same), and its
 * stats. NULL with err when it cannot be made. */
static struct runner *runner_new(const struct config *cfg, char *err, size_t errlen)
{
    struct runner *r = calloc(1, sizeof *r);
    struct stats *st = r ? stats_new(cfg->pipeline->n) : NULL;
    if (!st) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg_fit = *cfg;
    char note[512];
    if (fdlimit_fit(&r->cfg_fit, note, sizeof note, err, errlen)) {
        stats_free(st);
        free(r);
        return NULL;
    }
    if (note[0] && !r->cfg_fit.quiet)
        fprintf(stderr, "annotate: %s\n", note);
    r->cfg = &r->cfg_fit;
    r->run.cfg = r->cfg;
    r->run.stop = &r->stop;
    r->run.p = r->cfg->pipeline;
    r->run.stats = st;
    r->shared.fd = -1;
    pthread_mutex_init(&r->out_mu, NULL);
    pthread_mutex_init(&r->folder_mu, NULL);
    return r;
}

/* SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session) stop the run as a first Ctrl-C
 * does; a second one ends the process (on_signal). */
static void catch_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    signals_seen = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void release_signals(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
}

/* The folders the scan could not read and could not give a row either (see folder_row). */
static void warn_unread_folders(const struct runner *r)
{
    const char *last;
    uint64_t n = r->src->warnings(r->src, &last);
    if (n > atomic_load(&r->folders_failed) && !r->cfg->quiet)
        fprintf(stderr, "annotate: %llu director%s could not be read (last: %s)\n", (unsigned long long)n,
                n == 1 ? "y" : "ies", last);
}

/* The exit status of a run whose stages returned rc (runner.h), and err when it is 2. */
static int exit_status(const struct runner *r, int rc, char *err, size_t errlen)
{
    const struct stats *st = r->run.stats;
    if (rc)
        return rc;
    if (atomic_load(&r->run.shared->fatal)) {
        snprintf(err, errlen, "%s", r->run.shared->fatal_msg);
        secrets_scrub(err, errlen); /* made where the answer was read; this process may know more */
        return 2;
    }
    char why[700];
    if (r->src->incomplete(r->src, why, sizeof why)) {
        snprintf(err, errlen, "%s; the rows written are valid: run again with --resume", why);
        return 2;
    }
    if (atomic_load(r->run.stop) == RUN_ABORT) {
        snprintf(err, errlen, "the run stopped early on an internal error (see above); the rows written are "
                              "valid: run again with --resume");
        return 2;
    }
    /* A signal that came when every image had been taken and settled stopped nothing. */
    if (atomic_load(&signals_seen) && (atomic_load(&r->scan_cut) || atomic_load(&st->unsent)))
        return 130;
    /* This run's failures: a resume that fails nothing exits 0, whatever failed rows earlier runs
     * left (the summary counts them, and --retry-failed runs them again). */
    if (atomic_load(&st->failed) || atomic_load(&r->folders_failed))
        return 1;
    return 0;
}

/* Every image through the stages, serial or queued, with the progress line, the benchmark's
 * sampler and the signal thread around it; then the results file closed. Returns the exit
 * status. */
static int run_images(struct runner *r, char *err, size_t errlen)
{
    const struct config *cfg = r->cfg;
    prepstat_sample(&r->run.shared->prep, &r->prep_t0);
    r->prog = progress_new(cfg, r->sources, r->run.stats, r->run.shared, r->done, r->run.stop, &r->found);
    r->sampler = bench_sampler_start(r->run.stats);
    catch_signals();
    pthread_t sig_tid;
    int sig_ok = pthread_create(&sig_tid, NULL, signal_thread, r) == 0;
    int rc = cfg->load == STRAT_SERIAL && cfg->query == STRAT_SERIAL ? run_serial(r, err, errlen)
                                                                     : run_queued(r, err, errlen);
    atomic_store(&r->finished, 1);
    if (sig_ok)
        pthread_join(sig_tid, NULL);
    release_signals();
    warn_unread_folders(r);
    if (results_close(r->out) && rc == 0) {
        snprintf(err, errlen, "cannot finish writing %s: %s", cfg->out, strerror(errno));
        rc = 2;
    }
    r->out = NULL;
    bench_sampler_stop(r->sampler);
    progress_end(r->prog);
    memo_close(r->run.memo); /* the last answers committed (and a failure told) before the summary */
    r->run.memo = NULL;
    return exit_status(r, rc, err, errlen);
}

/* Lets go of everything the run holds; its stats go to *stats_out when asked for. */
static void runner_free(struct runner *r, struct stats **stats_out)
{
    progress_free(r->prog);
    memo_close(r->run.memo);
    results_close(r->out);
    source_close(r->src);
    sources_free(r->sources);
    doneset_free(r->done);
    ratelimit_free(r->run.rl);
    if (r->limits_set)
        limit_teardown(r->run.shared, r->cfg->pipeline->n);
    budget_use(NULL, 0); /* (the page goes) */
    shared_close(&r->shared);
    pthread_mutex_destroy(&r->out_mu);
    pthread_mutex_destroy(&r->folder_mu);
    if (stats_out)
        *stats_out = r->run.stats;
    else
        stats_free(r->run.stats);
    free(r);
}

int runner_run(const struct config *cfg, struct run_summary *sum, struct stats **stats_out,
               char *err, size_t errlen)
{
    memset(sum, 0, sizeof *sum);
    if (stats_out)
        *stats_out = NULL;
    struct runner *r = runner_new(cfg, err, errlen);
    if (!r)
        return 2;
    double t0 = now_s();
    int rc = setup(r, err, errlen) ? 2 : run_images(r, err, errlen);
    fill_summary(r, rc, t0, sum);
    runner_free(r, stats_out);
    return rc;
}
