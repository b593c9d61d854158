/* options: see options.h. Every option is one row of CONFIG_OPTIONS; the parser of flags, numbers
 * and strings (config_set) works from the row alone and writes the error message from it, so the
 * range in a message cannot drift from the range enforced, and one printer per type writes a
 * value back (config_value), so that what a worker process or a run bench starts is given is
 * read by that same parser. Options whose value is more than a number (--strategy, --shard, ...)
 * keep a small function each, and a printer where they are written back.
 *
 * The table lives here rather than in cli.c because three modules read it: the command line
 * parses and documents it, and the worker's frame (drivers/ipc.c) and bench's runs (bench/)
 * write it back. A driver must not depend on the command line. */
#include "options.h"
#include "prepare/prepare.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endpoint/limit.h"
#include "results/resume.h"

const char *strategy_name(enum strategy s)
{
    static const char *names[] = {"serial", "threads", "processes", "curl-multi"};
    return s < STRAT__N ? names[s] : "?";
}

int strategy_from_name(const char *name, enum strategy *out)
{
    for (int s = 0; s < STRAT__N; s++)
        if (!strcmp(name, strategy_name((enum strategy)s))) {
            *out = (enum strategy)s;
            return 0;
        }
    return -1;
}

int config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int config_load_workers(const struct config *cfg)
{
    if (cfg->load_threads > 0)
        return cfg->load_threads;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg->pipeline && pipeline_prepares(cfg->pipeline))
        return ncpu < 1 ? 1 : ncpu > 4096 ? 4096 : (int)ncpu;
    return cfg->workers;
}

void config_defaults(struct config *cfg, struct bench_opts *bench)
{
    memset(cfg, 0, sizeof *cfg);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    cfg->out = "-";
    cfg->server = "http://127.0.0.1:8080";
    cfg->load = STRAT_THREADS;
    cfg->load_auto = 1;
    cfg->query = STRAT_CURL_MULTI;
    cfg->workers = (int)(8 * ncpu > 256 ? 256 : 8 * ncpu);
    cfg->concurrency = LIMIT_AUTO_TOTAL; /* --concurrency auto */
    cfg->concurrency_auto = 1;
    cfg->loops = 1;
    cfg->queue_size = 256;
    cfg->timeout_ms = 30000;
    cfg->connect_timeout_ms = 5000;
    cfg->retries = 3;
    cfg->backoff_ms = 100;
    cfg->backoff_max_ms = 10000;
    cfg->max_image_bytes = 64ull << 20;
    cfg->max_answer_bytes = 64L << 20;
    cfg->max_memory = 512ull << 20;
    cfg->max_pixels = PREP_MAX_PIXELS_DEFAULT;
    cfg->encoder = B64_FAST;
    cfg->sync_every = 1000;
    cfg->drain_timeout_ms = 30000;
    cfg->outage_timeout_s = 300;
    cfg->progress_interval = 10;
    cfg->s3_max_keys = 1000;
    if (bench) {
        memset(bench, 0, sizeof *bench);
        bench->strategies = "serial,threads,processes,curl-multi";
        bench->concurrency = NULL;
        bench->latency_dist = "fixed";
        bench->duration_s = 120;
        bench->report = "out/bench.json";
        bench->chart = "out/bench.svg";
        bench->tolerance = 0.1;
        bench->max_windows = 10;
        bench->window_s = 1;
        bench->queue_max = -1;
        bench->recommend = "out/recommended.json";
    }
}

/* ---- the table ---- */

#define CTYPE(x)                                                                                    \
    _Generic((x), int: CT_INT, long: CT_LONG, unsigned long: CT_ULONG, unsigned long long: CT_ULLONG, \
             double: CT_DOUBLE, const char *: CT_STR, default: CT_OTHER)
#define AT(where, type, field) \
    where, offsetof(struct type, field), CTYPE(((struct type *)0)->field), sizeof(((struct type *)0)->field)
#define CFG(field) AT(AT_CFG, config, field)
#define BEN(field) AT(AT_BENCH, bench_opts, field)
#define NOWHERE AT_NONE, 0, CT_NONE, 0

/* Each ends with a designated field, so that the rest of a row is zero without a warning. */
#define FLAG(field) OPT_FLAG, field, .set = NULL
#define LONG(field, lo, hi, what) OPT_LONG, field, .ilo = (lo), .ihi = (hi), .unit = (what)
#define DOUBLE(field, lo, hi, what) OPT_DOUBLE, field, .dlo = (lo), .dhi = (hi), .unit = (what)
#define STRING(field) OPT_STRING, field, .set = NULL
#define CUSTOM(f, field) OPT_CUSTOM, field, .set = (f) /* field: where its value is printed from, or NOWHERE */
#define ACTION OPT_ACTION, NOWHERE, .set = NULL
/* The marks: a worker process is sent it; bench sets it itself for each run (an option of both
 * commands without BENCH_OWN is passed on to bench's runs). */
#define TO_WORKER .worker = 1
#define BENCH_OWN .bench_own = 1

