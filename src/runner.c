/* runner: see runner.h.
 *
 * Threads of a run: the scanner (produces items), the load executor, the query executor (or one
 * fused executor when both are processes, so a worker gets a path and reads the file itself),
 * the writer (this thread), and a signal thread. Every queue is bounded, so the number of items
 * alive at once is at most the sum of the queue sizes plus what the workers hold, whatever the
 * number of images. With every stage serial there are no queues and no threads at all: one loop
 * scans, loads, queries and writes an image before the next — the reference the others match. */
#include "runner.h"

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

#include "csv_out.h"
#include "exec.h"
#include "http.h"
#include "progress.h"
#include "resume.h"
#include "run.h"
#include "scan.h"

uint64_t shard_hash(const char *rel, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)rel[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

struct runner {
    struct run run;
    const struct config *cfg;
    scanner *sc;
    struct doneset *done;
    queue *q_scan;
    atomic_uint_fast64_t found, skipped, not_in_shard;
    atomic_int finished;
    struct csv_out *out;
    pthread_mutex_t out_mu; /* the writer and the signal thread's last-resort sync */
    struct progress *prog;
};

/* The next item the run should process, or NULL at the end (or when stopping). */
static struct item *next_item(struct runner *r, uint64_t *seq)
{
    struct scan_entry e;
    while (atomic_load(&r->run.stop) == RUN_GOING && scan_next(r->sc, &e) == 1) {
        if (r->cfg->max_images && *seq >= r->cfg->max_images)
            break;
        if (r->cfg->shard_n && shard_hash(e.rel, e.rel_len) % (uint64_t)r->cfg->shard_n != (uint64_t)r->cfg->shard_k) {
            atomic_fetch_add(&r->not_in_shard, 1);
            continue;
        }
        atomic_fetch_add(&r->found, 1);
        atomic_fetch_add(&r->run.stats->found, 1);
        if (r->done && doneset_has(r->done, e.path, e.path_len)) {
            atomic_fetch_add(&r->skipped, 1);
            atomic_fetch_add(&r->run.stats->skipped, 1);
            continue;
        }
        struct item *it = item_new(e.path, e.path_len, (size_t)(e.rel - e.path), r->run.p->n, (*seq)++);
        if (it)
            return it;
        fprintf(stderr, "annotate: out of memory\n");
        atomic_store(&r->run.stop, RUN_DRAIN);
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
            item_free(it);
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
    pthread_mutex_lock(&r->out_mu);
    int rc = csv_out_write(r->out, it, err, errlen);
    pthread_mutex_unlock(&r->out_mu);
    if (rc == 0) {
        atomic_fetch_add(it->status == ITEM_OK ? &st->ok : &st->failed, 1);
        atomic_fetch_add(&st->requests, it->requests);
        atomic_fetch_add(&st->attempts, it->attempts);
        atomic_fetch_add(&st->retries, it->attempts > it->requests ? it->attempts - it->requests : 0);
        hist_add(&st->image_us, (uint64_t)((now_s() - it->t_start) * 1e6));
        for (int i = 0; i < it->n_log; i++) {
            hist_add(&st->request_us, it->log[i].us);
            if (it->log[i].stage < st->n_stages)
                hist_add(&st->stage_us[it->log[i].stage], it->log[i].us);
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
        if (atomic_load(&signals_seen) && deadline == 0) {
            /* Whatever state the run is in (even already aborting), a signal starts the clock. */
            int going = RUN_GOING;
            atomic_compare_exchange_strong(&r->run.stop, &going, RUN_DRAIN);
            deadline = now_s() + (double)r->cfg->drain_timeout_ms / 1e3;
            if (!r->cfg->quiet)
                fprintf(stderr, "\nannotate: stopping: finishing the images in flight (up to %.1f s; "
                                "press Ctrl-C again to stop at once)\n", (double)r->cfg->drain_timeout_ms / 1e3);
        }
        if (deadline && now_s() > deadline) {
            /* The writer may be stuck in write() holding the lock (a stalled pipe, NFS): sync only
             * if we can; rows are whole writes, so the file is resumable either way. */
            if (pthread_mutex_trylock(&r->out_mu) == 0)
                csv_out_sync(r->out);
            fprintf(stderr, "annotate: images in flight did not finish within --drain-timeout-ms; "
                            "stopped. Run again with --resume to finish.\n");
            _exit(130);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void serial_loop(struct runner *r, int *rc, char *err, size_t errlen)
{
    struct http_worker *w = http_worker_new(&r->run);
    uint64_t seq = 0;
    struct item *it;
    while ((it = next_item(r, &seq))) {
        stage_load(&r->run, it);
        http_worker_query(w, it);
        item_drop_payload(it);
        if (write_item(r, it, err, errlen)) {
            *rc = 2;
            break;
        }
    }
    http_worker_free(w);
}

int runner_run(const struct config *cfg, struct run_summary *sum, struct stats **stats_out,
               char *err, size_t errlen)
{
    memset(sum, 0, sizeof *sum);
    struct runner *r = calloc(1, sizeof *r);
    r->cfg = cfg;
    r->run.cfg = cfg;
    r->run.p = cfg->pipeline;
    r->run.stats = stats_new(cfg->pipeline->n);
    pthread_mutex_init(&r->out_mu, NULL);
    int rc = 0, lockfd = -1;
    double t0 = now_s();

    if (cfg->max_rps > 0 && !(r->run.rl = ratelimit_new(cfg->max_rps))) {
        snprintf(err, errlen, "cannot set up the rate limiter: %s", strerror(errno));
        rc = 2;
        goto out;
    }
    r->sc = scan_open(cfg->dir, &cfg->scan, err, errlen);
    if (!r->sc) {
        rc = 2;
        goto out;
    }
    int append = 0;
    struct resume_info info = {0};
    if (cfg->resume && strcmp(cfg->out, "-")) {
        /* Hold the file's lock while reading and repairing it; csv_out takes its own after. */
        lockfd = open(cfg->out, O_RDONLY | O_CLOEXEC);
        if (lockfd >= 0 && csv_lock(lockfd, cfg->out, err, errlen)) {
            close(lockfd);
            rc = 2;
            goto out;
        }
        if (resume_open(cfg->out, cfg->pipeline, cfg->retry_failed, &r->done, &info, err, errlen)) {
            rc = 2;
            goto out;
        }
        append = 1;
        /* Rows are keyed by path as the scanner spells it (DIR joined with the path below it):
         * resuming with DIR spelled otherwise (./photos for photos) would match nothing and
         * write every image twice. */
        char prefix[4096], example[256];
        size_t dl = strlen(cfg->dir);
        snprintf(prefix, sizeof prefix, "%s%s", cfg->dir, dl && cfg->dir[dl - 1] == '/' ? "" : "/");
        if (doneset_outside(r->done, prefix, strlen(prefix), example, sizeof example)) {
            snprintf(err, errlen, "cannot resume %s: it has rows for paths not under \"%s\" (e.g. \"%s\"); "
                     "run with DIR spelled as in the run that wrote it", cfg->out, prefix, example);
            rc = 2;
            goto out;
        }
        if (!cfg->quiet && info.rows)
            fprintf(stderr, "annotate: resuming %s: %llu rows already there (%llu ok, %llu failed%s)%s\n",
                    cfg->out, (unsigned long long)info.rows, (unsigned long long)info.ok,
                    (unsigned long long)info.failed, cfg->retry_failed ? ", to be retried" : "",
                    info.torn_bytes ? "; repaired a torn last row" : "");
    }
    if (lockfd >= 0)
        close(lockfd);
    lockfd = -1;
    r->out = csv_out_open(cfg->out, cfg->pipeline, append, cfg->sync_every, err, errlen);
    if (!r->out) {
        rc = 2;
        goto out;
    }
    r->prog = progress_new(cfg, r->run.stats);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    signals_seen = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_t sig_tid;
    pthread_create(&sig_tid, NULL, signal_thread, r);

    if (cfg->load == STRAT_SERIAL && cfg->query == STRAT_SERIAL) {
        serial_loop(r, &rc, err, errlen);
    } else {
        size_t qs = cfg->queue_size;
        r->q_scan = queue_new(qs, 1);
        queue *q_out = queue_new(qs, 1), *q_load = NULL;
        struct exec *e_load = NULL, *e_query = NULL;
        pthread_t scan_tid;
        pthread_create(&scan_tid, NULL, scan_thread, r);
        if (cfg->load == STRAT_PROCESSES && cfg->query == STRAT_PROCESSES) {
            /* One worker process does both: it is sent a path, never the image. */
            static const struct stage_fn *const both[] = {&STAGE_LOAD, &STAGE_QUERY};
            e_query = exec_start(STRAT_PROCESSES, &r->run, both, 2, cfg->workers, r->q_scan, q_out, err, errlen);
        } else {
            static const struct stage_fn *const load[] = {&STAGE_LOAD};
            static const struct stage_fn *const query[] = {&STAGE_QUERY};
            q_load = queue_new(qs, 1);
            e_load = exec_start(cfg->load, &r->run, load, 1, cfg->workers, r->q_scan, q_load, err, errlen);
            if (e_load)
                e_query = exec_start(cfg->query, &r->run, query, 1, cfg->workers, q_load, q_out, err, errlen);
        }
        if (!e_query) {
            /* Could not start: stop the scanner, let what started drain into the void. */
            rc = 2;
            atomic_store(&r->run.stop, RUN_ABORT);
            queue_close(r->q_scan);
            if (q_load && !e_load)
                queue_close(q_load);
            queue_close(q_out);
        }
        struct item *it;
        while (rc == 0 && (it = queue_pop(q_out))) {
            if (write_item(r, it, err, errlen)) {
                rc = 2;
                atomic_store(&r->run.stop, RUN_ABORT);
                queue_close(r->q_scan);
                if (q_load)
                    queue_close(q_load);
                queue_close(q_out);
                break;
            }
        }
        if (atomic_load(&r->run.stop) == RUN_ABORT) {
            /* A stage gave up (or we did): unblock everyone still pushing. */
            queue_close(r->q_scan);
            if (q_load)
                queue_close(q_load);
            queue_close(q_out);
        }
        pthread_join(scan_tid, NULL);
        /* Drain whatever is left in the queues if we stopped early. */
        void *x;
        while (queue_try_pop(r->q_scan, &x) == 1)
            item_free(x);
        exec_join(e_load);
        if (q_load)
            while (queue_try_pop(q_load, &x) == 1)
                item_free(x);
        exec_join(e_query);
        while (queue_try_pop(q_out, &x) == 1)
            item_free(x);
        queue_free(r->q_scan);
        queue_free(q_load);
        queue_free(q_out);
    }
    atomic_store(&r->finished, 1);
    pthread_join(sig_tid, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (scan_warnings(r->sc) && !cfg->quiet)
        fprintf(stderr, "annotate: %llu director%s could not be read (last: %s)\n",
                (unsigned long long)scan_warnings(r->sc), scan_warnings(r->sc) == 1 ? "y" : "ies",
                scan_last_warning(r->sc));
    if (csv_out_close(r->out) && rc == 0) {
        snprintf(err, errlen, "cannot finish writing %s: %s", cfg->out, strerror(errno));
        rc = 2;
    }
    r->out = NULL;
    progress_end(r->prog);
    if (rc == 0 && atomic_load(&r->run.stop) == RUN_ABORT) {
        snprintf(err, errlen, "the run stopped early on an internal error (see above); the rows written are "
                              "valid: run again with --resume");
        rc = 2;
    }
    if (rc == 0) {
        if (atomic_load(&signals_seen))
            rc = 130;
        else if (atomic_load(&r->run.stats->failed) || (!cfg->retry_failed && info.failed))
            rc = 1; /* failed rows kept from an earlier run count too: the file is not all ok */
    }
out:
    if (lockfd >= 0)
        close(lockfd);
    sum->elapsed_s = now_s() - t0;
    struct stats *st = r->run.stats;
    sum->found = atomic_load(&r->found);
    sum->skipped = atomic_load(&r->skipped);
    sum->not_in_shard = atomic_load(&r->not_in_shard);
    sum->ok = atomic_load(&st->ok);
    sum->failed = atomic_load(&st->failed);
    sum->requests = atomic_load(&st->requests);
    sum->attempts = atomic_load(&st->attempts);
    sum->retries = atomic_load(&st->retries);
    sum->interrupted = rc == 130;
    for (int s = 0; s < cfg->pipeline->n; s++) {
        uint64_t p99 = hist_quantile(&st->stage_us[s], 0.99);
        if (p99 > sum->slowest_p99_us) {
            sum->slowest_p99_us = p99;
            sum->slowest_stage = cfg->pipeline->stages[s].name;
        }
    }
    progress_free(r->prog);
    csv_out_close(r->out);
    scan_close(r->sc);
    doneset_free(r->done);
    ratelimit_free(r->run.rl);
    pthread_mutex_destroy(&r->out_mu);
    if (stats_out)
        *stats_out = st;
    else
        stats_free(st);
    free(r);
    return rc;
}
