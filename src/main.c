/* annotate: sends every image of a folder through a chain of HTTP model servers and writes one
 * CSV row per image. main() is the only place that exits: it parses the command line, runs,
 * benchmarks, merges or looks after a --cache store, and prints the summary. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "chain/memo.h"
#include "cli.h"
#include "common/secrets.h"
#include "drivers/worker.h"
#include "drivers/ipc.h"
#include "flow/load.h"
#include "results/cache_cmd.h"
#include "results/merge.h"
#include "runner.h"
#include "summary.h"

int main(int argc, char **argv)
{
    char err[1024] = "";
    signal(SIGPIPE, SIG_IGN); /* a dead worker's pipe or a closed stdout is an error, not a death */
    atexit(secrets_clear);    /* the secrets the run held are wiped, not left in freed memory */
    if (curl_global_init(CURL_GLOBAL_ALL)) {
        fprintf(stderr, "annotate: libcurl failed to initialise\n");
        return 2;
    }
    int rc;
    if (argc == 2 && !strcmp(argv[1], IPC_WORKER_ARG)) {
        /* A worker process of the processes strategy: the one place that decides it. Its
         * configuration comes from its parent, never from the command line. */
        rc = exec_proc_worker_main();
        curl_global_cleanup();
        return rc;
    }
    if (argc >= 2 && !strcmp(argv[1], "merge")) {
        rc = merge_main(argc - 1, argv + 1);
        curl_global_cleanup();
        return rc;
    }
    if (argc >= 2 && !strcmp(argv[1], "cache")) {
        /* The answer store of --cache: stats, prune (a pipeline's identities as a run has them). */
        const struct cache_hooks hooks = {memo_pipeline_idents, NULL};
        rc = cache_main(argc - 1, argv + 1, &hooks);
        curl_global_cleanup();
        return rc;
    }
    int is_bench = argc >= 2 && !strcmp(argv[1], "bench");
    struct config cfg;
    struct bench_opts bo;
    int pr = is_bench ? cli_parse(argc - 1, argv + 1, &cfg, &bo, err, sizeof err)
                      : cli_parse(argc, argv, &cfg, NULL, err, sizeof err);
    if (pr) {
        if (pr < 0)
            fprintf(stderr, "annotate: %s\n", err);
        config_free(&cfg);
        if (is_bench)
            bench_opts_free(&bo);
        curl_global_cleanup();
        return pr < 0 ? 2 : 0;
    }
    if (is_bench) {
        rc = bench_main(&cfg, &bo);
        bench_opts_free(&bo);
    } else {
        struct run_summary sum;
        struct stats *st = NULL;
        rc = load_start(&cfg, err, sizeof err) ? 2 : runner_run(&cfg, &sum, &st, err, sizeof err);
        if (rc == 2 && err[0]) {
            fprintf(stderr, "annotate: %s\n", err);
        } else {
            if (!cfg.quiet)
                summary_print(stderr, &cfg, &sum, st);
            if (cfg.stats_json && summary_write_json(cfg.stats_json, &cfg, &sum, st, err, sizeof err)) {
                fprintf(stderr, "annotate: %s\n", err);
                if (rc == 0)
                    rc = 2;
            }
        }
        stats_free(st);
        load_stop();
    }
    config_free(&cfg);
    curl_global_cleanup();
    return rc;
}
