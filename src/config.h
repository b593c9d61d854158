/* config: everything a run (struct config) and the benchmark (struct bench_opts) are told on the
 * command line, after parsing and validation, as plain data. The options that fill it are
 * described once, in the table of options.h. struct config is read-only once the run starts. */
#ifndef ANNOTATE_CONFIG_H
#define ANNOTATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "common/b64.h"
#include "pipeline/pipeline.h"
#include "flow/scan.h"

enum strategy { STRAT_SERIAL = 0, STRAT_THREADS, STRAT_PROCESSES, STRAT_CURL_MULTI, STRAT__N };

struct config {
    const char *dir;            /* a folder, or s3://BUCKET/PREFIX; NULL with files_from */
    const char *files_from;     /* --files-from: a list of images (local paths, s3:// and http(s)://
                                 * URLs), "-" for standard input; NULL: dir */
    int list_nul;               /* -0: the list's entries end with NUL, not a newline */
    int format;                 /* the results file's format (results/resume.h), from --format or
                                 * --out's name */
    int format_given;           /* --format was given */
    int s3_max_keys;            /* S3: keys a listing page asks for */
    int image_auth;             /* --header and --cacert also go to http(s) image URLs */
    const char *out;
    const char *server;
    const char *config_file;
    enum strategy load, query;  /* scan and write are one thread each, always */
    int load_auto;              /* load was not named: threads for a folder or a list, curl-multi for
                                 * a bucket when the query stage is curl-multi (cli.c) */
    int workers;                /* threads or processes per parallel stage */
    int concurrency;            /* curl-multi: requests in flight, across all loops */
    int concurrency_auto;       /* --concurrency auto: every stage without a "concurrency" of its own
                                 * (or in "defaults") has an adaptive limit (limit.h) */
    int loops;                  /* curl-multi: event loops (threads), each with a share of concurrency */
    size_t queue_size;
    long timeout_ms, connect_timeout_ms;
    int retries;
    long backoff_ms, backoff_max_ms;
    double max_rps;             /* 0: no limit */
    uint64_t max_image_bytes;
    long max_answer_bytes;      /* a larger answer fails its attempt */
    uint64_t max_memory;        /* image payloads held at once, in bytes (budget.h); 0: no cap */
    uint64_t max_pixels;        /* an image of more pixels fails before it is decoded (prepare.h) */
    int load_threads;           /* threads (or processes) of the load stage; 0: config_load_workers */
    enum b64_encoder encoder;
    int resume, retry_failed;
    int force;                  /* truncate a non-empty --out without --resume */
    long sync_every;            /* rows between fsyncs; 0: only at the end */
    long drain_timeout_ms;
    long outage_timeout_s;      /* how long a stage may be down before its images fail; 0: no wait */
    int quiet;
    int verbose;                /* the progress line shows each stage's p50 */
    double progress_interval;
    const char *stats_json;
    const char *cache;          /* --cache: the answer store's file (results/store.h); NULL: none */
    int insecure;
    const char *cacert;
    uint64_t max_images;        /* 0: all */
    int shard_k, shard_n;       /* shard_n == 0: no sharding */
    struct scan_opts scan;
    char *ext_storage;
    struct pipeline *pipeline;  /* owned */
};

/* Threads (or processes) of the load stage: --load-threads, else the number of cores when the
 * pipeline prepares images (CPU work), else --workers (reading files waits on the disk). */
int config_load_workers(const struct config *cfg);

/* What `annotate bench` is told besides the run options (see bench.h). */
struct bench_opts {
    const char *strategies;   /* comma list; default all four */
    const char *concurrency;  /* list or range: "1,16,64,256" or "1-256" (doubling); "auto" in a list
                               * is a point with --concurrency auto */
    long latency_ms;          /* the mock's injected latency */
    const char *latency_dist;
    double duration_s;        /* per measurement window set; 0: use limit */
    long limit;               /* images per measurement; 0: use duration */
    const char *report;       /* JSON report path */
    const char *chart;        /* SVG chart path */
    const char *mock_bin;
    int trust_payload;        /* mock skips decoding (the no-latency throughput mode) */
    double tolerance;         /* windows agree within this fraction */
    int max_windows;
    double window_s;
    int server_given;
    const char **headers;     /* the --header lines as given (owned array, strings from argv) */
    int n_headers;
    const char *extensions;   /* --extensions as given, or NULL */
    long capacity;            /* the mock's --capacity for every endpoint; 0: none */
    long queue_max;           /* the mock's --queue-max; -1: unlimited */
    int sweep;                /* --sweep: each stage's concurrency in turn, and a recommended pipeline */
    const char *sweep_stages; /* --sweep-stages: the stages swept (comma list), NULL: all */
    const char *recommend;    /* --sweep: where the recommended pipeline is written */
    int auto_workers;         /* set by bench_main: --workers of an auto point of a blocking strategy */
};

#endif
