/* bench-resume: writes a results file of N rows (default 1,000,000) in the default pipeline's
 * format, with realistic paths and JSON cells and a torn last row, then times opening it for resume (results_open): the lock, the
 * header check, the torn-row repair and loading the done-set. Best of RUNS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "results/results.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    const char *path = argc > 3 ? argv[3] : "/tmp/annotate-bench-resume.csv";
    struct pipeline *p;
    pipeline_default(&p);
    char *header = csv_header(p);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    for (int r = 0; r < runs; r++) {
        if (r == 0) {
            fputs(header, f);
            for (long i = 0; i < n; i++) {
                if (i % 10 == 7)
                    fprintf(f, "/data/photos/%04ld/IMG_%07ld.jpg,failed,,,,,\"model_01: HTTP 500: {\"\"error\"\": 1} (after 4 attempts)\",4,120\n",
                            i / 1000, i);
                else
                    fprintf(f, "/data/photos/%04ld/IMG_%07ld.jpg,ok,\"{\"\"label\"\":\"\"cat\"\",\"\"score\"\":%ld}\",\"[\"\"tag_a\"\",\"\"tag_q\"\"]\","
                               "\"{\"\"id\"\":\"\"%016lx\"\",\"\"regions\"\":2}\",\"[{\"\"label\"\":\"\"dog\"\",\"\"bytes\"\":77},{\"\"label\"\":\"\"car\"\",\"\"bytes\"\":120}]\",,6,35\n",
                            i / 1000, i, i % 1000, (unsigned long)i * 2654435761u);
            }
            fclose(f);
        }
        /* a torn row, as kill -9 in the middle of a write would leave */
        f = fopen(path, "a");
        fputs("\"/data/photos/torn", f);
        fclose(f);
        struct doneset *d;
        struct resume_info info;
        char err[512];
        double t0 = now();
        struct results_opts o = {.path = path, .resume = 1};
        struct results *res = results_open(&o, p, &d, &info, err, sizeof err);
        if (!res) {
            fprintf(stderr, "bench-resume: %s\n", err);
            return 1;
        }
        double t1 = now();
        results_close(res);
        printf("resume: %llu rows (%llu ok, %llu failed), done-set %llu paths, torn %llu bytes cut: %.3f s\n",
               (unsigned long long)info.rows, (unsigned long long)info.ok, (unsigned long long)info.failed,
               (unsigned long long)doneset_size(d), (unsigned long long)info.torn_bytes, t1 - t0);
        doneset_free(d);
    }
    remove(path);
    free(header);
    pipeline_free(p);
    return 0;
}
