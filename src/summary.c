/* summary: see summary.h. */
#include "summary.h"
#include "options.h"
#include "results/resume.h"

#include <errno.h>
#include <math.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "common/errtally.h"
#include "endpoint/limit.h"
#include "progress.h"

static double ms(uint64_t us)
{
    return (double)us / 1e3;
}

/* How many reasons the text summary lists; --stats-json has the whole table. */
#define SUMMARY_REASONS 5

/* "annotate: why 12 images failed:" then one line per reason, most common first. */
static void print_error_tally(FILE *f, const struct stats *st)
{
    struct errtally_entry top[SUMMARY_REASONS];
    uint64_t other, total;
    int n = st ? errtally_top(st->errors, top, SUMMARY_REASONS, &other, &total) : 0;
    if (n == 0)
        return;
    fprintf(f, "annotate: why %llu image%s failed (most common first):\n", (unsigned long long)total,
            total == 1 ? "" : "s");
    char w[32];
    int width = snprintf(w, sizeof w, "%llu", (unsigned long long)(top[0].count > other ? top[0].count : other));
    for (int i = 0; i < n; i++) {
        char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4];
        errtally_label(&top[i], label, sizeof label);
        fprintf(f, "annotate:   %*llu  %s\n", width, (unsigned long long)top[i].count, label);
    }
    if (other)
        fprintf(f, "annotate:   %*llu  other reasons (--stats-json \"errors\" lists up to %d; the error column has all)\n",
                width, (unsigned long long)other, ERRTALLY_MAX);
}

/* [{"stage", "reason", "count", "example"}, ...], most common first; "stage" is null when the
 * error names none. */
static void add_error_tally(cJSON *o, const struct stats *st)
{
    struct errtally_entry *top = calloc(ERRTALLY_MAX, sizeof *top);
    uint64_t other = 0;
    int n = top && st ? errtally_top(st->errors, top, ERRTALLY_MAX, &other, NULL) : 0;
    cJSON *arr = cJSON_AddArrayToObject(o, "errors");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (top[i].stage[0])
            cJSON_AddStringToObject(e, "stage", top[i].stage);
        else
            cJSON_AddNullToObject(e, "stage");
        cJSON_AddStringToObject(e, "reason", top[i].reason);
        cJSON_AddNumberToObject(e, "count", (double)top[i].count);
        cJSON_AddStringToObject(e, "example", top[i].example);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddNumberToObject(o, "errors_other", (double)other);
    free(top);
}

/* "annotate: cache c.db: 2000 of 2200 requests answered from it (90.9%); per stage, answered/asked:
 * model_01 1000/100, model_02 1000/100" */
static void print_cache(FILE *f, const struct config *cfg, const struct run_summary *s)
{
    const struct cache_summary *c = &s->cache;
    if (!c->on)
        return;
    uint64_t hits = 0, all = 0;
    for (int i = 0; i < cfg->pipeline->n && i < 64; i++) {
        hits += c->hits[i];
        all += c->hits[i] + c->misses[i];
    }
    fprintf(f, "annotate: cache %s: %llu of %llu requests answered from it (%.1f%%); per stage, answered/asked:",
            cfg->cache, (unsigned long long)hits, (unsigned long long)all, all ? 100.0 * (double)hits / (double)all : 0.0);
    for (int i = 0; i < cfg->pipeline->n && i < 64; i++)
        fprintf(f, "%s %s %llu/%llu", i ? "," : "", cfg->pipeline->stages[i].name, (unsigned long long)c->hits[i],
                (unsigned long long)c->misses[i]);
    fprintf(f, "%s\n", c->off ? "; the store could not be written, and was not used from then on (see the message above)" : "");
}

/* "requests in flight in all (--concurrency auto): 512 at the end, at most 1024; tries kept: 3 up, 1 down" */
static void print_total(FILE *f, const struct run_summary *s)
{
    if (s->total.peak > 0)
        fprintf(f, "annotate: requests in flight in all (--concurrency auto): %d at the end, at most %d; tries kept: "
                   "%llu up, %llu down\n", s->total.end, s->total.peak, (unsigned long long)s->total.ups,
                (unsigned long long)s->total.downs);
}

