/* cli: see cli.h. Every option is one row of OPTS: its name, metavar, default and help (for
 * --help), where it is stored (an offsetof into struct config or struct bench_opts), its type and
 * its range. One parser (set_value) handles the flags, numbers and strings from the row alone and
 * writes the error message from it, so the range in a message cannot drift from the range
 * enforced. Options whose value is more than a number (--strategy, --shard, ...) keep a small
 * function each. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "endpoint/limit.h"

enum opt_id {
    O_OUT, O_SERVER, O_CONFIG, O_HEADER, O_STRATEGY, O_WORKERS, O_CONCURRENCY, O_LOOPS, O_QUEUE, O_TIMEOUT,
    O_CONNECT_TIMEOUT, O_RETRIES, O_BACKOFF, O_BACKOFF_MAX, O_MAX_RPS, O_MAX_BYTES, O_MAX_ANSWER, O_MAX_MEMORY, O_EXTS, O_ENCODER,
    O_RESUME, O_RETRY_FAILED, O_FORCE, O_SYNC_EVERY, O_DRAIN, O_OUTAGE, O_QUIET, O_VERBOSE, O_PROGRESS, O_STATS_JSON, O_INSECURE,
    O_CACERT, O_SHARD, O_LIMIT_RUN, O_HELP, O_VERSION,
    /* bench only */
    O_STRATEGIES, O_LATENCY, O_LATENCY_DIST, O_DURATION, O_LIMIT, O_REPORT, O_CHART, O_MOCK_BIN,
    O_TRUST, O_TOLERANCE, O_WINDOWS, O_WINDOW, O_CAPACITY, O_QUEUE_MAX, O_SWEEP, O_SWEEP_STAGES, O_RECOMMEND, O__N
};

enum opt_scope { RUN, BENCH, BOTH }; /* annotate DIR, annotate bench DIR, or both */
enum opt_type { OT_FLAG, OT_LONG, OT_DOUBLE, OT_STRING, OT_CUSTOM };
enum opt_where { W_NONE, W_CFG, W_BENCH };
/* The C type of the field an option sets, found by _Generic from the field itself, so that a
 * row cannot claim an int is a long. */
enum opt_ctype { C_NONE, C_INT, C_LONG, C_ULONG, C_ULLONG, C_DOUBLE, C_STR, C_OTHER };
#define CTYPE(x)                                                                                  \
    _Generic((x), int: C_INT, long: C_LONG, unsigned long: C_ULONG, unsigned long long: C_ULLONG, \
             double: C_DOUBLE, const char *: C_STR, default: C_OTHER)
#define CFG(field) W_CFG, offsetof(struct config, field), CTYPE(((struct config *)0)->field)
#define BEN(field) W_BENCH, offsetof(struct bench_opts, field), CTYPE(((struct bench_opts *)0)->field)
#define NOWHERE W_NONE, 0, C_NONE

/* What the custom functions see: the two structs being filled, and the --header lines met so
 * far (they are added to the pipeline once it is loaded). */
struct parse {
    struct config *cfg;
    struct bench_opts *bench; /* NULL for a run */
    const char **headers;
    int n_headers;
};

struct opt;
/* Returns 0, 1 (--help, --version: done, exit 0) or -1 with err. */
typedef int (*opt_fn)(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen);

struct opt {
    const char *name;
    const char *arg;   /* metavar, or NULL for a flag */
    const char *def;   /* default as shown in --help, or NULL */
    const char *help;
    enum opt_scope scope;
    enum opt_type type;
    enum opt_where where;
    size_t off;        /* of the field in struct config or struct bench_opts */
    enum opt_ctype ctype;
    long ilo, ihi;     /* OT_LONG: the range; ihi LONG_MAX: no upper bound */
    double dlo, dhi;   /* OT_DOUBLE: the range */
    const char *unit;  /* what to give, for the message: "a number", "milliseconds" */
    const char *zero;  /* when set, 0 is accepted besides the range, meaning this ("0 for no limit") */
    opt_fn fn;         /* OT_CUSTOM */
};

