/* cli: see cli.h. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum opt_id {
    O_OUT, O_SERVER, O_CONFIG, O_STRATEGY, O_WORKERS, O_CONCURRENCY, O_LOOPS, O_QUEUE, O_TIMEOUT,
    O_CONNECT_TIMEOUT, O_RETRIES, O_BACKOFF, O_BACKOFF_MAX, O_MAX_RPS, O_MAX_BYTES, O_EXTS, O_ENCODER,
    O_RESUME, O_RETRY_FAILED, O_SYNC_EVERY, O_DRAIN, O_QUIET, O_PROGRESS, O_STATS_JSON, O_INSECURE,
    O_CACERT, O_SHARD, O_LIMIT_RUN, O_HELP, O_VERSION,
    /* bench only */
    O_STRATEGIES, O_LATENCY, O_LATENCY_DIST, O_DURATION, O_LIMIT, O_REPORT, O_CHART, O_MOCK_BIN,
    O_TRUST, O_TOLERANCE, O_WINDOWS, O_WINDOW, O__N
};

struct opt {
    const char *name;
    const char *arg;   /* metavar, or NULL for a flag */
    const char *def;   /* default as shown in --help, or NULL */
    const char *help;
    int bench;         /* 1: only for `annotate bench`, 2: for both */
};

static const struct opt OPTS[O__N] = {
    [O_OUT] = {"out", "FILE", "- (stdout)", "write the CSV here", 0},
    [O_SERVER] = {"server", "URL", "http://127.0.0.1:8080", "base URL that relative stage URLs are joined to", 2},
    [O_CONFIG] = {"config", "FILE", "the built-in seed chain", "pipeline file (JSON) defining the model chain", 2},
    [O_STRATEGY] = {"strategy", "S", "load=threads,query=curl-multi",
                    "serial, threads, processes or curl-multi for every stage, or per stage: load=S,query=S", 0},
    [O_WORKERS] = {"workers", "N", "8 per CPU", "threads or processes per parallel stage", 2},
    [O_CONCURRENCY] = {"concurrency", "N|LIST", "64", "curl-multi: requests in flight (bench: a list 1,16,64 or a range 1-256)", 2},
    [O_LOOPS] = {"loops", "N", "1", "curl-multi: event loops (threads) sharing --concurrency; more than 1 only helps with spare cores", 2},
    [O_QUEUE] = {"queue-size", "N", "256", "capacity of each queue between stages", 2},
    [O_TIMEOUT] = {"timeout-ms", "MS", "30000", "per-request timeout", 2},
    [O_CONNECT_TIMEOUT] = {"connect-timeout-ms", "MS", "5000", "connection timeout", 2},
    [O_RETRIES] = {"retries", "N", "3", "retries per request after connect errors, timeouts, 5xx, 429 and garbled answers", 2},
    [O_BACKOFF] = {"backoff-ms", "MS", "100", "first retry's backoff ceiling; doubles each retry (full jitter)", 2},
    [O_BACKOFF_MAX] = {"backoff-max-ms", "MS", "10000", "largest backoff ceiling", 2},
    [O_MAX_RPS] = {"max-rps", "N", "0 (no limit)", "cap on requests per second across the whole run", 2},
    [O_MAX_BYTES] = {"max-image-bytes", "N", "67108864 (64 MiB)", "larger files get a failed row and are not sent", 2},
    [O_EXTS] = {"extensions", "LIST", "jpg,jpeg,png,gif,bmp,webp", "file extensions that count as images (any case)", 2},
    [O_ENCODER] = {"encoder", "NAME", "fast", "base64 encoder: fast or libb64 (the reference)", 2},
    [O_RESUME] = {"resume", NULL, NULL, "continue a run: skip images that already have a row in --out, append the rest", 0},
    [O_RETRY_FAILED] = {"retry-failed", NULL, NULL, "with --resume, also re-run images whose row is failed (their old rows are removed)", 0},
    [O_SYNC_EVERY] = {"sync-every", "N", "1000", "fsync the CSV every N rows (0: only at the end)", 0},
    [O_DRAIN] = {"drain-timeout-ms", "MS", "30000", "after Ctrl-C, how long the images in flight may take to finish", 0},
    [O_QUIET] = {"quiet", NULL, NULL, "no progress line and no summary", 2},
    [O_PROGRESS] = {"progress-interval", "S", "10", "seconds between status lines when stderr is not a terminal", 0},
    [O_STATS_JSON] = {"stats-json", "FILE", NULL, "write the end-of-run summary as JSON", 0},
    [O_INSECURE] = {"insecure", NULL, NULL, "do not verify TLS certificates (prints a warning)", 2},
    [O_CACERT] = {"cacert", "FILE", NULL, "CA bundle to verify TLS servers with", 2},
    [O_SHARD] = {"shard", "K/N", NULL, "take only shard K of N (0 <= K < N) by a hash of the path below DIR", 0},
    [O_LIMIT_RUN] = {"max-images", "N", NULL, "stop after N images (a trial run)", 0},
    [O_HELP] = {"help", NULL, NULL, "show this help", 2},
    [O_VERSION] = {"version", NULL, NULL, "show the version", 2},
    [O_STRATEGIES] = {"strategies", "LIST", "serial,threads,processes,curl-multi",
                      "strategies to measure; per-stage ones with '+', e.g. load=threads+query=processes", 1},
    [O_LATENCY] = {"latency-ms", "MS", "0", "latency the mock model server adds to each request", 1},
    [O_LATENCY_DIST] = {"latency-dist", "D", "fixed", "fixed, uniform or exp", 1},
    [O_DURATION] = {"duration", "S", "10", "measure each point for about this long (windows of --window s)", 1},
    [O_LIMIT] = {"limit", "N", NULL, "instead of --duration: run each point over the first N images", 1},
    [O_REPORT] = {"report", "FILE", "out/bench.json", "JSON report", 1},
    [O_CHART] = {"chart", "FILE", "out/bench.svg", "SVG chart of throughput against concurrency", 1},
    [O_MOCK_BIN] = {"mock", "FILE", "mock-model-server beside annotate", "the mock model server to start", 1},
    [O_TRUST] = {"trust-payload", NULL, NULL, "the mock skips decoding payloads (no-latency throughput mode)", 1},
    [O_TOLERANCE] = {"tolerance", "F", "0.1", "windows are stable when the last three agree within this fraction", 1},
    [O_WINDOWS] = {"max-windows", "N", "10", "give up waiting for stability after this many windows", 1},
    [O_WINDOW] = {"window", "S", "1", "length of one measurement window in seconds", 1},
};