static void add_total(cJSON *o, const struct run_summary *s)
{
    if (s->total.peak <= 0)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "concurrency_total");
    cJSON_AddNumberToObject(j, "end", s->total.end);
    cJSON_AddNumberToObject(j, "peak", s->total.peak);
    cJSON_AddNumberToObject(j, "ups", (double)s->total.ups);
    cJSON_AddNumberToObject(j, "downs", (double)s->total.downs);
}

static void add_cache(cJSON *o, const struct config *cfg, const struct run_summary *s)
{
    const struct cache_summary *c = &s->cache;
    if (!c->on)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "cache");
    cJSON *stages = cJSON_CreateObject();
    uint64_t hits = 0, misses = 0;
    for (int i = 0; i < cfg->pipeline->n && i < 64; i++) {
        cJSON *e = cJSON_AddObjectToObject(stages, cfg->pipeline->stages[i].name);
        cJSON_AddNumberToObject(e, "hits", (double)c->hits[i]);
        cJSON_AddNumberToObject(e, "misses", (double)c->misses[i]);
        hits += c->hits[i];
        misses += c->misses[i];
    }
    cJSON_AddStringToObject(j, "file", cfg->cache);
    cJSON_AddNumberToObject(j, "hits", (double)hits);
    cJSON_AddNumberToObject(j, "misses", (double)misses);
    cJSON_AddBoolToObject(j, "off", c->off);
    cJSON_AddItemToObject(j, "stages", stages);
}

/* What the loaders are, n of them, and what would give preparation more room. */
static const char *loaders_name(const struct prep_summary *p)
{
    int one = p->threads == 1;
    switch (p->by) {
    case PREP_BY_PROCESSES:
        return one ? "loader process" : "loader processes";
    case PREP_BY_WORKERS:
        return one ? "worker process" : "worker processes";
    case PREP_BY_SERIAL:
        return "thread (serial)";
    default:
        return one ? "loader thread" : "loader threads";
    }
}

static const char *prep_advice(const struct prep_summary *p)
{
    switch (p->by) {
    case PREP_BY_WORKERS:
        return "more --workers (with cores to spare) or a lighter \"image\" spec (a smaller size, JPEG) would help";
    case PREP_BY_SERIAL:
        return "a strategy that loads on every core (the default) or a lighter \"image\" spec would help";
    case PREP_BY_ONE:
        return "--strategy load=threads (loaders on every core) or a lighter \"image\" spec would help";
    default:
        return "--load-threads (with cores to spare) or a lighter \"image\" spec (a smaller size, JPEG) would help";
    }
}

/* "annotate: preparing images took 83% of 2 loader threads (120 images, 41.5 ms each); the servers
 * waited for images 61% of the time: preparation, not the servers, was the bottleneck; ..." */
static void print_prep(FILE *f, const struct run_summary *s)
{
    const struct prep_summary *p = &s->prep;
    if (!p->on || (!p->images && p->prep_ms <= 0)) /* nothing was prepared (a resume with nothing left) */
        return;
    fprintf(f, "annotate: preparing images took %.0f%% of %d %s (%llu image%s, %.1f ms each); the servers waited for "
               "images %.0f%% of the time",
            100 * p->v.busy, p->threads, loaders_name(p), (unsigned long long)p->images, p->images == 1 ? "" : "s",
            p->images ? p->prep_ms / (double)p->images : 0.0, 100 * p->v.starved);
    if (p->v.bottleneck)
        fprintf(f, ": preparation, not the servers, was the bottleneck; %s\n", prep_advice(p));
    else
        fputc('\n', f);
}

/* "prepare": {"images", "copies", "wall_ms", "ms_per_image", "loaders", "busy_share",
 * "starved_ms", "starved_share", "bottleneck"} */
static void add_prep(cJSON *o, const struct run_summary *s)
{
    const struct prep_summary *p = &s->prep;
    if (!p->on)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "prepare");
    cJSON_AddNumberToObject(j, "images", (double)p->images);
    cJSON_AddNumberToObject(j, "copies", (double)p->copies);
    cJSON_AddNumberToObject(j, "wall_ms", round(p->prep_ms * 10) / 10);
    cJSON_AddNumberToObject(j, "ms_per_image", p->images ? round(p->prep_ms / (double)p->images * 10) / 10 : 0);
    cJSON_AddNumberToObject(j, "loaders", p->threads);
    cJSON_AddStringToObject(j, "loaders_are", loaders_name(p));
    cJSON_AddNumberToObject(j, "busy_share", round(p->v.busy * 1000) / 1000);
    cJSON_AddNumberToObject(j, "starved_ms", round(p->starved_ms * 10) / 10);
    cJSON_AddNumberToObject(j, "starved_share", round(p->v.starved * 1000) / 1000);
    cJSON_AddBoolToObject(j, "bottleneck", p->v.bottleneck);
}