static int opt_strategy(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_concurrency(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_extensions(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_encoder(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_shard(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_latency_dist(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_duration(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_server(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_header(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_cacert(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static int opt_format(const struct config_option *, const char *, struct config_parse *, char *, size_t);
static const char *print_header(const struct config_option *, const struct config *, const struct bench_opts *, int,
                                char *, size_t);
static const char *print_strategy(const struct config_option *, const struct config *, const struct bench_opts *, int,
                                  char *, size_t);
static const char *print_extensions(const struct config_option *, const struct config *, const struct bench_opts *,
                                    int, char *, size_t);
static const char *print_encoder(const struct config_option *, const struct config *, const struct bench_opts *, int,
                                 char *, size_t);
static const char *print_concurrency(const struct config_option *, const struct config *, const struct bench_opts *,
                                     int, char *, size_t);

/* In the order of --help. */
const struct config_option CONFIG_OPTIONS[] = {
    {"out", "FILE", "- (stdout)", "write the results here (CSV, or JSON Lines for a name ending in .jsonl)", SCOPE_RUN,
     STRING(CFG(out)), TO_WORKER},
    {"format", "F", "by --out's name: .jsonl or .ndjson jsonl, else csv",
     "the results file's format: csv, or jsonl (one JSON object a line, results as JSON values)", SCOPE_RUN,
     CUSTOM(opt_format, NOWHERE)},
    {"files-from", "FILE", NULL,
     "instead of DIR: the images listed in FILE (- for standard input), one a line: local paths, s3:// and "
     "http(s):// URLs, mixed", SCOPE_RUN, STRING(CFG(files_from))},
    {"null", NULL, NULL, "-0: the --files-from list's entries end with a NUL byte, not a newline (find -print0)",
     SCOPE_RUN, FLAG(CFG(list_nul))},
    {"image-auth", NULL, NULL,
     "also send --header's headers to http(s) image URLs of --files-from, and verify them with --cacert "
     "(--insecure: not at all); by default an image host gets neither", SCOPE_RUN, FLAG(CFG(image_auth))},
    {"s3-max-keys", "N", "1000", "S3: keys a ListObjectsV2 page asks for", SCOPE_RUN,
     LONG(CFG(s3_max_keys), 1, 1000, "a number of keys")},
    {"server", "URL", "http://127.0.0.1:8080", "base URL that relative stage URLs are joined to", SCOPE_BOTH,
     CUSTOM(opt_server, CFG(server)), TO_WORKER, BENCH_OWN},
    {"config", "FILE", "the built-in seed chain", "pipeline file (JSON) defining the model chain", SCOPE_BOTH,
     STRING(CFG(config_file)), TO_WORKER},
    {"header", "'NAME: VALUE'", NULL,
     "an HTTP header for every stage (repeatable); ${VAR} and ${file:PATH} in VALUE are expanded; "
     "the pipeline file's own header of that name wins", SCOPE_BOTH,
     CUSTOM(opt_header, NOWHERE), .print = print_header},
    {"strategy", "S", "load=threads,query=curl-multi (a bucket: load=curl-multi)",
     "serial, threads, processes or curl-multi for every stage, or per stage: load=S,query=S", SCOPE_RUN,
     CUSTOM(opt_strategy, NOWHERE), .print = print_strategy, TO_WORKER},
    {"workers", "N", "8 per CPU", "threads or processes per parallel stage", SCOPE_BOTH,
     LONG(CFG(workers), 1, 4096, "a number"), TO_WORKER, BENCH_OWN},
    {"concurrency", "N|auto|LIST", "auto",
     "auto: every stage finds its own limit from its answers, and curl-multi's total follows the "
     "throughput; N: curl-multi's requests in flight in all, fixed (bench: a list 1,16,64,auto or a range 1-256)",
     SCOPE_BOTH, CUSTOM(opt_concurrency, CFG(concurrency)), .ilo = 1, .ihi = 100000, .unit = "a number",
     .print = print_concurrency, TO_WORKER, BENCH_OWN},
    {"loops", "N", "1", "curl-multi: event loops (threads) sharing --concurrency; more than 1 only helps with spare cores",
     SCOPE_BOTH, LONG(CFG(loops), 1, 256, "a number"), TO_WORKER, BENCH_OWN},
    {"queue-size", "N", "256", "capacity of each queue between stages", SCOPE_BOTH,
     LONG(CFG(queue_size), 1, 1 << 20, "a number"), TO_WORKER},
    {"timeout-ms", "MS", "30000", "per-request timeout", SCOPE_BOTH,
     LONG(CFG(timeout_ms), 1, 86400000, "milliseconds"), TO_WORKER},
    {"connect-timeout-ms", "MS", "5000", "connection timeout", SCOPE_BOTH,
     LONG(CFG(connect_timeout_ms), 1, 86400000, "milliseconds"), TO_WORKER},
    {"retries", "N", "3", "retries per request after connect errors, timeouts, 5xx, 429 and garbled answers", SCOPE_BOTH,
     LONG(CFG(retries), 0, 100, "a number"), TO_WORKER},
    {"backoff-ms", "MS", "100", "first retry's backoff ceiling; doubles each retry (full jitter)", SCOPE_BOTH,
     LONG(CFG(backoff_ms), 0, 3600000, "milliseconds"), TO_WORKER},
    {"backoff-max-ms", "MS", "10000", "largest backoff ceiling", SCOPE_BOTH,
     LONG(CFG(backoff_max_ms), 0, 3600000, "milliseconds"), TO_WORKER},
    /* Below 0.001 (one request in 17 minutes) a limit is a mistake, not a plan. */
    {"max-rps", "N", "0 (no limit)", "cap on requests per second across the whole run", SCOPE_BOTH,
     DOUBLE(CFG(max_rps), 0.001, 1e7, "requests per second"), .zero = "0 for no limit", TO_WORKER},
    {"max-image-bytes", "N", "67108864 (64 MiB)", "larger files get a failed row and are not sent", SCOPE_BOTH,
     LONG(CFG(max_image_bytes), 1, LONG_MAX, "a number of bytes"), TO_WORKER},
    {"max-answer-bytes", "N", "67108864 (64 MiB)",
     "a larger answer (per image of a batch) fails its image (not retried)", SCOPE_BOTH,
     LONG(CFG(max_answer_bytes), 1, 1L << 31, "a number of bytes"), TO_WORKER},
    {"max-memory", "N", "536870912 (512 MiB)",
     "bytes of images (base64, raw, prepared) and answers held at once, by the run and its worker processes "
     "together; loading waits beyond it, answers beyond it plus one answer's cap (0: no cap)", SCOPE_BOTH,
     LONG(CFG(max_memory), 1, LONG_MAX, "a number of bytes"), .zero = "0 for no cap", TO_WORKER},
    {"max-pixels", "N", "100000000 (100 MP)",
     "an image of more pixels (width x height, from its header) fails before it is decoded, when a stage "
     "prepares it", SCOPE_BOTH, LONG(CFG(max_pixels), 1, LONG_MAX, "a number of pixels"), TO_WORKER},
    {"load-threads", "N", "one per CPU when a stage prepares images, else --workers",
     "threads (or processes) that read, and prepare, images", SCOPE_BOTH,
     LONG(CFG(load_threads), 1, 4096, "a number"), .zero = "0 for the default", TO_WORKER},
    {"extensions", "LIST", "jpg,jpeg,png,gif,bmp,webp", "file extensions that count as images (any case)", SCOPE_BOTH,
     CUSTOM(opt_extensions, NOWHERE), .print = print_extensions},
    {"encoder", "NAME", "fast", "base64 encoder: fast or libb64 (the reference)", SCOPE_BOTH, CUSTOM(opt_encoder, CFG(encoder)),
     .print = print_encoder, TO_WORKER},
    {"resume", NULL, NULL, "continue a run: skip images that already have a row in --out, append the rest", SCOPE_RUN,
     FLAG(CFG(resume))},
    {"retry-failed", NULL, NULL, "with --resume, also re-run images whose row is failed (their old rows are removed)",
     SCOPE_RUN, FLAG(CFG(retry_failed))},
    {"force", NULL, NULL, "start --out afresh even when it holds rows (they are lost)", SCOPE_RUN, FLAG(CFG(force))},
    {"sync-every", "N", "1000", "fsync the CSV every N rows (0: only at the end)", SCOPE_RUN,
     LONG(CFG(sync_every), 1, LONG_MAX, "a number of rows"), .zero = "0 to sync only at the end"},
    {"drain-timeout-ms", "MS", "30000", "after Ctrl-C, how long the images in flight may take to finish", SCOPE_RUN,
     LONG(CFG(drain_timeout_ms), 0, 86400000, "milliseconds"), TO_WORKER},
    {"outage-timeout", "S", "300",
     "a stage whose server is down (refused, reset, timeouts, 429, 502-504) is retried this long before its images fail",
     SCOPE_BOTH, LONG(CFG(outage_timeout_s), 0, 604800, "seconds"), TO_WORKER},
    {"quiet", NULL, NULL, "no progress line and no summary", SCOPE_BOTH, FLAG(CFG(quiet)), TO_WORKER, BENCH_OWN},
    {"verbose", NULL, NULL, "the progress line also shows each stage's request p50 (as on a terminal of 120 columns or more)",
     SCOPE_RUN, FLAG(CFG(verbose))},
    {"progress-interval", "S", "10", "seconds between status lines when stderr is not a terminal", SCOPE_RUN,
     DOUBLE(CFG(progress_interval), 0.1, 86400, "seconds")},
    {"stats-json", "FILE", NULL, "write the end-of-run summary as JSON", SCOPE_RUN, STRING(CFG(stats_json))},
    {"cache", "FILE", NULL,
     "keep each ok answer in this store (SQLite, made 0600) by what was asked, and never ask a server a question "
     "it holds: copies, added stages, changed files, re-runs", SCOPE_RUN, STRING(CFG(cache)), TO_WORKER},
    {"insecure", NULL, NULL, "do not verify TLS certificates (prints a warning)", SCOPE_BOTH, FLAG(CFG(insecure)), TO_WORKER},
    {"cacert", "FILE", NULL, "CA bundle to verify TLS servers with", SCOPE_BOTH, CUSTOM(opt_cacert, CFG(cacert)), TO_WORKER},
    {"shard", "K/N", NULL, "take only shard K of N (0 <= K < N) by a hash of the path below DIR", SCOPE_RUN,
     CUSTOM(opt_shard, NOWHERE)},
    {"max-images", "N", NULL, "stop after N images (a trial run)", SCOPE_RUN,
     LONG(CFG(max_images), 1, LONG_MAX, "a number of images")},
    {"help", NULL, NULL, "show this help", SCOPE_BOTH, ACTION},
    {"version", NULL, NULL, "show the version", SCOPE_BOTH, ACTION},
    {"strategies", "LIST", "serial,threads,processes,curl-multi",
     "strategies to measure; per-stage ones with '+', e.g. load=threads+query=processes", SCOPE_BENCH,
     STRING(BEN(strategies))},
    {"latency-ms", "MS", "0", "latency the mock model server adds to each request", SCOPE_BENCH,
     LONG(BEN(latency_ms), 0, 600000, "milliseconds")},
    {"latency-dist", "D", "fixed", "fixed, uniform or exp", SCOPE_BENCH, CUSTOM(opt_latency_dist, NOWHERE)},
    {"duration", "S", "120", "measure each point until it settles, for at most this long (windows of --window s and of at least 1/--tolerance images), then stop its run within a second", SCOPE_BENCH,
     CUSTOM(opt_duration, NOWHERE), .dlo = 0.1, .dhi = 86400, .unit = "seconds"},
    {"limit", "N", NULL, "instead of --duration: run each point over the first N images", SCOPE_BENCH,
     LONG(BEN(limit), 1, LONG_MAX, "a number of images")},
    {"report", "FILE", "out/bench.json", "JSON report", SCOPE_BENCH, STRING(BEN(report))},
    {"chart", "FILE", "out/bench.svg", "SVG chart of throughput against concurrency", SCOPE_BENCH, STRING(BEN(chart))},
    {"mock", "FILE", "mock-model-server beside annotate", "the mock model server to start", SCOPE_BENCH,
     STRING(BEN(mock_bin))},
    {"trust-payload", NULL, NULL, "the mock skips decoding payloads (no-latency throughput mode)", SCOPE_BENCH,
     FLAG(BEN(trust_payload))},
    {"tolerance", "F", "0.1", "windows are stable when the last three agree within this fraction", SCOPE_BENCH,
     DOUBLE(BEN(tolerance), 0.001, 1, "a fraction")},
    {"max-windows", "N", "10", "give up waiting for stability after this many windows", SCOPE_BENCH,
     LONG(BEN(max_windows), 3, 1000, "a number")},
    {"window", "S", "1", "length of one measurement window in seconds", SCOPE_BENCH,
     DOUBLE(BEN(window_s), 0.1, 3600, "seconds")},
    {"capacity", "K", NULL, "the mock serves K requests at once per endpoint, the rest queue (a GPU server)",
     SCOPE_BENCH, LONG(BEN(capacity), 1, 1000000, "a number")},
    {"queue-max", "Q", "unlimited", "with --capacity: the mock answers 503 once Q requests wait", SCOPE_BENCH,
     LONG(BEN(queue_max), 0, 1000000, "a number")},
    {"sweep", NULL, NULL,
     "sweep each stage's \"concurrency\" in turn over --concurrency (default 1-256, doubling; the stages it "
     "needs on auto), print each one's knee, the bottleneck, and write the recommended pipeline to --recommend",
     SCOPE_BENCH, FLAG(BEN(sweep))},
    {"sweep-stages", "LIST", "every stage", "with --sweep: only these stages (comma-separated names)",
     SCOPE_BENCH, STRING(BEN(sweep_stages))},
    {"recommend", "FILE", "out/recommended.json",
     "with --sweep: the recommended pipeline file (give it to a run with --config)", SCOPE_BENCH,
     STRING(BEN(recommend))},
};

const int CONFIG_N_OPTIONS = (int)(sizeof CONFIG_OPTIONS / sizeof CONFIG_OPTIONS[0]);
_Static_assert(sizeof CONFIG_OPTIONS / sizeof CONFIG_OPTIONS[0] <= CONFIG_MAX_OPTIONS, "raise CONFIG_MAX_OPTIONS");

const struct config_option *config_option_named(const char *name, size_t len)
{
    for (int i = 0; i < CONFIG_N_OPTIONS; i++)
        if (strlen(CONFIG_OPTIONS[i].name) == len && !strncmp(CONFIG_OPTIONS[i].name, name, len))
            return &CONFIG_OPTIONS[i];
    return NULL;
}

/* ---- setting a value ---- */

/* A range end as a person writes it: 86400000, not 8.64e+07; 0.001, not 0.001000. */
static const char *num_text(double v, char *buf, size_t len)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%g", v);
    return buf;
}

/* "--timeout-ms 0: give milliseconds from 1 to 86400000", "--max-images x: not a whole number;
 * give a number of images, 1 or more", "--max-rps 1e-300: give requests per second from 0.001 to
 * 10000000, or 0 for no limit". */
static int range_error(const struct config_option *o, const char *arg, int whole, int not_number, char *err,
                       size_t errlen)
{
    char lo[32], hi[32], range[96];
    if (whole && o->ihi == LONG_MAX)
        snprintf(range, sizeof range, ", %ld or more", o->ilo);
    else if (whole)
        snprintf(range, sizeof range, " from %ld to %ld", o->ilo, o->ihi);
    else
        snprintf(range, sizeof range, " from %s to %s", num_text(o->dlo, lo, sizeof lo), num_text(o->dhi, hi, sizeof hi));
    return config_fail(err, errlen, "--%s %s: %sgive %s%s%s%s", o->name, arg,
                       not_number ? (whole ? "not a whole number; " : "not a number; ") : "", o->unit, range,
                       o->zero ? ", or " : "", o->zero ? o->zero : "");
}

static int parse_long_opt(const struct config_option *o, const char *s, long *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return range_error(o, s, 1, 1, err, errlen);
    if (errno || ((v < o->ilo || v > o->ihi) && !(o->zero && v == 0)))
        return range_error(o, s, 1, 0, err, errlen);
    *out = v;
    return 0;
}

static int parse_double_opt(const struct config_option *o, const char *s, double *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end)
        return range_error(o, s, 0, 1, err, errlen);
    /* errno: an underflow (1e-400) is out of range, not zero; NaN fails both comparisons. */
    if (errno || (!(v >= o->dlo && v <= o->dhi) && !(o->zero && v == 0)))
        return range_error(o, s, 0, 0, err, errlen);
    *out = v;
    return 0;
}

static void *field_of(const struct config_option *o, struct config_parse *ps)
{
    char *base = o->where == AT_CFG ? (char *)ps->cfg : o->where == AT_BENCH ? (char *)ps->bench : NULL;
    return base ? base + o->off : NULL;
}

/* The one parser of flags, numbers and strings: everything it needs is in the row. */
int config_set(const struct config_option *o, const char *arg, struct config_parse *ps, char *err, size_t errlen)
{
    void *f = field_of(o, ps);
    long v;
    if (o->type == OPT_ACTION)
        return 1;
    if (o->type == OPT_CUSTOM)
        return o->set(o, arg, ps, err, errlen);
    if (!f) /* a bench field while parsing a run: the option is not in this scope */
        return config_fail(err, errlen, "--%s: not an option here; see annotate --help", o->name);
    switch (o->type) {
    case OPT_FLAG:
        *(int *)f = 1;
        return 0;
    case OPT_STRING:
        *(const char **)f = arg;
        return 0;
    case OPT_DOUBLE:
        return parse_double_opt(o, arg, (double *)f, err, errlen);
    case OPT_LONG:
        if (parse_long_opt(o, arg, &v, err, errlen))
            return -1;
        switch (o->ctype) {
        case CT_INT: *(int *)f = (int)v; break;         /* the range fits: see config_table_error */
        case CT_LONG: *(long *)f = v; break;
        case CT_ULONG: *(unsigned long *)f = (unsigned long)v; break;
        case CT_ULLONG: *(unsigned long long *)f = (unsigned long long)v; break;
        default: return config_fail(err, errlen, "--%s: bad option table entry (a bug)", o->name);
        }
        return 0;
    default:
        break;
    }
    return config_fail(err, errlen, "--%s: bad option table entry (a bug)", o->name);
}

/* ---- the options that are more than a number ---- */

/* "curl-multi" or "load=processes,query=curl-multi". */
static int opt_strategy(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                        size_t errlen)
{
    (void)o;
    struct config *cfg = ps->cfg;
    enum strategy s;
    if (!strchr(arg, '=')) {
        if (strategy_from_name(arg, &s))
            return config_fail(err, errlen, "--strategy %s: unknown strategy; use serial, threads, processes or curl-multi",
                               arg);
        cfg->query = s;
        cfg->load = s == STRAT_CURL_MULTI ? STRAT_THREADS : s;
        cfg->load_auto = s == STRAT_CURL_MULTI;
        return 0;
    }
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return config_fail(err, errlen, "out of memory");
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = config_fail(err, errlen, "--strategy %s: expected STAGE=STRATEGY pairs, e.g. load=threads,query=curl-multi",
                             arg);
            break;
        }
        *eq = 0;
        const char *stage = tok, *val = eq + 1;
        if (strategy_from_name(val, &s)) {
            rc = config_fail(err, errlen, "--strategy: unknown strategy \"%s\" for %s; use serial, threads, processes or curl-multi",
                             val, stage);
        } else if (!strcmp(stage, "load")) {
            cfg->load = s; /* curl-multi: fetches (S3, image URLs); refused for a folder (cli.c) */
            cfg->load_auto = 0;
        } else if (!strcmp(stage, "query")) {
            cfg->query = s;
        } else if (!strcmp(stage, "scan") || !strcmp(stage, "write")) {
            if (s != STRAT_SERIAL)
                rc = config_fail(err, errlen, "--strategy %s=%s: the %s stage always runs in one thread (%s); set load and query instead",
                                 stage, val, stage, !strcmp(stage, "scan") ? "a directory walk is sequential" : "rows go to one file");
        } else {
            rc = config_fail(err, errlen, "--strategy: unknown stage \"%s\"; the stages are scan, load, query and write", stage);
        }
    }
    free(copy);
    return rc;
}

/* bench's --concurrency: a list 1,16,64 or a doubling range 1-256 of numbers in o's range, with
 * "auto" among the list's; 0 or -1 with err. */
static int check_concurrency_list(const struct config_option *o, const char *arg, char *err, size_t errlen)
{
    long lo, hi, v;
    int n;
    if (sscanf(arg, "%ld-%ld%n", &lo, &hi, &n) == 2 && arg[n] == 0) {
        if (lo < o->ilo || hi > o->ihi || hi < lo)
            return config_fail(err, errlen, "--concurrency %s: a range LO-HI needs %ld <= LO <= HI <= %ld", arg, o->ilo,
                               o->ihi);
        return 0;
    }
    const char *c = arg;
    do {
        char *end;
        errno = 0;
        if (!strncmp(c, "auto", 4) && (c[4] == ',' || !c[4])) { /* an adaptive point */
            c += c[4] ? 5 : 4;
            continue;
        }
        v = strtol(c, &end, 10);
        if (end == c || (*end && *end != ',') || errno || v < o->ilo || v > o->ihi)
            return config_fail(err, errlen, "--concurrency %s: give a list (1,16,64,auto) or a range (1-256) of numbers from %ld to %ld",
                               arg, o->ilo, o->ihi);
        c = *end ? end + 1 : end;
    } while (*c);
    if (arg[strlen(arg) - 1] == ',')
        return config_fail(err, errlen, "--concurrency %s: give a list (1,16,64) or a range (1-256) of numbers from %ld to %ld",
                           arg, o->ilo, o->ihi);
    return 0;
}

/* A run: one number (the row's range), or auto. The benchmark: a list or a range of them, kept
 * as text for bench, but checked here so that a typo exits 2 before a mock server is started. */
static int opt_concurrency(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                           size_t errlen)
{
    long v;
    if (ps->bench) {
        if (check_concurrency_list(o, arg, err, errlen))
            return -1;
        ps->bench->concurrency = arg;
        return 0;
    }
    if (!strcmp(arg, "auto")) {
        /* Every stage finds its own limit (limit.h), inside this total. */
        ps->cfg->concurrency = LIMIT_AUTO_TOTAL;
        ps->cfg->concurrency_auto = 1;
        return 0;
    }
    if (parse_long_opt(o, arg, &v, err, errlen))
        return -1;
    ps->cfg->concurrency = (int)v;
    ps->cfg->concurrency_auto = 0;
    return 0;
}

static int opt_extensions(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                          size_t errlen)
{
    (void)o;
    if (ps->bench)
        ps->bench->extensions = arg; /* the text, for the runs bench starts (the last one counts) */
    free(ps->cfg->ext_storage);
    ps->cfg->ext_storage = NULL;
    return scan_parse_exts(arg, &ps->cfg->scan, &ps->cfg->ext_storage, err, errlen) ? -1 : 0;
}

static int opt_encoder(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                       size_t errlen)
{
    (void)o;
    if (b64_encoder_from_name(arg, &ps->cfg->encoder))
        return config_fail(err, errlen, "--encoder %s: use fast or libb64", arg);
    return 0;
}

static int opt_shard(const struct config_option *o, const char *arg, struct config_parse *ps, char *err, size_t errlen)
{
    (void)o;
    long k, nn;
    char extra;
    if (sscanf(arg, "%ld/%ld%c", &k, &nn, &extra) != 2 || nn < 1 || nn > 1000000 || k < 0 || k >= nn)
        return config_fail(err, errlen, "--shard %s: give K/N with 0 <= K < N <= 1000000, e.g. --shard 0/4", arg);
    ps->cfg->shard_k = (int)k;
    ps->cfg->shard_n = (int)nn;
    return 0;
}

static int opt_latency_dist(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                            size_t errlen)
{
    (void)o;
    if (strcmp(arg, "fixed") && strcmp(arg, "uniform") && strcmp(arg, "exp"))
        return config_fail(err, errlen, "--latency-dist %s: use fixed, uniform or exp", arg);
    ps->bench->latency_dist = arg;
    return 0;
}

/* A number of seconds, like any other, except that it replaces an earlier --limit. */
static int opt_duration(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                        size_t errlen)
{
    if (parse_double_opt(o, arg, &ps->bench->duration_s, err, errlen))
        return -1;
    ps->bench->limit = 0;
    return 0;
}

/* Checked here, so that a bad --server is blamed on --server, not on the first stage of the
 * pipeline file whose URL it would be joined to. */
static int opt_server(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                      size_t errlen)
{
    (void)o;
    char why[160], buf[256];
    if (pipeline_check_base(arg, why, sizeof why))
        return config_fail(err, errlen, "--server \"%s\": %s, e.g. --server http://models.internal:8080",
                           pipeline_printable(arg, buf, sizeof buf), why);
    ps->cfg->server = arg;
    if (ps->bench)
        ps->bench->server_given = 1;
    return 0;
}

/* Collected until the pipeline is loaded; the value is never shown (see pipeline_add_header). */
static int opt_header(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                      size_t errlen)
{
    if (!ps->headers)
        return config_fail(err, errlen, "--%s: not an option here", o->name);
    ps->headers[ps->n_headers++] = arg; /* room for one per word: see config_parse */
    return 0;
}

/* A file curl can read, checked now: curl would fail every request, one image at a time. */
static int opt_cacert(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                      size_t errlen)
{
    (void)o;
    struct stat st;
    if (ps->from_parent) {
        ps->cfg->cacert = arg;
        return 0;
    }
    int fd = open(arg, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return config_fail(err, errlen, "--cacert %s: cannot read it: %s", arg, strerror(e));
    }
    close(fd);
    if (S_ISDIR(st.st_mode))
        return config_fail(err, errlen, "--cacert %s: is a directory; give the CA bundle file (PEM) itself", arg);
    ps->cfg->cacert = arg;
    return 0;
}

/* csv or jsonl (results/resume.h's formats, by name). */
static int opt_format(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                      size_t errlen)
{
    (void)o;
    if (strcmp(arg, "csv") && strcmp(arg, "jsonl"))
        return config_fail(err, errlen, "--format %s: use csv or jsonl", arg);
    ps->cfg->format = !strcmp(arg, "jsonl") ? RESULTS_JSONL : RESULTS_CSV;
    ps->cfg->format_given = 1;
    return 0;
}

/* ---- writing a value back ---- */

/* The shortest text strtod reads back as v. */
static const char *double_text(double v, char *buf, size_t len)
{
    for (int digits = 15; digits < 17; digits++) {
        snprintf(buf, len, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return buf;
    }
    snprintf(buf, len, "%.17g", v);
    return buf;
}

/* The printer of each type: a field as the parser reads it. */
static const char *field_text(const struct config_option *o, const void *f, char *buf, size_t len)
{
    if (o->type == OPT_FLAG)
        return *(const int *)f ? "" : NULL;
    switch (o->ctype) {
    case CT_INT: snprintf(buf, len, "%d", *(const int *)f); return buf;
    case CT_LONG: snprintf(buf, len, "%ld", *(const long *)f); return buf;
    case CT_ULONG: snprintf(buf, len, "%lu", *(const unsigned long *)f); return buf;
    case CT_ULLONG: snprintf(buf, len, "%llu", *(const unsigned long long *)f); return buf;
    case CT_DOUBLE: return double_text(*(const double *)f, buf, len);
    case CT_STR: return *(const char *const *)f;
    default: return NULL;
    }
}

static const void *field_in(const struct config_option *o, const struct config *cfg, const struct bench_opts *b)
{
    const char *base = o->where == AT_CFG ? (const char *)cfg : o->where == AT_BENCH ? (const char *)b : NULL;
    return base ? base + o->off : NULL;
}

const char *config_value(const struct config_option *o, const struct config *cfg, const struct bench_opts *b, int k,
                         char *buf, size_t len)
{
    if (o->print)
        return o->print(o, cfg, b, k, buf, len);
    const void *f = field_in(o, cfg, b);
    return k == 0 && f && o->type != OPT_ACTION ? field_text(o, f, buf, len) : NULL;
}

/* Each line as given (its ${VAR}s unexpanded: the run expands them itself). */
static const char *print_header(const struct config_option *o, const struct config *cfg, const struct bench_opts *b,
                                int k, char *buf, size_t len)
{
    (void)o;
    (void)cfg;
    (void)buf;
    (void)len;
    return b && k < b->n_headers ? b->headers[k] : NULL;
}

static const char *print_strategy(const struct config_option *o, const struct config *cfg, const struct bench_opts *b,
                                  int k, char *buf, size_t len)
{
    (void)o;
    (void)b;
    if (k)
        return NULL;
    snprintf(buf, len, "load=%s,query=%s", strategy_name(cfg->load), strategy_name(cfg->query));
    return buf;
}

static const char *print_extensions(const struct config_option *o, const struct config *cfg,
                                    const struct bench_opts *b, int k, char *buf, size_t len)
{
    (void)o;
    (void)cfg;
    (void)buf;
    (void)len;
    return b && !k ? b->extensions : NULL;
}

static const char *print_encoder(const struct config_option *o, const struct config *cfg, const struct bench_opts *b,
                                 int k, char *buf, size_t len)
{
    (void)o;
    (void)b;
    (void)buf;
    (void)len;
    return k ? NULL : b64_encoder_name(cfg->encoder);
}

/* A run's: auto, or the number (bench's list is its own: BENCH_OWN). */
static const char *print_concurrency(const struct config_option *o, const struct config *cfg,
                                     const struct bench_opts *b, int k, char *buf, size_t len)
{
    (void)o;
    (void)b;
    if (k)
        return NULL;
    if (cfg->concurrency_auto)
        return "auto";
    snprintf(buf, len, "%d", cfg->concurrency);
    return buf;
}

/* ---- the table's own consistency ---- */

static int printable(const struct config_option *o)
{
    return o->print || (o->where != AT_NONE && o->ctype != CT_NONE && o->ctype != CT_OTHER);
}

/* The row's type against the C type of its field, and its range against what the field holds. */
static int row_consistent(const struct config_option *o)
{
    if (!o->name || !o->help)
        return 0;
    switch (o->type) {
    case OPT_FLAG: return o->ctype == CT_INT && !o->arg;
    case OPT_STRING: return o->ctype == CT_STR && o->arg;
    case OPT_DOUBLE: return o->ctype == CT_DOUBLE && o->arg && o->unit && o->dlo <= o->dhi;
    case OPT_LONG:
        return o->arg && o->unit && o->ilo <= o->ihi &&
               (o->ctype == CT_LONG || (o->ctype == CT_INT && o->ilo >= INT_MIN && o->ihi <= INT_MAX) ||
                ((o->ctype == CT_ULONG || o->ctype == CT_ULLONG) && o->ilo >= 0));
    case OPT_CUSTOM: return o->set != NULL;
    case OPT_ACTION: return !o->arg && !o->worker;
    }
    return 0;
}

/* A mistake here is a bug, caught by the first test run rather than by a user whose value was
 * silently truncated, or dropped on its way to a worker or to the runs bench starts. */
int config_table_error(char *err, size_t errlen)
{
    for (int i = 0; i < CONFIG_N_OPTIONS; i++) {
        const struct config_option *o = &CONFIG_OPTIONS[i];
        if (!row_consistent(o))
            return config_fail(err, errlen, "option table: the row of --%s is inconsistent (a bug)", o->name ? o->name : "?");
        if (o->scope == SCOPE_BOTH && o->type != OPT_ACTION && !o->bench_own && !printable(o))
            return config_fail(err, errlen, "option table: --%s is an option of annotate bench, but bench can neither pass "
                                            "it on to its runs nor sets it itself (a bug: give its row a field or a printer)",
                               o->name);
        if (o->worker && (o->scope == SCOPE_BENCH || !(o->print || (o->where == AT_CFG && printable(o)))))
            return config_fail(err, errlen, "option table: --%s is sent to worker processes, but cannot be written from "
                                            "struct config (a bug)", o->name);
    }
    return 0;
}

/* ---- the configuration as a command line ---- */

void config_argv_reset(struct config_argv *a)
{
    a->argc = 0;
    a->used = 0;
    a->bad = 0;
    a->argv[0] = NULL;
}

void config_argv_add(struct config_argv *a, const char *word)
{
    if (!word || a->argc + 1 >= (int)(sizeof a->argv / sizeof a->argv[0])) {
        a->bad = 1;
        return;
    }
    a->argv[a->argc++] = word;
    a->argv[a->argc] = NULL;
}

/* A formatted word, kept in a->store. */
void config_argv_addf(struct config_argv *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof a->store - a->used;
    int n = vsnprintf(a->store + a->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        a->bad = 1;
        return;
    }
    config_argv_add(a, a->store + a->used);
    a->used += (size_t)n + 1;
}

/* Whether o's values in (cfg, b) are other than in the defaults (d, db). */
static int differs(const struct config_option *o, const struct config *cfg, const struct bench_opts *b,
                   const struct config *d, const struct bench_opts *db)
{
    for (int k = 0;; k++) {
        char x[64], y[64];
        const char *v = config_value(o, cfg, b, k, x, sizeof x), *dv = config_value(o, d, b ? db : NULL, k, y, sizeof y);
        if (!v || !dv)
            return v != dv;
        if (strcmp(v, dv))
            return 1;
    }
}

/* "--NAME VALUE" for each of o's values ("--NAME" for a flag that is set). */
static void put_option(const struct config_option *o, const struct config *cfg, const struct bench_opts *b,
                       struct config_argv *a)
{
    for (int k = 0;; k++) {
        char buf[64];
        const char *v = config_value(o, cfg, b, k, buf, sizeof buf);
        if (!v)
            return;
        config_argv_addf(a, "--%s", o->name);
        if (o->arg && v == buf)
            config_argv_addf(a, "%s", v);
        else if (o->arg)
            config_argv_add(a, v);
    }
}

int config_args(const struct config *cfg, const struct bench_opts *b, enum config_for to, struct config_argv *a)
{
    struct config d;
    struct bench_opts db;
    config_defaults(&d, &db);
    for (int i = 0; i < CONFIG_N_OPTIONS; i++) {
        const struct config_option *o = &CONFIG_OPTIONS[i];
        int want = to == CONFIG_FOR_WORKER ? o->worker
                                           : o->scope == SCOPE_BOTH && o->type != OPT_ACTION && !o->bench_own &&
                                                 differs(o, cfg, b, &d, &db);
        if (want)
            put_option(o, cfg, b, a);
    }
    return a->bad ? -1 : 0;
}

int config_apply_args(const char *const *words, int n, struct config_parse *ps, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        const char *w = words[i];
        const struct config_option *o = strncmp(w, "--", 2) ? NULL : config_option_named(w + 2, strlen(w + 2));
        if (!o || o->scope == SCOPE_BENCH || o->type == OPT_ACTION)
            return config_fail(err, errlen, "%s: not an option of a run", w);
        if (o->arg && i + 1 == n)
            return config_fail(err, errlen, "--%s needs a value", o->name);
        if (config_set(o, o->arg ? words[++i] : NULL, ps, err, errlen))
            return -1;
    }
    return 0;
}