static int opt_strategy(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_concurrency(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_extensions(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_encoder(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_shard(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_latency_dist(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_duration(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_server(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_header(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_cacert(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_help(const struct opt *, const char *, struct parse *, char *, size_t);
static int opt_version(const struct opt *, const char *, struct parse *, char *, size_t);

/* Each ends with a designated field, so that the rest of a row is zero without a warning. */
#define FLAG(field) OT_FLAG, field, .fn = NULL
#define LONG(field, lo, hi, what) OT_LONG, field, .ilo = (lo), .ihi = (hi), .unit = (what)
#define DOUBLE(field, lo, hi, what) OT_DOUBLE, field, .dlo = (lo), .dhi = (hi), .unit = (what)
#define STRING(field) OT_STRING, field, .fn = NULL
#define CUSTOM(f) OT_CUSTOM, NOWHERE, .fn = (f)

static const struct opt OPTS[O__N] = {
    [O_OUT] = {"out", "FILE", "- (stdout)", "write the CSV here", RUN, STRING(CFG(out))},
    [O_SERVER] = {"server", "URL", "http://127.0.0.1:8080", "base URL that relative stage URLs are joined to", BOTH,
                  CUSTOM(opt_server)},
    [O_CONFIG] = {"config", "FILE", "the built-in seed chain", "pipeline file (JSON) defining the model chain", BOTH,
                  STRING(CFG(config_file))},
    /* bench passes every option of scope BOTH on to the runs it starts (bench_takes_option). */
    [O_HEADER] = {"header", "'NAME: VALUE'", NULL,
                  "an HTTP header for every stage (repeatable); ${VAR} and ${file:PATH} in VALUE are expanded; "
                  "the pipeline file's own header of that name wins", BOTH,
                  CUSTOM(opt_header)},
    [O_STRATEGY] = {"strategy", "S", "load=threads,query=curl-multi",
                    "serial, threads, processes or curl-multi for every stage, or per stage: load=S,query=S", RUN,
                    CUSTOM(opt_strategy)},
    [O_WORKERS] = {"workers", "N", "8 per CPU", "threads or processes per parallel stage", BOTH,
                   LONG(CFG(workers), 1, 4096, "a number")},
    [O_CONCURRENCY] = {"concurrency", "N|auto|LIST", "64",
                       "curl-multi: requests in flight in all; auto: every stage finds its own limit "
                       "(bench: a list 1,16,64,auto or a range 1-256)",
                       BOTH, CUSTOM(opt_concurrency), .ilo = 1, .ihi = 100000, .unit = "a number"},
    [O_LOOPS] = {"loops", "N", "1", "curl-multi: event loops (threads) sharing --concurrency; more than 1 only helps with spare cores",
                 BOTH, LONG(CFG(loops), 1, 256, "a number")},
    [O_QUEUE] = {"queue-size", "N", "256", "capacity of each queue between stages", BOTH,
                 LONG(CFG(queue_size), 1, 1 << 20, "a number")},
    [O_TIMEOUT] = {"timeout-ms", "MS", "30000", "per-request timeout", BOTH,
                   LONG(CFG(timeout_ms), 1, 86400000, "milliseconds")},
    [O_CONNECT_TIMEOUT] = {"connect-timeout-ms", "MS", "5000", "connection timeout", BOTH,
                           LONG(CFG(connect_timeout_ms), 1, 86400000, "milliseconds")},
    [O_RETRIES] = {"retries", "N", "3", "retries per request after connect errors, timeouts, 5xx, 429 and garbled answers", BOTH,
                   LONG(CFG(retries), 0, 100, "a number")},
    [O_BACKOFF] = {"backoff-ms", "MS", "100", "first retry's backoff ceiling; doubles each retry (full jitter)", BOTH,
                   LONG(CFG(backoff_ms), 0, 3600000, "milliseconds")},
    [O_BACKOFF_MAX] = {"backoff-max-ms", "MS", "10000", "largest backoff ceiling", BOTH,
                       LONG(CFG(backoff_max_ms), 0, 3600000, "milliseconds")},
    /* Below 0.001 (one request in 17 minutes) a limit is a mistake, not a plan. */
    [O_MAX_RPS] = {"max-rps", "N", "0 (no limit)", "cap on requests per second across the whole run", BOTH,
                   DOUBLE(CFG(max_rps), 0.001, 1e7, "requests per second"), .zero = "0 for no limit"},
    [O_MAX_BYTES] = {"max-image-bytes", "N", "67108864 (64 MiB)", "larger files get a failed row and are not sent", BOTH,
                     LONG(CFG(max_image_bytes), 1, LONG_MAX, "a number of bytes")},
    [O_MAX_ANSWER] = {"max-answer-bytes", "N", "67108864 (64 MiB)",
                      "a larger answer (per image of a batch) fails its image (not retried)", BOTH,
                      LONG(CFG(max_answer_bytes), 1, 1L << 31, "a number of bytes")},
    [O_MAX_MEMORY] = {"max-memory", "N", "536870912 (512 MiB)",
                      "bytes of images (base64 and raw) held at once; loading waits beyond it (0: no cap)", BOTH,
                      LONG(CFG(max_memory), 1, LONG_MAX, "a number of bytes"), .zero = "0 for no cap"},
    [O_EXTS] = {"extensions", "LIST", "jpg,jpeg,png,gif,bmp,webp", "file extensions that count as images (any case)", BOTH,
                CUSTOM(opt_extensions)},
    [O_ENCODER] = {"encoder", "NAME", "fast", "base64 encoder: fast or libb64 (the reference)", BOTH, CUSTOM(opt_encoder)},
    [O_RESUME] = {"resume", NULL, NULL, "continue a run: skip images that already have a row in --out, append the rest", RUN,
                  FLAG(CFG(resume))},
    [O_RETRY_FAILED] = {"retry-failed", NULL, NULL, "with --resume, also re-run images whose row is failed (their old rows are removed)",
                        RUN, FLAG(CFG(retry_failed))},
    [O_FORCE] = {"force", NULL, NULL, "start --out afresh even when it holds rows (they are lost)", RUN, FLAG(CFG(force))},
    [O_SYNC_EVERY] = {"sync-every", "N", "1000", "fsync the CSV every N rows (0: only at the end)", RUN,
                      LONG(CFG(sync_every), 1, LONG_MAX, "a number of rows"), .zero = "0 to sync only at the end"},
    [O_DRAIN] = {"drain-timeout-ms", "MS", "30000", "after Ctrl-C, how long the images in flight may take to finish", RUN,
                 LONG(CFG(drain_timeout_ms), 0, 86400000, "milliseconds")},
    [O_OUTAGE] = {"outage-timeout", "S", "300",
                  "a stage whose server is down (refused, reset, timeouts, 429, 502-504) is retried this long before its images fail",
                  BOTH, LONG(CFG(outage_timeout_s), 0, 604800, "seconds")},
    [O_QUIET] = {"quiet", NULL, NULL, "no progress line and no summary", BOTH, FLAG(CFG(quiet))},
    [O_VERBOSE] = {"verbose", NULL, NULL, "the progress line also shows each stage's request p50 (as on a terminal of 120 columns or more)",
                   RUN, FLAG(CFG(verbose))},
    [O_PROGRESS] = {"progress-interval", "S", "10", "seconds between status lines when stderr is not a terminal", RUN,
                    DOUBLE(CFG(progress_interval), 0.1, 86400, "seconds")},
    [O_STATS_JSON] = {"stats-json", "FILE", NULL, "write the end-of-run summary as JSON", RUN, STRING(CFG(stats_json))},
    [O_INSECURE] = {"insecure", NULL, NULL, "do not verify TLS certificates (prints a warning)", BOTH, FLAG(CFG(insecure))},
    [O_CACERT] = {"cacert", "FILE", NULL, "CA bundle to verify TLS servers with", BOTH, CUSTOM(opt_cacert)},
    [O_SHARD] = {"shard", "K/N", NULL, "take only shard K of N (0 <= K < N) by a hash of the path below DIR", RUN,
                 CUSTOM(opt_shard)},
    [O_LIMIT_RUN] = {"max-images", "N", NULL, "stop after N images (a trial run)", RUN,
                     LONG(CFG(max_images), 1, LONG_MAX, "a number of images")},
    [O_HELP] = {"help", NULL, NULL, "show this help", BOTH, CUSTOM(opt_help)},
    [O_VERSION] = {"version", NULL, NULL, "show the version", BOTH, CUSTOM(opt_version)},
    [O_STRATEGIES] = {"strategies", "LIST", "serial,threads,processes,curl-multi",
                      "strategies to measure; per-stage ones with '+', e.g. load=threads+query=processes", BENCH,
                      STRING(BEN(strategies))},
    [O_LATENCY] = {"latency-ms", "MS", "0", "latency the mock model server adds to each request", BENCH,
                   LONG(BEN(latency_ms), 0, 600000, "milliseconds")},
    [O_LATENCY_DIST] = {"latency-dist", "D", "fixed", "fixed, uniform or exp", BENCH, CUSTOM(opt_latency_dist)},
    [O_DURATION] = {"duration", "S", "10", "measure each point for at most this long (windows of --window s), then stop its run within a second", BENCH,
                    CUSTOM(opt_duration), .dlo = 0.1, .dhi = 86400, .unit = "seconds"},
    [O_LIMIT] = {"limit", "N", NULL, "instead of --duration: run each point over the first N images", BENCH,
                 LONG(BEN(limit), 1, LONG_MAX, "a number of images")},
    [O_REPORT] = {"report", "FILE", "out/bench.json", "JSON report", BENCH, STRING(BEN(report))},
    [O_CHART] = {"chart", "FILE", "out/bench.svg", "SVG chart of throughput against concurrency", BENCH, STRING(BEN(chart))},
    [O_MOCK_BIN] = {"mock", "FILE", "mock-model-server beside annotate", "the mock model server to start", BENCH,
                    STRING(BEN(mock_bin))},
    [O_TRUST] = {"trust-payload", NULL, NULL, "the mock skips decoding payloads (no-latency throughput mode)", BENCH,
                 FLAG(BEN(trust_payload))},
    [O_TOLERANCE] = {"tolerance", "F", "0.1", "windows are stable when the last three agree within this fraction", BENCH,
                     DOUBLE(BEN(tolerance), 0.001, 1, "a fraction")},
    [O_WINDOWS] = {"max-windows", "N", "10", "give up waiting for stability after this many windows", BENCH,
                   LONG(BEN(max_windows), 3, 1000, "a number")},
    [O_WINDOW] = {"window", "S", "1", "length of one measurement window in seconds", BENCH,
                  DOUBLE(BEN(window_s), 0.1, 3600, "seconds")},
    [O_CAPACITY] = {"capacity", "K", NULL, "the mock serves K requests at once per endpoint, the rest queue (a GPU server)",
                    BENCH, LONG(BEN(capacity), 1, 1000000, "a number")},
    [O_QUEUE_MAX] = {"queue-max", "Q", "unlimited", "with --capacity: the mock answers 503 once Q requests wait", BENCH,
                     LONG(BEN(queue_max), 0, 1000000, "a number")},
    [O_SWEEP] = {"sweep", NULL, NULL,
                 "sweep each stage's \"concurrency\" in turn over --concurrency (default 1-256, doubling; the stages it "
                 "needs on auto), print each one's knee, the bottleneck, and write the recommended pipeline to --recommend",
                 BENCH, FLAG(BEN(sweep))},
    [O_SWEEP_STAGES] = {"sweep-stages", "LIST", "every stage", "with --sweep: only these stages (comma-separated names)",
                        BENCH, STRING(BEN(sweep_stages))},
    [O_RECOMMEND] = {"recommend", "FILE", "out/recommended.json",
                     "with --sweep: the recommended pipeline file (give it to a run with --config)", BENCH,
                     STRING(BEN(recommend))},
};

const char *const *cli_option_names(void)
{
    static const char *names[O__N + 1];
    for (int i = 0; i < O__N; i++)
        names[i] = OPTS[i].name;
    return names;
}

static int in_scope(const struct opt *o, int bench)
{
    return o->scope == BOTH || (o->scope == BENCH) == (bench != 0);
}

void cli_usage(FILE *f, int bench)
{
    if (bench)
        fputs("usage: annotate bench DIR [options]\n\n"
              "Runs each strategy over the images in DIR against a mock model server (started here on\n"
              "127.0.0.1 unless --server is given) and reports ok images/s, requests/s, latency\n"
              "percentiles, failures, CPU and memory per strategy and concurrency. Each run gets the\n"
              "run options given here (--config, --header, --cacert, --insecure, --timeout-ms, ...).\n\noptions:\n", f);
    else
        fputs("usage: annotate DIR [options]\n"
              "       annotate bench DIR [options]      measure the strategies (annotate bench --help)\n"
              "       annotate merge OUT.csv SHARD.csv...  combine shard outputs, one row per image\n\n"
              "Sends every image under DIR through the model chain and writes one CSV row per image.\n\n"
              "options:\n", f);
    for (int i = 0; i < O__N; i++) {
        const struct opt *o = &OPTS[i];
        if (!in_scope(o, bench))
            continue;
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s", lhs, o->help);
        if (i == O_WORKERS)
            fprintf(f, " [default: 8 per CPU, %ld here]", 8 * sysconf(_SC_NPROCESSORS_ONLN));
        else if (o->def)
            fprintf(f, " [default: %s]", o->def);
        fputc('\n', f);
    }
    if (!bench)
        fputs("\nExit status: 0 every image ok, 1 some failed, 2 usage or configuration error,\n"
              "130 stopped by a signal (the CSV is valid; run again with --resume).\n", f);
    else
        fputs("\nExit status: 0 every point measured and no image failed, 1 some images failed, 2 usage\n"
              "or set-up error (a run found it: bench stops), 130 stopped by a signal (the report holds\n"
              "the points that finished).\n", f);
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

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
static int range_error(const struct opt *o, const char *arg, int whole, int not_number, char *err, size_t errlen)
{
    char lo[32], hi[32], range[96];
    if (whole && o->ihi == LONG_MAX)
        snprintf(range, sizeof range, ", %ld or more", o->ilo);
    else if (whole)
        snprintf(range, sizeof range, " from %ld to %ld", o->ilo, o->ihi);
    else
        snprintf(range, sizeof range, " from %s to %s", num_text(o->dlo, lo, sizeof lo), num_text(o->dhi, hi, sizeof hi));
    return bad(err, errlen, "--%s %s: %sgive %s%s%s%s", o->name, arg,
               not_number ? (whole ? "not a whole number; " : "not a number; ") : "", o->unit, range,
               o->zero ? ", or " : "", o->zero ? o->zero : "");
}

static int parse_long_opt(const struct opt *o, const char *s, long *out, char *err, size_t errlen)
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

static int parse_double_opt(const struct opt *o, const char *s, double *out, char *err, size_t errlen)
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

static void *field_of(const struct opt *o, struct parse *ps)
{
    char *base = o->where == W_CFG ? (char *)ps->cfg : o->where == W_BENCH ? (char *)ps->bench : NULL;
    return base ? base + o->off : NULL;
}

/* The one parser of flags, numbers and strings: everything it needs is in the row. */
static int set_value(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    void *f = field_of(o, ps);
    long v;
    if (o->type == OT_CUSTOM)
        return o->fn(o, arg, ps, err, errlen);
    if (!f) /* a bench field while parsing a run: the option is not in this scope */
        return bad(err, errlen, "--%s: not an option here; see annotate --help", o->name);
    switch (o->type) {
    case OT_FLAG:
        *(int *)f = 1;
        return 0;
    case OT_STRING:
        *(const char **)f = arg;
        return 0;
    case OT_DOUBLE:
        return parse_double_opt(o, arg, (double *)f, err, errlen);
    case OT_LONG:
        if (parse_long_opt(o, arg, &v, err, errlen))
            return -1;
        switch (o->ctype) {
        case C_INT: *(int *)f = (int)v; break;         /* the range fits: see table_error */
        case C_LONG: *(long *)f = v; break;
        case C_ULONG: *(unsigned long *)f = (unsigned long)v; break;
        case C_ULLONG: *(unsigned long long *)f = (unsigned long long)v; break;
        default: return bad(err, errlen, "--%s: bad option table entry (a bug)", o->name);
        }
        return 0;
    case OT_CUSTOM:
        break;
    }
    return bad(err, errlen, "--%s: bad option table entry (a bug)", o->name);
}

/* The table's own consistency: the type of each row against the C type of its field, and each
 * range against what the field can hold. A mistake here is a bug, caught by the first test run
 * rather than by a user whose value was silently truncated. */
static int table_error(char *err, size_t errlen)
{
    for (int i = 0; i < O__N; i++) {
        const struct opt *o = &OPTS[i];
        int ok;
        switch (o->type) {
        case OT_FLAG: ok = o->ctype == C_INT && !o->arg; break;
        case OT_STRING: ok = o->ctype == C_STR && o->arg; break;
        case OT_DOUBLE: ok = o->ctype == C_DOUBLE && o->arg && o->unit && o->dlo <= o->dhi; break;
        case OT_LONG:
            ok = o->arg && o->unit && o->ilo <= o->ihi &&
                 (o->ctype == C_LONG || (o->ctype == C_INT && o->ilo >= INT_MIN && o->ihi <= INT_MAX) ||
                  ((o->ctype == C_ULONG || o->ctype == C_ULLONG) && o->ilo >= 0));
            break;
        case OT_CUSTOM: ok = o->fn != NULL; break;
        default: ok = 0;
        }
        if (!ok || !o->name || !o->help)
            return bad(err, errlen, "option table: the row of --%s is inconsistent (a bug)", o->name ? o->name : "?");
        /* An option of both commands must reach the runs bench starts, or be bench's own. */
        if (o->scope == BOTH && !bench_takes_option(o->name))
            return bad(err, errlen, "option table: --%s is an option of annotate bench, but bench does not pass it on "
                                    "to its runs (a bug: see bench_takes_option)", o->name);
    }
    return 0;
}

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

/* ---- the options that are more than a number ---- */

/* "curl-multi" or "load=processes,query=curl-multi". */
static int opt_strategy(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    struct config *cfg = ps->cfg;
    enum strategy s;
    if (!strchr(arg, '=')) {
        if (strategy_from_name(arg, &s))
            return bad(err, errlen, "--strategy %s: unknown strategy; use serial, threads, processes or curl-multi", arg);
        cfg->query = s;
        cfg->load = s == STRAT_CURL_MULTI ? STRAT_THREADS : s;
        return 0;
    }
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return bad(err, errlen, "out of memory");
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = bad(err, errlen, "--strategy %s: expected STAGE=STRATEGY pairs, e.g. load=threads,query=curl-multi", arg);
            break;
        }
        *eq = 0;
        const char *stage = tok, *val = eq + 1;
        if (strategy_from_name(val, &s)) {
            rc = bad(err, errlen, "--strategy: unknown strategy \"%s\" for %s; use serial, threads, processes or curl-multi", val, stage);
        } else if (!strcmp(stage, "load")) {
            if (s == STRAT_CURL_MULTI)
                rc = bad(err, errlen, "--strategy load=curl-multi makes no sense: loading reads files, it sends no HTTP; use serial, threads or processes");
            cfg->load = s;
        } else if (!strcmp(stage, "query")) {
            cfg->query = s;
        } else if (!strcmp(stage, "scan") || !strcmp(stage, "write")) {
            if (s != STRAT_SERIAL)
                rc = bad(err, errlen, "--strategy %s=%s: the %s stage always runs in one thread (%s); set load and query instead",
                         stage, val, stage, !strcmp(stage, "scan") ? "a directory walk is sequential" : "rows go to one file");
        } else {
            rc = bad(err, errlen, "--strategy: unknown stage \"%s\"; the stages are scan, load, query and write", stage);
        }
    }
    free(copy);
    return rc;
}

/* A run: one number (the row's range). The benchmark: a list 1,16,64 or a doubling range 1-256
 * of such numbers, kept as text for bench.c, but checked here so that a typo exits 2 before a
 * mock server is started. */
static int opt_concurrency(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    long v;
    if (!ps->bench) {
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
    long lo, hi;
    int n;
    if (sscanf(arg, "%ld-%ld%n", &lo, &hi, &n) == 2 && arg[n] == 0) {
        if (lo < o->ilo || hi > o->ihi || hi < lo)
            return bad(err, errlen, "--concurrency %s: a range LO-HI needs %ld <= LO <= HI <= %ld", arg, o->ilo, o->ihi);
    } else {
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
                return bad(err, errlen, "--concurrency %s: give a list (1,16,64,auto) or a range (1-256) of numbers from %ld to %ld",
                           arg, o->ilo, o->ihi);
            c = *end ? end + 1 : end;
        } while (*c);
        if (arg[strlen(arg) - 1] == ',')
            return bad(err, errlen, "--concurrency %s: give a list (1,16,64) or a range (1-256) of numbers from %ld to %ld",
                       arg, o->ilo, o->ihi);
    }
    ps->bench->concurrency = arg;
    return 0;
}

static int opt_extensions(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    if (ps->bench)
        ps->bench->extensions = arg; /* the text, for the runs bench starts (the last one counts) */
    free(ps->cfg->ext_storage);
    ps->cfg->ext_storage = NULL;
    return scan_parse_exts(arg, &ps->cfg->scan, &ps->cfg->ext_storage, err, errlen) ? -1 : 0;
}

static int opt_encoder(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    if (b64_encoder_from_name(arg, &ps->cfg->encoder))
        return bad(err, errlen, "--encoder %s: use fast or libb64", arg);
    return 0;
}

static int opt_shard(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    long k, nn;
    char extra;
    if (sscanf(arg, "%ld/%ld%c", &k, &nn, &extra) != 2 || nn < 1 || nn > 1000000 || k < 0 || k >= nn)
        return bad(err, errlen, "--shard %s: give K/N with 0 <= K < N <= 1000000, e.g. --shard 0/4", arg);
    ps->cfg->shard_k = (int)k;
    ps->cfg->shard_n = (int)nn;
    return 0;
}

static int opt_latency_dist(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    if (strcmp(arg, "fixed") && strcmp(arg, "uniform") && strcmp(arg, "exp"))
        return bad(err, errlen, "--latency-dist %s: use fixed, uniform or exp", arg);
    ps->bench->latency_dist = arg;
    return 0;
}

/* A number of seconds, like any other, except that it replaces an earlier --limit. */
static int opt_duration(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    if (parse_double_opt(o, arg, &ps->bench->duration_s, err, errlen))
        return -1;
    ps->bench->limit = 0;
    return 0;
}

/* The option's text, safe to print: control characters as '?', cut at 200 bytes. */
/* Checked here, so that a bad --server is blamed on --server, not on the first stage of the
 * pipeline file whose URL it would be joined to. */
static int opt_server(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    char why[160], buf[256];
    if (pipeline_check_base(arg, why, sizeof why))
        return bad(err, errlen, "--server \"%s\": %s, e.g. --server http://models.internal:8080", pipeline_printable(arg, buf, sizeof buf),
                   why);
    ps->cfg->server = arg;
    if (ps->bench)
        ps->bench->server_given = 1;
    return 0;
}

/* Collected until the pipeline is loaded; the value is never shown (see pipeline_add_header). */
static int opt_header(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    (void)err;
    (void)errlen;
    ps->headers[ps->n_headers++] = arg; /* room for one per argv word: see cli_parse */
    return 0;
}

/* A file curl can read, checked now: curl would fail every request, one image at a time. */
static int opt_cacert(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    struct stat st;
    int fd = open(arg, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return bad(err, errlen, "--cacert %s: cannot read it: %s", arg, strerror(e));
    }
    close(fd);
    if (S_ISDIR(st.st_mode))
        return bad(err, errlen, "--cacert %s: is a directory; give the CA bundle file (PEM) itself", arg);
    ps->cfg->cacert = arg;
    return 0;
}

static int opt_help(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    (void)arg;
    (void)err;
    (void)errlen;
    cli_usage(stdout, ps->bench != NULL);
    return 1;
}

static int opt_version(const struct opt *o, const char *arg, struct parse *ps, char *err, size_t errlen)
{
    (void)o;
    (void)arg;
    (void)ps;
    (void)err;
    (void)errlen;
    printf("annotate %s (libcurl %s)\n", ANNOTATE_VERSION, curl_version_info(CURLVERSION_NOW)->version);
    return 1;
}

/* ---- the command line ---- */

static void set_defaults(struct config *cfg, struct bench_opts *bench)
{
    memset(cfg, 0, sizeof *cfg);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    cfg->out = "-";
    cfg->server = "http://127.0.0.1:8080";
    cfg->load = STRAT_THREADS;
    cfg->query = STRAT_CURL_MULTI;
    cfg->workers = (int)(8 * ncpu > 256 ? 256 : 8 * ncpu);
    cfg->concurrency = 64;
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
    cfg->encoder = B64_FAST;
    cfg->sync_every = 1000;
    cfg->drain_timeout_ms = 30000;
    cfg->outage_timeout_s = 300;
    cfg->progress_interval = 10;
    if (bench) {
        memset(bench, 0, sizeof *bench);
        bench->strategies = "serial,threads,processes,curl-multi";
        bench->concurrency = NULL;
        bench->latency_dist = "fixed";
        bench->duration_s = 10;
        bench->report = "out/bench.json";
        bench->chart = "out/bench.svg";
        bench->tolerance = 0.1;
        bench->max_windows = 10;
        bench->window_s = 1;
        bench->queue_max = -1;
        bench->recommend = "out/recommended.json";
    }
}

/* The row of --NAME (or of a prefix getopt_long would accept), whatever its scope; -1 if none. */
static int find_opt(const char *arg)
{
    if (strncmp(arg, "--", 2))
        return -1;
    size_t n = strcspn(arg + 2, "=");
    for (int i = 0; i < O__N; i++)
        if (strlen(OPTS[i].name) == n && !strncmp(OPTS[i].name, arg + 2, n))
            return i;
    return -1;
}

static int parse_args(int argc, char **argv, struct parse *ps, char *err, size_t errlen)
{
    int bench = ps->bench != NULL;
    struct option lopts[O__N + 1];
    int n = 0;
    for (int i = 0; i < O__N; i++)
        if (in_scope(&OPTS[i], bench))
            lopts[n++] = (struct option){OPTS[i].name, OPTS[i].arg ? required_argument : no_argument, NULL, 1000 + i};
    lopts[n] = (struct option){0, 0, 0, 0};
    optind = 0; /* glibc: 0 starts a fresh scan (the tests parse many command lines in one process) */
    opterr = 0;
    const char *dir = NULL;
    int c, longidx;
    while ((c = getopt_long(argc, argv, "-ho:", lopts, &longidx)) != -1) {
        const char *a = optarg;
        switch (c) {
        case 1:
            if (dir)
                return bad(err, errlen, "more than one DIR given (%s and %s); annotate takes one folder", dir, a);
            dir = a;
            continue;
        case 'h':
            c = 1000 + O_HELP;
            break;
        case 'o':
            c = 1000 + O_OUT;
            break;
        case '?': {
            if (optopt && optopt < 1000)
                return bad(err, errlen, "unknown option -%c; see annotate --help", optopt);
            const char *given = argv[optind - 1];
            int k = find_opt(given);
            if (k >= 0 && !in_scope(&OPTS[k], bench))
                return bad(err, errlen, "--%s is an option of %s; see annotate%s --help", OPTS[k].name,
                           OPTS[k].scope == BENCH ? "annotate bench" : "a run (annotate DIR), not of annotate bench",
                           bench ? " bench" : "");
            if (k >= 0 && OPTS[k].arg)
                return bad(err, errlen, "--%s needs a value; see annotate%s --help", OPTS[k].name, bench ? " bench" : "");
            if (k >= 0)
                return bad(err, errlen, "--%s takes no value; see annotate%s --help", OPTS[k].name, bench ? " bench" : "");
            return bad(err, errlen, "unknown option %s; see annotate%s --help", given, bench ? " bench" : "");
        }
        case ':':
            return bad(err, errlen, "%s needs a value; see annotate --help", argv[optind - 1]);
        }
        int id = c - 1000;
        if (id < 0 || id >= O__N)
            return bad(err, errlen, "unknown option; see annotate --help");
        /* getopt_long takes a prefix for the whole name: in bench, "--out" would be read as
         * --outage-timeout. A word that is the full name of the other command's option is that
         * option, and refused as such. */
        const char *word = a && optind >= 2 && argv[optind - 1] == a ? argv[optind - 2] : argv[optind - 1];
        int named = strncmp(word, "--", 2) ? -1 : find_opt(word);
        if (named >= 0 && named != id && !in_scope(&OPTS[named], bench))
            return bad(err, errlen, "--%s is an option of %s; see annotate%s --help", OPTS[named].name,
                       OPTS[named].scope == BENCH ? "annotate bench" : "a run (annotate DIR), not of annotate bench",
                       bench ? " bench" : "");
        if (OPTS[id].arg && !a)
            return bad(err, errlen, "--%s needs a value; see annotate --help", OPTS[id].name);
        int rc = set_value(&OPTS[id], a, ps, err, errlen);
        if (rc)
            return rc;
    }
    if (!dir)
        return bad(err, errlen, "no folder given; usage: annotate DIR --out results.csv (see annotate --help)");
    ps->cfg->dir = dir;
    return 0;
}

static int check_and_load(struct parse *ps, char *err, size_t errlen);

int cli_parse(int argc, char **argv, struct config *cfg, struct bench_opts *bench, char *err, size_t errlen)
{
    set_defaults(cfg, bench);
    if (table_error(err, errlen))
        return -1;
    struct parse ps = {cfg, bench, NULL, 0};
    /* At most one --header per word of argv. */
    if (!(ps.headers = calloc((size_t)argc + 1, sizeof *ps.headers)))
        return bad(err, errlen, "out of memory");
    int rc = parse_args(argc, argv, &ps, err, errlen);
    if (rc == 0)
        rc = check_and_load(&ps, err, errlen);
    if (bench && rc == 0) {
        /* bench passes the --header lines, as given, to the runs it starts (bench_opts_free). */
        bench->headers = ps.headers;
        bench->n_headers = ps.n_headers;
    } else {
        free(ps.headers);
    }
    return rc;
}

/* What needs every option: their combinations, then the pipeline with the --header lines. */
static int check_and_load(struct parse *ps, char *err, size_t errlen)
{
    struct config *cfg = ps->cfg;
    if (cfg->retry_failed && !cfg->resume)
        return bad(err, errlen, "--retry-failed goes with --resume (it re-runs the failed rows of an earlier run)");
    if (cfg->resume && !strcmp(cfg->out, "-"))
        return bad(err, errlen, "--resume needs --out FILE: it reads the rows already written there");
    if (cfg->backoff_max_ms < cfg->backoff_ms)
        cfg->backoff_max_ms = cfg->backoff_ms;
    if (cfg->insecure)
        fprintf(stderr, "annotate: warning: --insecure: TLS certificates are not verified\n");
    if (cfg->config_file) {
        if (pipeline_load(cfg->config_file, &cfg->pipeline, err, errlen))
            return -1;
    } else {
        errno = 0;
        if (pipeline_default(&cfg->pipeline))
            return bad(err, errlen, errno == ENOMEM ? "out of memory loading the built-in pipeline"
                                                    : "the built-in pipeline does not parse (a bug)");
    }
    for (int h = 0; h < ps->n_headers; h++)
        if (pipeline_add_header(cfg->pipeline, ps->headers[h], err, errlen))
            return -1;
    if (pipeline_resolve(cfg->pipeline, cfg->server, err, errlen))
        return -1;
    return 0;
}

void config_free(struct config *cfg)
{
    pipeline_free(cfg->pipeline);
    cfg->pipeline = NULL;
    free(cfg->ext_storage);
    cfg->ext_storage = NULL;
}