/* Failed rows, final and not: --retry-failed is suggested only for those a retry may mend. */
static void print_failed_advice(FILE *f, const struct run_summary *s)
{
    uint64_t final = s->failed_final, mendable = s->failed - s->failed_final;
    if (final)
        fprintf(f, "annotate: %llu failed row%s %s final (a 4xx on the image itself, a garbled answer that "
                   "repeated, a file that is not an image): a retry would fail the same way; the error column "
                   "says why\n", (unsigned long long)final, final == 1 ? "" : "s", final == 1 ? "is" : "are");
    if (mendable)
        fprintf(f, "annotate: %llu failed row%s may succeed on a retry (timeouts, outages, 5xx after the "
                   "retries): --resume --retry-failed re-runs %s\n", (unsigned long long)mendable,
                mendable == 1 ? "" : "s", mendable == 1 ? "it" : "them");
}

/* "annotate: 120 images: 118 ok, 2 failed, ... in 12s (12.0 s, 10.0 images/s)" and the requests' line. */
static void print_counts(FILE *f, const struct config *cfg, const struct run_summary *s, const struct stats *st)
{
    char el[32];
    progress_fmt_duration(s->elapsed_s, el, sizeof el);
    uint64_t done = s->ok + s->failed;
    fprintf(f, "annotate: %llu image%s: %llu ok, %llu failed", (unsigned long long)s->found,
            s->found == 1 ? "" : "s", (unsigned long long)s->ok, (unsigned long long)s->failed);
    if (s->skipped_failed)
        fprintf(f, ", %llu skipped (already in %s; %llu of them failed earlier: --retry-failed sends them again)",
                (unsigned long long)s->skipped, cfg->out, (unsigned long long)s->skipped_failed);
    else if (s->skipped)
        fprintf(f, ", %llu skipped (already in %s)", (unsigned long long)s->skipped, cfg->out);
    if (cfg->shard_n)
        fprintf(f, " [shard %d/%d; %llu in other shards]", cfg->shard_k, cfg->shard_n,
                (unsigned long long)s->not_in_shard);
    fprintf(f, " in %s (%.1f s, %.1f images/s)\n", el, s->elapsed_s,
            s->elapsed_s > 0 ? (double)done / s->elapsed_s : 0.0);
    fprintf(f, "annotate: %llu requests, %llu retries", (unsigned long long)s->requests,
            (unsigned long long)s->retries);
    if (st && atomic_load(&st->request_us.count))
        fprintf(f, "; request latency p50 %.1f ms, p99 %.1f ms", ms(hist_quantile(&st->request_us, 0.5)),
                ms(hist_quantile(&st->request_us, 0.99)));
    if (s->slowest_stage)
        fprintf(f, "; slowest stage by p99: %s (%.1f ms)", s->slowest_stage, ms(s->slowest_p99_us));
    fputc('\n', f);
}

static void print_replicas(FILE *f, const struct config *cfg, const struct run_summary *s)
{
    for (int i = 0; i < s->n_replicas; i++) {
        const struct replica_summary *x = &s->replicas[i];
        const struct stage *st = &cfg->pipeline->stages[x->stage];
        fprintf(f, "annotate: %s replica %s: %llu attempts, %llu errors, p99 %.1f ms%s", st->name,
                pipeline_replica_url(st, x->k, 1), (unsigned long long)x->attempts, (unsigned long long)x->errors,
                ms(x->p99_us), x->ejections ? "" : "\n");
        if (x->ejections)
            fprintf(f, ", ejected %d time%s\n", x->ejections, x->ejections == 1 ? "" : "s");
    }
}

