/* cli: see cli.h. The options themselves are the rows of options.c's table: this file drives
 * getopt_long with them, prints --help from them, does --help and --version, and checks what needs
 * every option (their combinations, then the pipeline file with the --header lines). */
#include "cli.h"
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "prepare/prepare.h"
#include "results/resume.h"
#include "sources/s3.h"

const char *const *cli_option_names(void)
{
    static const char *names[CONFIG_MAX_OPTIONS + 1];
    for (int i = 0; i < CONFIG_N_OPTIONS; i++)
        names[i] = CONFIG_OPTIONS[i].name;
    return names;
}

static int in_scope(const struct config_option *o, int bench)
{
    return o->scope == SCOPE_BOTH || (o->scope == SCOPE_BENCH) == (bench != 0);
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
              "       annotate s3://BUCKET/PREFIX [options]\n"
              "       annotate --files-from LIST [options]  (LIST: - for standard input)\n"
              "       annotate bench DIR [options]      measure the strategies (annotate bench --help)\n"
              "       annotate merge [--prefer first|last] OUT.csv SHARD.csv...  combine shards, one row per\n"
              "                                         image (annotate merge --help)\n\n"
              "Sends every image under DIR (or under the bucket's prefix, or in the list) through the model\n"
              "chain and writes one row per image (CSV, or JSON Lines with --out FILE.jsonl).\n"
              "S3 is configured as the AWS CLI is: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,\n"
              "AWS_REGION, AWS_ENDPOINT_URL (S3-compatible stores), AWS_PROFILE and ~/.aws/credentials.\n"
              "A stage with \"image\" (or a crop) loads the libvips plugin annotate-vips.so from beside the\n"
              "binary or its ../lib/annotate, or from ANNOTATE_PLUGIN_DIR when set.\n\n"
              "options:\n", f);
    for (int i = 0; i < CONFIG_N_OPTIONS; i++) {
        const struct config_option *o = &CONFIG_OPTIONS[i];
        if (!in_scope(o, bench))
            continue;
        char lhs[64];
        snprintf(lhs, sizeof lhs, "%s--%s%s%s", !strcmp(o->name, "null") ? "-0, " : "", o->name, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s", lhs, o->help);
        if (!strcmp(o->name, "workers"))
            fprintf(f, " [default: 8 per CPU, %ld here]", 8 * sysconf(_SC_NPROCESSORS_ONLN));
        else if (o->def)
            fprintf(f, " [default: %s]", o->def);
        fputc('\n', f);
    }
    if (!bench)
        fputs("\nExit status: 0 this run failed no image, 1 it failed some, 2 usage or configuration error,\n"
              "130 stopped by a signal (the CSV is valid; run again with --resume). With --resume, failed\n"
              "rows kept from earlier runs do not count (the summary counts them; --retry-failed redoes them).\n", f);
    else
        fputs("\nExit status: 0 every point measured and no image failed, 1 some images failed, 2 usage\n"
              "or set-up error (a run found it: bench stops), 130 stopped by a signal (the report holds\n"
              "the points that finished).\n", f);
}

/* --help and --version: printed here, then the command ends (exit 0). */
static int action(const struct config_option *o, int bench)
{
    if (!strcmp(o->name, "help"))
        cli_usage(stdout, bench);
    else
        printf("annotate %s (libcurl %s)\n", ANNOTATE_VERSION, curl_version_info(CURLVERSION_NOW)->version);
    return 1;
}

/* The row of --NAME (or of --NAME=VALUE) written in word, whatever its scope; NULL if none. */
static const struct config_option *named_in(const char *word)
{
    return strncmp(word, "--", 2) ? NULL : config_option_named(word + 2, strcspn(word + 2, "="));
}

static int other_command(const struct config_option *o, int bench, char *err, size_t errlen)
{
    return config_fail(err, errlen, "--%s is an option of %s; see annotate%s --help", o->name,
                       o->scope == SCOPE_BENCH ? "annotate bench" : "a run (annotate DIR), not of annotate bench",
                       bench ? " bench" : "");
}

/* What getopt_long refused ('?'): an unknown option, the other command's, a value missing or
 * extra. given is the word it was in. */
