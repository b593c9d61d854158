/* progress: see progress.h. */
#include "progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/errtally.h"
#include "flow/item.h"
#include "endpoint/limit.h"
#include "flow/source.h"
#include "select.h"

#define PREP_RING 32     /* samples of preparation's figures kept, one every half second at most */
#define PREP_WINDOW_S 5  /* what the progress line judges preparation over */
#define PREP_NOTE "  image prep is the bottleneck" /* "  prep-bound" when the line is too wide */

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
    struct sources *sources;    /* what a counting source reads a bucket with */
    const atomic_uint_fast64_t *found; /* the run's own count, for a source read only once */
    struct prep_sample prep[PREP_RING]; /* preparation's figures, newest last (prep_part) */
    int n_prep;
    int prep_note;                      /* the rule said so when last judged */
};

/* Counts what the run will settle (taken, and skipped as done) with the run's own rule, on a
 * second source of the run's kind (source.h). A source that can be read only once (a list on
 * standard input) is not counted ahead: the total follows the run's own count. */
static void *count_thread(void *arg)
{
    struct progress *p = arg;
    char err[256];
    struct source *s = source_open(p->cfg, p->sources, 1, err, sizeof err);
    if (!s) {
        while (p->cfg->files_from && !atomic_load(&p->stop)) {
            atomic_store(&p->total, atomic_load(p->found));
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        return NULL;
    }
    s->stop = &p->stop;
    struct selection sel;
    selection_init(&sel, p->cfg, p->done);
    struct source_entry e;
    uint64_t n = 0;
    enum pick k = PICK_TAKE;
    while (!atomic_load(&p->stop) && k != PICK_STOP && source_next(s, &e) == 1) {
        k = selection_pick(&sel, &e.e);
        if ((k == PICK_TAKE || k == PICK_DONE) && ++n % 1024 == 0)
            atomic_store(&p->total, n);
    }
    atomic_store(&p->total, n);
    char why[8];
    if (!atomic_load(&p->stop) && !s->incomplete(s, why, sizeof why))
        atomic_store(&p->total_known, 1);
    source_close(s);
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

/* Terminal columns on a terminal (80 when it does not say), 0 (no limit) otherwise. */
static int line_width(const struct progress *p)
{
    if (!p->tty)
        return 0;
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

/* Characters a terminal shows: colour escapes (ESC [ ... m) take no room. */
static int visible_len(const char *s)
{
    int n = 0;
    for (; *s; s++) {
        if (*s == '\033') {
            while (*s && *s != 'm')
                s++;
            if (!*s)
                break;
            continue;
        }
        n++;
    }
    return n;
}

/* "340 retries  12 failed (model_03: HTTP 503)": retries (of the images written so far) when
 * there are any, the failures, and the most common reason cut to at most cap characters (none
 * when cap is under 8). The count and reason are red when colour is on. Returns the length of
 * the reason shown. */
static int failed_part(const struct progress *p, uint64_t failed, int cap, char *buf, size_t len)
{
    uint64_t retries = atomic_load(&p->st->retries);
    const char *red = p->colour && failed ? "\033[31m" : "", *reset = p->colour && failed ? "\033[0m" : "";
    char retr[48] = "", why[ERRTALLY_STAGE + ERRTALLY_REASON + 8] = "";
    if (retries)
        snprintf(retr, sizeof retr, "%llu retr%s  ", (unsigned long long)retries, retries == 1 ? "y" : "ies");
    struct errtally_entry top;
    if (failed && cap >= 8 && errtally_top(p->st->errors, &top, 1, NULL, NULL) == 1) {
        char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4];
        errtally_label(&top, label, sizeof label);
        if ((int)strlen(label) > cap)
            snprintf(label + cap - 3, sizeof label - (size_t)(cap - 3), "...");
        snprintf(why, sizeof why, " (%s)", label);
    }
    snprintf(buf, len, "%s%s%llu failed%s%s", retr, red, (unsigned long long)failed, why, reset);
    return why[0] ? (int)strlen(why) - 3 : 0;
}

/* Appends item to line when it fits in width (0: always) and in len: 1, else 0. */
static int append_fitting(char *line, size_t len, int width, const char *item)
{
    size_t used = strlen(line), n = strlen(item);
    if (used + n >= len || (width && visible_len(line) + (int)n >= width))
        return 0;
    memcpy(line + used, item, n + 1);
    return 1;
}

/* With --verbose, or on a terminal of 120 columns or more: each stage's request p50 so far,
 * "  p50 model_01 21ms model_02 22ms ...", as many as fit in width (0: all). */
static void append_stages(const struct progress *p, char *line, size_t len, int width)
{
    if (!p->cfg->verbose && width < 120)
        return;
    const struct pipeline *pl = p->cfg->pipeline;
    const char *lead = "  p50";
    for (int i = 0; pl && i < pl->n && i < p->st->n_stages; i++) {
        if (!atomic_load(&p->st->stage_us[i].count))
            continue;
        char item[128];
        snprintf(item, sizeof item, "%s %s %.0fms", lead, pl->stages[i].name,
                 (double)hist_quantile(&p->st->stage_us[i], 0.5) / 1e3);
        if (!append_fitting(line, len, width, item))
            break;
        lead = "";
    }
}

/* Each limited stage: its requests in flight / its limit now ("  limits model_01 4/6 ..."), as
 * many as fit in width (0: all). Last on the line: with --concurrency auto (the default) every
 * stage has one, and a narrow terminal keeps the failures' reason and the p50s first. */
static void append_limits(const struct progress *p, char *line, size_t len, int width)
{
    const struct pipeline *pl = p->cfg->pipeline;
    const char *lead = "  limits";
    for (int s = 0; pl && s < pl->n && s < SHARED_MAX_STAGES; s++) {
        const struct limit_stage *l = &p->shared->lim[s];
        if (l->mode == LIMIT_NONE)
            continue;
        char item[160];
        snprintf(item, sizeof item, "%s %s %d/%d", lead, pl->stages[s].name, atomic_load(&l->in_flight),
                 atomic_load(&l->limit));
        if (!append_fitting(line, len, width, item))
            break;
        lead = "";
    }
}

/* Cuts a line to width - 1 visible characters (width 0: no cut), closing the colour. */
static void cut_to_width(const struct progress *p, char *line, size_t len, int width)
{
    if (!width || visible_len(line) < width)
        return;
    int n = 0;
    char *s = line;
    for (; *s && n < width - 1; s++) {
        if (*s == '\033') {
            while (*s && *s != 'm')
                s++;
            if (!*s)
                break;
            continue;
        }
        n++;
    }
    *s = 0;
    if (p->colour && (size_t)(s - line) + 5 < len)
        strcat(line, "\033[0m");
}

/* A stage whose server is down: say so, and that its images wait (chain.c's outage rule):
 * "  model_03 unreachable for 42 s, retrying", or "". It comes right after the image counts,
 * before what a terminal's width may cut (the limits of every stage make a long line). */
static void outage_part(const struct progress *p, char *buf, size_t len)
{
    const struct pipeline *pl = p->cfg->pipeline;
    double worst = 0;
    int ws = -1;
    buf[0] = 0;
    for (int s = 0; pl && s < pl->n && s < SHARED_MAX_STAGES; s++) {
        int64_t since = atomic_load(&p->shared->stage[s].down_since_ms);
        double down = since ? now_s() - (double)since / 1000 : 0;
        if (down > worst) {
            worst = down;
            ws = s;
        }
    }
    if (ws >= 0)
        snprintf(buf, len, "  %s unreachable for %.0f s, retrying", pl->stages[ws].name, worst);
}

/* With --cache: the share of requests answered from the store so far ("  37% cached"), or "". */
static void cache_part(const struct progress *p, char *buf, size_t len)
{
    const struct pipeline *pl = p->cfg->pipeline;
    uint64_t hits = 0, all = 0;
    buf[0] = 0;
    for (int s = 0; p->cfg->cache && pl && s < pl->n && s < SHARED_MAX_STAGES; s++) {
        uint64_t h = atomic_load(&p->shared->stage[s].memo_hits);
        hits += h;
        all += h + atomic_load(&p->shared->stage[s].memo_misses);
    }
    if (all)
        snprintf(buf, len, "  %.0f%% cached", 100.0 * (double)hits / (double)all);
}

/* A pipeline that prepares images: PREP_NOTE when prepstat.h's rule says so
 * over about the last PREP_WINDOW_S seconds (since the previous line, when lines are further
 * apart), or "". */
static void prep_part(struct progress *p, char *buf, size_t len)
{
    buf[0] = 0;
    if (!p->cfg->pipeline || !pipeline_prepares(p->cfg->pipeline))
        return;
    struct prep_sample now;
    prepstat_sample(&p->shared->prep, &now);
    if (!p->n_prep || now.t_us - p->prep[p->n_prep - 1].t_us >= 500000) { /* else: the note as last judged */
        if (p->n_prep == PREP_RING)
            memmove(p->prep, p->prep + 1, sizeof p->prep - sizeof p->prep[0]);
        p->n_prep -= p->n_prep == PREP_RING;
        p->prep[p->n_prep++] = now;
        int base = 0;
        for (int i = p->n_prep - 1; i > 0 && !base; i--)
            if (p->prep[i].t_us <= now.t_us - PREP_WINDOW_S * 1000000)
                base = i;
        struct prep_verdict v;
        prepstat_judge(&p->shared->prep, &p->prep[base], &now, &v);
        p->prep_note = v.bottleneck && v.window_s >= PREPSTAT_MIN_S;
    }
    if (p->prep_note)
        snprintf(buf, len, "%s", PREP_NOTE);
}

/* The note, in its short form when it was the long one: 1, else 0. */
static int prep_shorten(char *buf, size_t len)
{
    if (strcmp(buf, PREP_NOTE))
        return 0;
    snprintf(buf, len, "  prep-bound");
    return 1;
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
    char line[2048], fails[256], down[160], cached[32], prep[48];
    long long in_flight = (long long)atomic_load(&p->shared->in_flight);
    int width = line_width(p);
    cache_part(p, cached, sizeof cached);
    prep_part(p, prep, sizeof prep);
    outage_part(p, down, sizeof down);
    /* The reason is shortened (then left out) until the line fits the terminal. */
    for (int cap = ERRTALLY_STAGE + ERRTALLY_REASON, shown;; cap = shown - (visible_len(line) - width + 1)) {
        shown = failed_part(p, failed, cap, fails, sizeof fails);
        if (atomic_load(p->run_stop) != 0) /* RUN_DRAIN or RUN_ABORT */
            snprintf(line, sizeof line, "stopping: %lld in flight  %s images%s  %s", in_flight, totals, down, fails);
        else
            snprintf(line, sizeof line, "%s images%s  %.0f img/s  %lld in flight%s%s  %s  ETA %s", totals, down, rate,
                     in_flight, cached, prep, fails, eta);
        if (!width || visible_len(line) < width || (shown == 0 && !prep_shorten(prep, sizeof prep)))
            break; /* (with the reason gone, the note on preparation takes its short form) */
    }
    append_stages(p, line, sizeof line, width);
    append_limits(p, line, sizeof line, width);
    cut_to_width(p, line, sizeof line, width);
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

struct progress *progress_new(const struct config *cfg, struct sources *sources, struct stats *st,
                              const struct shared_page *shared, const struct doneset *done, const atomic_int *stop,
                              const atomic_uint_fast64_t *found)
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
    p->sources = sources;
    p->found = found;
    p->t0 = now_s();
    prepstat_sample(&shared->prep, &p->prep[p->n_prep++]); /* the first window starts with the run */
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