const char *const *cli_option_names(void)
{
    static const char *names[O__N + 1];
    for (int i = 0; i < O__N; i++)
        names[i] = OPTS[i].name;
    return names;
}

void cli_usage(FILE *f, int bench)
{
    if (bench)
        fputs("usage: annotate bench DIR [options]\n\n"
              "Runs each strategy over the images in DIR against a mock model server (started here on\n"
              "127.0.0.1 unless --server is given) and reports images/s, requests/s, latency\n"
              "percentiles, CPU and memory per strategy and concurrency.\n\noptions:\n", f);
    else
        fputs("usage: annotate DIR [options]\n"
              "       annotate bench DIR [options]      measure the strategies (annotate bench --help)\n"
              "       annotate merge OUT.csv SHARD.csv...  combine shard outputs, one row per image\n\n"
              "Sends every image under DIR through the model chain and writes one CSV row per image.\n\n"
              "options:\n", f);
    for (int i = 0; i < O__N; i++) {
        const struct opt *o = &OPTS[i];
        if ((bench && o->bench == 0) || (!bench && o->bench == 1))
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
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
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

/* "curl-multi" or "load=processes,query=curl-multi". */
static int parse_strategy(const char *arg, struct config *cfg, char *err, size_t errlen)
{
    enum strategy s;
    if (!strchr(arg, '=')) {
        if (strategy_from_name(arg, &s))
            return bad(err, errlen, "--strategy %s: unknown strategy; use serial, threads, processes or curl-multi", arg);
        cfg->query = s;
        cfg->load = s == STRAT_CURL_MULTI ? STRAT_THREADS : s;
        return 0;
    }
    char *copy = strdup(arg), *save = NULL;
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

int cli_parse(int argc, char **argv, struct config *cfg, struct bench_opts *bench, char *err, size_t errlen)
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
    cfg->encoder = B64_FAST;
    cfg->sync_every = 1000;
    cfg->drain_timeout_ms = 30000;
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
    }

    struct option lopts[O__N + 1];
    int n = 0;
    for (int i = 0; i < O__N; i++) {
        if ((bench && OPTS[i].bench == 0) || (!bench && OPTS[i].bench == 1))
            continue;
        lopts[n++] = (struct option){OPTS[i].name, OPTS[i].arg ? required_argument : no_argument, NULL, 1000 + i};
    }
    lopts[n] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
    const char *dir = NULL;
    int c, longidx;
    long v;
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
        case '?':
            if (optopt)
                return bad(err, errlen, "unknown option -%c; see annotate --help", optopt);
            return bad(err, errlen, "unknown option %s; see annotate%s --help", argv[optind - 1], bench ? " bench" : "");
        case ':':
            return bad(err, errlen, "%s needs a value; see annotate --help", argv[optind - 1]);
        }
        int id = c - 1000;
        const char *name = OPTS[id].name;
        if (OPTS[id].arg && !a)
            return bad(err, errlen, "--%s needs a value; see annotate --help", name);
        switch (id) {
        case O_OUT: cfg->out = a; break;
        case O_SERVER: cfg->server = a; if (bench) bench->server_given = 1; break;
        case O_CONFIG: cfg->config_file = a; break;
        case O_STRATEGY:
            if (parse_strategy(a, cfg, err, errlen))
                return -1;
            break;
        case O_WORKERS:
            if (parse_long(a, 1, 4096, &v))
                return bad(err, errlen, "--workers %s: give a number from 1 to 4096", a);
            cfg->workers = (int)v;
            break;
        case O_CONCURRENCY:
            if (bench) {
                bench->concurrency = a;
            } else {
                if (parse_long(a, 1, 100000, &v))
                    return bad(err, errlen, "--concurrency %s: give a number from 1 to 100000", a);
                cfg->concurrency = (int)v;
            }
            break;
        case O_LOOPS:
            if (parse_long(a, 1, 256, &v))
                return bad(err, errlen, "--loops %s: give a number from 1 to 256", a);
            cfg->loops = (int)v;
            break;
        case O_QUEUE:
            if (parse_long(a, 1, 1 << 20, &v))
                return bad(err, errlen, "--queue-size %s: give a number from 1 to 1048576", a);
            cfg->queue_size = (size_t)v;
            break;
        case O_TIMEOUT:
            if (parse_long(a, 1, 86400000, &cfg->timeout_ms))
                return bad(err, errlen, "--timeout-ms %s: give milliseconds from 1 to 86400000", a);
            break;
        case O_CONNECT_TIMEOUT:
            if (parse_long(a, 1, 86400000, &cfg->connect_timeout_ms))
                return bad(err, errlen, "--connect-timeout-ms %s: give milliseconds from 1 to 86400000", a);
            break;
        case O_RETRIES:
            if (parse_long(a, 0, 100, &v))
                return bad(err, errlen, "--retries %s: give a number from 0 to 100", a);
            cfg->retries = (int)v;
            break;
        case O_BACKOFF:
            if (parse_long(a, 0, 3600000, &cfg->backoff_ms))
                return bad(err, errlen, "--backoff-ms %s: give milliseconds from 0 to 3600000", a);
            break;
        case O_BACKOFF_MAX:
            if (parse_long(a, 0, 3600000, &cfg->backoff_max_ms))
                return bad(err, errlen, "--backoff-max-ms %s: give milliseconds from 0 to 3600000", a);
            break;
        case O_MAX_RPS:
            if (parse_double(a, 0, 1e7, &cfg->max_rps))
                return bad(err, errlen, "--max-rps %s: give requests per second (0 for no limit)", a);
            break;
        case O_MAX_BYTES:
            if (parse_long(a, 1, LONG_MAX, &v))
                return bad(err, errlen, "--max-image-bytes %s: give a positive number of bytes", a);
            cfg->max_image_bytes = (uint64_t)v;
            break;
        case O_EXTS:
            free(cfg->ext_storage);
            cfg->ext_storage = NULL;
            if (scan_parse_exts(a, &cfg->scan, &cfg->ext_storage, err, errlen))
                return -1;
            break;
        case O_ENCODER:
            if (b64_encoder_from_name(a, &cfg->encoder))
                return bad(err, errlen, "--encoder %s: use fast or libb64", a);
            break;
        case O_RESUME: cfg->resume = 1; break;
        case O_RETRY_FAILED: cfg->retry_failed = 1; break;
        case O_SYNC_EVERY:
            if (parse_long(a, 0, LONG_MAX, &cfg->sync_every))
                return bad(err, errlen, "--sync-every %s: give a number of rows (0: only at the end)", a);
            break;
        case O_DRAIN:
            if (parse_long(a, 0, 86400000, &cfg->drain_timeout_ms))
                return bad(err, errlen, "--drain-timeout-ms %s: give milliseconds", a);
            break;
        case O_QUIET: cfg->quiet = 1; break;
        case O_PROGRESS:
            if (parse_double(a, 0.1, 86400, &cfg->progress_interval))
                return bad(err, errlen, "--progress-interval %s: give seconds from 0.1 to 86400", a);
            break;
        case O_STATS_JSON: cfg->stats_json = a; break;
        case O_INSECURE: cfg->insecure = 1; break;
        case O_CACERT: cfg->cacert = a; break;
        case O_SHARD: {
            long k, nn;
            char extra;
            if (sscanf(a, "%ld/%ld%c", &k, &nn, &extra) != 2 || nn < 1 || nn > 1000000 || k < 0 || k >= nn)
                return bad(err, errlen, "--shard %s: give K/N with 0 <= K < N, e.g. --shard 0/4", a);
            cfg->shard_k = (int)k;
            cfg->shard_n = (int)nn;
            break;
        }
        case O_LIMIT_RUN:
            if (parse_long(a, 1, LONG_MAX, &v))
                return bad(err, errlen, "--max-images %s: give a positive number", a);
            cfg->max_images = (uint64_t)v;
            break;
        case O_HELP:
            cli_usage(stdout, bench != NULL);
            return 1;
        case O_VERSION:
            printf("annotate %s (libcurl %s)\n", ANNOTATE_VERSION, curl_version_info(CURLVERSION_NOW)->version);
            return 1;
        case O_STRATEGIES: bench->strategies = a; break;
        case O_LATENCY:
            if (parse_long(a, 0, 600000, &bench->latency_ms))
                return bad(err, errlen, "--latency-ms %s: give milliseconds", a);
            break;
        case O_LATENCY_DIST:
            if (strcmp(a, "fixed") && strcmp(a, "uniform") && strcmp(a, "exp"))
                return bad(err, errlen, "--latency-dist %s: use fixed, uniform or exp", a);
            bench->latency_dist = a;
            break;
        case O_DURATION:
            if (parse_double(a, 0.1, 86400, &bench->duration_s))
                return bad(err, errlen, "--duration %s: give seconds", a);
            bench->limit = 0;
            break;
        case O_LIMIT:
            if (parse_long(a, 1, LONG_MAX, &bench->limit))
                return bad(err, errlen, "--limit %s: give a number of images", a);
            break;
        case O_REPORT: bench->report = a; break;
        case O_CHART: bench->chart = a; break;
        case O_MOCK_BIN: bench->mock_bin = a; break;
        case O_TRUST: bench->trust_payload = 1; break;
        case O_TOLERANCE:
            if (parse_double(a, 0.001, 1, &bench->tolerance))
                return bad(err, errlen, "--tolerance %s: give a fraction, e.g. 0.1", a);
            break;
        case O_WINDOWS:
            if (parse_long(a, 3, 1000, &v))
                return bad(err, errlen, "--max-windows %s: give a number from 3 to 1000", a);
            bench->max_windows = (int)v;
            break;
        case O_WINDOW:
            if (parse_double(a, 0.1, 3600, &bench->window_s))
                return bad(err, errlen, "--window %s: give seconds", a);
            break;
        default:
            return bad(err, errlen, "unknown option; see annotate --help");
        }
        (void)name;
    }
    if (!dir)
        return bad(err, errlen, "no folder given; usage: annotate DIR --out results.csv (see annotate --help)");
    cfg->dir = dir;
    if (cfg->retry_failed && !cfg->resume)
        return bad(err, errlen, "--retry-failed goes with --resume (it re-runs the failed rows of an earlier run)");
    if (cfg->resume && !strcmp(cfg->out, "-"))
        return bad(err, errlen, "--resume needs --out FILE: it reads the rows already written there");
    if (cfg->backoff_max_ms < cfg->backoff_ms)
        cfg->backoff_max_ms = cfg->backoff_ms;
    if (cfg->insecure && !getenv("ANNOTATE_WORKER")) /* once, from the parent, not per worker */
        fprintf(stderr, "annotate: warning: --insecure: TLS certificates are not verified\n");
    if (cfg->config_file) {
        if (pipeline_load(cfg->config_file, &cfg->pipeline, err, errlen))
            return -1;
    } else if (pipeline_default(&cfg->pipeline)) {
        return bad(err, errlen, "the built-in pipeline does not parse (a bug)");
    }
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
