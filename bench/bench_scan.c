/* bench-scan: walks DIR with annotate's scanner and prints how many images it found and how long
 * it took (best of RUNS), beside the same for `find DIR -type f`, so the ratio is measured in one
 * run on one machine. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "flow/scan.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-scan DIR [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    double best_scan = 1e9, best_find = 1e9;
    unsigned long long n = 0, nf = 0;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "find '%s' -type f | wc -l", argv[1]);
    for (int r = 0; r < runs; r++) {
        char err[256];
        double t0 = now();
        scanner *s = scan_open(argv[1], NULL, err, sizeof err);
        if (!s) {
            fprintf(stderr, "bench-scan: %s\n", err);
            return 1;
        }
        struct scan_entry e;
        n = 0;
        while (scan_next(s, &e) == 1)
            n++;
        scan_close(s);
        double t1 = now();
        if (t1 - t0 < best_scan)
            best_scan = t1 - t0;
        FILE *p = popen(cmd, "r");
        if (!p || fscanf(p, "%llu", &nf) != 1)
            nf = 0;
        if (p)
            pclose(p);
        double t2 = now();
        if (t2 - t1 < best_find)
            best_find = t2 - t1;
    }
    printf("scanner: %llu images in %.3f s (%.0f files/s)\n", n, best_scan, (double)n / best_scan);
    printf("find -type f | wc -l: %llu files in %.3f s (%.0f files/s)\n", nf, best_find, (double)nf / best_find);
    printf("scanner time / find time: %.2f (best of %d, page cache warm)\n", best_scan / best_find, runs);
    return 0;
}