static int refused(const char *given, int bench, char *err, size_t errlen)
{
    if (optopt && optopt < 1000)
        return config_fail(err, errlen, "unknown option -%c; see annotate --help", optopt);
    const struct config_option *o = named_in(given);
    if (o && !in_scope(o, bench))
        return other_command(o, bench, err, errlen);
    if (o && o->arg)
        return config_fail(err, errlen, "--%s needs a value; see annotate%s --help", o->name, bench ? " bench" : "");
    if (o)
        return config_fail(err, errlen, "--%s takes no value; see annotate%s --help", o->name, bench ? " bench" : "");
    return config_fail(err, errlen, "unknown option %s; see annotate%s --help", given, bench ? " bench" : "");
}

/* One option getopt_long returned: c is 'h', 'o', '?', ':' or 1000 plus its row's index, its
 * value in optarg. 0, 1 (--help, --version: done) or -1 with err. */
static int take_option(int c, char **argv, struct config_parse *ps, char *err, size_t errlen)
{
    int bench = ps->bench != NULL;
    const char *a = optarg;
    if (c == '?')
        return refused(argv[optind - 1], bench, err, errlen);
    if (c == ':')
        return config_fail(err, errlen, "%s needs a value; see annotate --help", argv[optind - 1]);
    const struct config_option *o = c == 'h'   ? config_option_named("help", 4)
                                    : c == 'o' ? config_option_named("out", 3)
                                    : c == '0' ? config_option_named("null", 4)
                                    : c >= 1000 && c - 1000 < CONFIG_N_OPTIONS ? &CONFIG_OPTIONS[c - 1000]
                                                                               : NULL;
    if (!o)
        return config_fail(err, errlen, "unknown option; see annotate --help");
    /* getopt_long takes a prefix for the whole name: in bench, "--out" would be read as
     * --outage-timeout. A word that is the full name of the other command's option is that
     * option, and refused as such. */
    const char *word = a && optind >= 2 && argv[optind - 1] == a ? argv[optind - 2] : argv[optind - 1];
    const struct config_option *named = named_in(word);
    if (named && named != o && !in_scope(named, bench))
        return other_command(named, bench, err, errlen);
    if (o->arg && !a)
        return config_fail(err, errlen, "--%s needs a value; see annotate --help", o->name);
    int rc = config_set(o, a, ps, err, errlen);
    return rc == 1 ? action(o, bench) : rc;
}

static int parse_args(int argc, char **argv, struct config_parse *ps, char *err, size_t errlen)
{
    struct option lopts[CONFIG_MAX_OPTIONS + 1];
    int n = 0;
    for (int i = 0; i < CONFIG_N_OPTIONS; i++)
        if (in_scope(&CONFIG_OPTIONS[i], ps->bench != NULL))
            lopts[n++] = (struct option){CONFIG_OPTIONS[i].name, CONFIG_OPTIONS[i].arg ? required_argument : no_argument,
                                         NULL, 1000 + i};
    lopts[n] = (struct option){0, 0, 0, 0};
    optind = 0; /* glibc: 0 starts a fresh scan (the tests parse many command lines in one process) */
    opterr = 0;
    const char *dir = NULL;
    int c, longidx, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ps->bench ? "-ho:" : "-ho:0", lopts, &longidx)) != -1) {
        if (c != 1)
            rc = take_option(c, argv, ps, err, errlen);
        else if (dir)
            rc = config_fail(err, errlen, "more than one DIR given (%s and %s); annotate takes one folder", dir, optarg);
        else
            dir = optarg;
    }
    if (rc)
        return rc;
    if (dir && ps->cfg->files_from)
        return config_fail(err, errlen, "both DIR (%s) and --files-from given: give one of them", dir);
    if (!dir && !ps->cfg->files_from)
        return config_fail(err, errlen, "no folder given; usage: annotate DIR --out results.csv, annotate "
                                        "s3://BUCKET/PREFIX --out ..., or annotate --files-from LIST --out ... "
                                        "(see annotate --help)");
    ps->cfg->dir = dir;
    return 0;
}

static int check_and_load(struct config_parse *ps, char *err, size_t errlen);