/* Folders that could not be read, or a list's entries that name no image. */
static void print_folders(FILE *f, const struct config *cfg, const struct run_summary *s)
{
    if (s->folders_failed && cfg->files_from)
        fprintf(f, "annotate: %llu entr%s of %s name%s no image (the last: %s); %s why\n",
                (unsigned long long)s->folders_failed, s->folders_failed == 1 ? "y" : "ies", cfg->files_from,
                s->folders_failed == 1 ? "s" : "", s->folder_last, s->folders_failed == 1 ? "its row says" : "their rows say");
    else if (s->folders_failed == 1)
        fprintf(f, "annotate: 1 folder could not be read: %s; its row says so, and --resume will retry it\n",
                s->folder_last);
    else if (s->folders_failed)
        fprintf(f, "annotate: %llu folders could not be read (the last: %s); their rows say why, and --resume will "
                   "retry them\n", (unsigned long long)s->folders_failed, s->folder_last);
}

/* "batches: model_03 212 requests of 15.1 items on average" (a request counts once per item in
 * the totals above: each image's share) */
static void print_batches(FILE *f, const struct config *cfg, const struct run_summary *s)
{
    for (int i = 0; i < s->n_batches; i++) {
        const struct batch_summary *b = &s->batches[i];
        fprintf(f, "%s %s %llu request%s of %.1f items on average%s", i ? "," : "annotate: batches:",
                cfg->pipeline->stages[b->stage].name, (unsigned long long)b->sends, b->sends == 1 ? "" : "s",
                b->sends ? (double)b->items / (double)b->sends : 0.0, i + 1 == s->n_batches ? "\n" : "");
    }
}

/* "concurrency limits: model_01 auto 6 (4-9 over 14 changes, peak 7 in flight), model_05 1 (peak 1)" */
static void print_limits(FILE *f, const struct config *cfg, const struct stats *st)
{
    if (!st || !st->limits)
        return;
    fprintf(f, "annotate: concurrency limits:");
    int first = 1;
    for (int i = 0; i < cfg->pipeline->n && i < st->n_stages; i++) {
        const struct limit_view *v = &st->limits[i];
        if (v->mode == LIMIT_NONE)
            continue;
        fprintf(f, "%s %s ", first ? "" : ",", cfg->pipeline->stages[i].name);
        first = 0;
        if (v->mode == LIMIT_AUTO) {
            int lo = v->limit, hi = v->limit;
            for (int k = 0; k < v->n_hist; k++) {
                lo = v->hist[k].limit < lo ? v->hist[k].limit : lo;
                hi = v->hist[k].limit > hi ? v->hist[k].limit : hi;
            }
            fprintf(f, "auto %d (%d-%d over %llu change%s, peak %d in flight)", v->limit, lo, hi,
                    (unsigned long long)(v->changes - 1), v->changes == 2 ? "" : "s", v->peak);
        } else {
            fprintf(f, "%d (peak %d in flight)", v->limit, v->peak);
        }
    }
    fputc('\n', f);
}

/* What is left to do: after a stop, the images without a row; else the failed rows' advice. */
static void print_left(FILE *f, const struct run_summary *s)
{
    if (s->interrupted || s->left)
        fprintf(f, "annotate: stopped early: %llu image%s found ha%s no row%s; run the same command with --resume "
                   "to do %s\n", (unsigned long long)s->left, s->left == 1 ? "" : "s", s->left == 1 ? "s" : "ve",
                s->scan_cut ? ", and the scan stopped before the end" : "",
                s->scan_cut ? "them and the images not found yet" : s->left == 1 ? "it" : "them");
    else if (s->failed)
        print_failed_advice(f, s);
}

void summary_print(FILE *f, const struct config *cfg, const struct run_summary *s, const struct stats *st)
{
    print_counts(f, cfg, s, st);
    print_replicas(f, cfg, s);
    print_folders(f, cfg, s);
    print_batches(f, cfg, s);
    print_limits(f, cfg, st);
    print_total(f, s);
    print_cache(f, cfg, s);
    print_prep(f, s);
    print_error_tally(f, st);
    print_left(f, s);
    if (strcmp(cfg->out, "-"))
        fprintf(f, "annotate: results in %s\n", cfg->out);
}