int cli_parse(int argc, char **argv, struct config *cfg, struct bench_opts *bench, char *err, size_t errlen)
{
    config_defaults(cfg, bench);
    if (config_table_error(err, errlen))
        return -1;
    struct config_parse ps = {cfg, bench, NULL, 0, 0};
    /* At most one --header per word of argv. */
    if (!(ps.headers = calloc((size_t)argc + 1, sizeof *ps.headers)))
        return config_fail(err, errlen, "out of memory");
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

/* Where the images come from (DIR, s3://BUCKET/PREFIX or --files-from) and where the results go
 * (--format against --out's name). 0, or -1 with err. */
static int check_source_and_format(struct config *cfg, char *err, size_t errlen)
{
    struct s3_location loc;
    if (cfg->dir && !strncmp(cfg->dir, "s3://", 5)) {
        if (s3_url_parse(cfg->dir, &loc, err, errlen))
            return -1;
        s3_location_free(&loc);
    } else if (cfg->dir && (!strncmp(cfg->dir, "http://", 7) || !strncmp(cfg->dir, "https://", 8))) {
        return config_fail(err, errlen, "%s: annotate reads a folder or s3://BUCKET/PREFIX; give image URLs in a "
                                        "list with --files-from", cfg->dir);
    }
    int bucket = cfg->dir && !strncmp(cfg->dir, "s3://", 5);
    if (cfg->load_auto && bucket && cfg->query == STRAT_CURL_MULTI)
        cfg->load = STRAT_CURL_MULTI; /* a bucket's objects are fetched: on curl-multi too */
    if (cfg->load == STRAT_CURL_MULTI && !bucket && !cfg->files_from)
        return config_fail(err, errlen, "--strategy load=curl-multi fetches S3 objects and image URLs; a folder's files "
                                        "are read from the disk: use load=threads (or serial, processes)");
    if (cfg->list_nul && !cfg->files_from)
        return config_fail(err, errlen, "-0 (--null) goes with --files-from (it says how the list's entries end)");
    if (cfg->image_auth && !cfg->files_from)
        return config_fail(err, errlen, "--image-auth goes with --files-from (it is about http(s) image URLs)");
    if (cfg->retry_failed && cfg->files_from && !strcmp(cfg->files_from, "-"))
        return config_fail(err, errlen, "--retry-failed keeps a failed row whose image the list no longer names, so "
                                        "it reads the list first: give --files-from a file, not standard input");
    int by_name = results_format_of(cfg->out);
    size_t ol = strlen(cfg->out);
    int named_csv = ol >= 4 && !strcasecmp(cfg->out + ol - 4, ".csv");
    if (cfg->format_given && ((cfg->format == RESULTS_CSV && by_name == RESULTS_JSONL) ||
                              (cfg->format == RESULTS_JSONL && named_csv)))
        return config_fail(err, errlen, "--format %s, but --out %s says otherwise: name the file .%s",
                           results_format_name(cfg->format), cfg->out, results_format_name(cfg->format));
    if (!cfg->format_given)
        cfg->format = by_name;
    return 0;
}

/* What needs every option: their combinations, then the pipeline with the --header lines. */
static int check_and_load(struct config_parse *ps, char *err, size_t errlen)
{
    struct config *cfg = ps->cfg;
    if (!ps->bench && check_source_and_format(cfg, err, errlen))
        return -1;
    if (cfg->retry_failed && !cfg->resume)
        return config_fail(err, errlen, "--retry-failed goes with --resume (it re-runs the failed rows of an earlier run)");
    if (cfg->resume && !strcmp(cfg->out, "-"))
        return config_fail(err, errlen, "--resume needs --out FILE: it reads the rows already written there");
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
            return config_fail(err, errlen, errno == ENOMEM ? "out of memory loading the built-in pipeline"
                                                    : "the built-in pipeline does not parse (a bug)");
    }
    for (int h = 0; h < ps->n_headers; h++)
        if (pipeline_add_header(cfg->pipeline, ps->headers[h], err, errlen))
            return -1;
    if (pipeline_resolve(cfg->pipeline, cfg->server, err, errlen))
        return -1;
    if (pipeline_prepares(cfg->pipeline) && prep_plugin_load(err, errlen)) /* libvips, only now */
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