cJSON *hist_json(const struct hist *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)atomic_load(&h->count));
    cJSON_AddNumberToObject(o, "p50_ms", ms(hist_quantile(h, 0.50)));
    cJSON_AddNumberToObject(o, "p90_ms", ms(hist_quantile(h, 0.90)));
    cJSON_AddNumberToObject(o, "p99_ms", ms(hist_quantile(h, 0.99)));
    cJSON_AddNumberToObject(o, "max_ms", ms(atomic_load(&h->max_us)));
    return o;
}

/* Where the images came from and went, how many, and how they ended. */
static void add_counts(cJSON *o, const struct config *cfg, const struct run_summary *s)
{
    if (cfg->files_from)
        cJSON_AddStringToObject(o, "files_from", cfg->files_from);
    else
        cJSON_AddStringToObject(o, "dir", cfg->dir);
    cJSON_AddStringToObject(o, "out", cfg->out);
    cJSON_AddStringToObject(o, "format", results_format_name(cfg->format));
    cJSON_AddStringToObject(o, "load_strategy", strategy_name(cfg->load));
    cJSON_AddStringToObject(o, "query_strategy", strategy_name(cfg->query));
    cJSON_AddNumberToObject(o, "images_found", (double)s->found);
    cJSON_AddNumberToObject(o, "images_ok", (double)s->ok);
    cJSON_AddNumberToObject(o, "images_failed", (double)s->failed);
    cJSON_AddNumberToObject(o, "images_failed_final", (double)s->failed_final);
    cJSON_AddNumberToObject(o, "images_skipped", (double)s->skipped);
    cJSON_AddNumberToObject(o, "images_skipped_failed", (double)s->skipped_failed);
    cJSON_AddNumberToObject(o, "images_left", (double)s->left);
    cJSON_AddNumberToObject(o, cfg->files_from ? "entries_failed" : "folders_failed", (double)s->folders_failed);
    cJSON_AddNumberToObject(o, "requests", (double)s->requests);
    cJSON_AddNumberToObject(o, "attempts", (double)s->attempts);
    cJSON_AddNumberToObject(o, "retries", (double)s->retries);
    cJSON_AddNumberToObject(o, "elapsed_s", s->elapsed_s);
    cJSON_AddNumberToObject(o, "images_per_s", s->elapsed_s > 0 ? (double)(s->ok + s->failed) / s->elapsed_s : 0);
    cJSON_AddBoolToObject(o, "interrupted", s->interrupted);
}

/* This process's peak RSS and CPU. */
static void add_usage(cJSON *o)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cJSON_AddNumberToObject(o, "peak_rss_kb", (double)ru.ru_maxrss);
        cJSON_AddNumberToObject(o, "cpu_user_s", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6);
        cJSON_AddNumberToObject(o, "cpu_sys_s", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    }
}

/* One stage's concurrency limit: {"mode", "limit", "min", "max", "peak_in_flight", (auto:
 * "no_load_rtt_ms", "drops", "decreases_undone"), "changes", "history"}. */
static void add_limit(cJSON *limits, const char *name, const struct limit_view *v)
{
    cJSON *l = cJSON_AddObjectToObject(limits, name);
    cJSON_AddStringToObject(l, "mode", v->mode == LIMIT_AUTO ? "auto" : "fixed");
    cJSON_AddNumberToObject(l, "limit", v->limit);
    cJSON_AddNumberToObject(l, "min", v->lo);
    cJSON_AddNumberToObject(l, "max", v->hi);
    cJSON_AddNumberToObject(l, "peak_in_flight", v->peak);
    if (v->mode == LIMIT_AUTO) {
        cJSON_AddNumberToObject(l, "no_load_rtt_ms", v->rtt_noload_ms);
        cJSON_AddNumberToObject(l, "drops", (double)v->drops);
        cJSON_AddNumberToObject(l, "decreases_undone", (double)v->undone);
    }
    /* The changes as [seconds since the start, limit]: the first ones and the latest
     * (LIMIT_HIST_HEAD + LIMIT_HIST_TAIL at most; "changes" says how many there were). */
    cJSON_AddNumberToObject(l, "changes", (double)v->changes);
    cJSON *h = cJSON_AddArrayToObject(l, "history");
    for (int k = 0; k < v->n_hist; k++) {
        cJSON *pt = cJSON_CreateArray();
        cJSON_AddItemToArray(pt, cJSON_CreateNumber(round((double)v->hist[k].t * 1e3) / 1e3));
        cJSON_AddItemToArray(pt, cJSON_CreateNumber(v->hist[k].limit));
        cJSON_AddItemToArray(h, pt);
    }
}

/* The latency histograms (requests, images, each stage) and the stages' limits. */
static void add_latencies(cJSON *o, const struct config *cfg, const struct stats *st)
{
    cJSON_AddItemToObject(o, "request_latency", hist_json(&st->request_us));
    cJSON_AddItemToObject(o, "image_latency", hist_json(&st->image_us));
    cJSON *stages = cJSON_AddObjectToObject(o, "stages");
    for (int i = 0; i < cfg->pipeline->n && i < st->n_stages; i++)
        cJSON_AddItemToObject(stages, cfg->pipeline->stages[i].name, hist_json(&st->stage_us[i]));
    cJSON *limits = st->limits ? cJSON_AddObjectToObject(o, "limits") : NULL;
    for (int i = 0; limits && i < cfg->pipeline->n && i < st->n_stages; i++)
        if (st->limits[i].mode != LIMIT_NONE)
            add_limit(limits, cfg->pipeline->stages[i].name, &st->limits[i]);
}

/* "replicas": {STAGE: [{"url", "attempts", "errors", "p99_ms", "ejections"}, ...]} */
static void add_replicas(cJSON *o, const struct config *cfg, const struct run_summary *s)
{
    cJSON *reps = s->n_replicas ? cJSON_AddObjectToObject(o, "replicas") : NULL;
    for (int i = 0; reps && i < s->n_replicas; i++) {
        const struct replica_summary *x = &s->replicas[i];
        const struct stage *sg = &cfg->pipeline->stages[x->stage];
        cJSON *list = cJSON_GetObjectItemCaseSensitive(reps, sg->name);
        if (!list)
            list = cJSON_AddArrayToObject(reps, sg->name);
        cJSON *e = cJSON_CreateObject();
        if (!list || !e || !cJSON_AddItemToArray(list, e)) {
            cJSON_Delete(e);
            continue;
        }
        cJSON_AddStringToObject(e, "url", pipeline_replica_url(sg, x->k, 1));
        cJSON_AddNumberToObject(e, "attempts", (double)x->attempts);
        cJSON_AddNumberToObject(e, "errors", (double)x->errors);
        cJSON_AddNumberToObject(e, "p99_ms", ms(x->p99_us));
        cJSON_AddNumberToObject(e, "ejections", x->ejections);
    }
}

/* "batches": {STAGE: {"http_requests", "items"}} */
static void add_batches(cJSON *o, const struct config *cfg, const struct run_summary *s)
{
    cJSON *batches = s->n_batches ? cJSON_AddObjectToObject(o, "batches") : NULL;
    for (int i = 0; batches && i < s->n_batches; i++) {
        cJSON *b = cJSON_AddObjectToObject(batches, cfg->pipeline->stages[s->batches[i].stage].name);
        cJSON_AddNumberToObject(b, "http_requests", (double)s->batches[i].sends);
        cJSON_AddNumberToObject(b, "items", (double)s->batches[i].items);
    }
}

cJSON *summary_json(const struct config *cfg, const struct run_summary *s, const struct stats *st)
{
    cJSON *o = cJSON_CreateObject();
    add_counts(o, cfg, s);
    add_error_tally(o, st);
    add_usage(o);
    if (s->slowest_stage) {
        cJSON_AddStringToObject(o, "slowest_stage", s->slowest_stage);
        cJSON_AddNumberToObject(o, "slowest_stage_p99_ms", ms(s->slowest_p99_us));
    }
    if (st)
        add_latencies(o, cfg, st);
    add_replicas(o, cfg, s);
    add_total(o, s);
    add_cache(o, cfg, s);
    add_prep(o, s);
    add_batches(o, cfg, s);
    return o;
}

int summary_write_json(const char *path, const struct config *cfg, const struct run_summary *s,
                       const struct stats *st, char *err, size_t errlen)
{
    cJSON *o = summary_json(cfg, s, st);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write --stats-json %s: %s", path, strerror(errno));
        free(txt);
        return -1;
    }
    fputs(txt, f);
    fputc('\n', f);
    free(txt);
    if (fclose(f)) {
        snprintf(err, errlen, "cannot write --stats-json %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
