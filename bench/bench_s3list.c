/* bench-s3list: lists s3://BUCKET/PREFIX with annotate's S3 client (src/sources/s3.h), page after
 * page, with the configuration from the environment as a run reads it (AWS_ENDPOINT_URL, the
 * credentials...), and prints the keys, pages and time, with the process's resident memory as
 * the listing goes on: VmRSS and its peak VmHWM (from /proc/self/status) after pages 1, 10, 100,
 * 500, 1000, 2000... and at the end, beside s3_lister_bytes. Flat memory means the peak after
 * the last page is the peak after the first few.
 *
 *   bench-s3list s3://BUCKET/PREFIX [EXPECTED_KEYS]
 *
 * With EXPECTED_KEYS it exits 1 unless exactly that many keys were listed. bench/s3list.sh runs
 * it against tests/servers/s3sig.py --synthetic (make bench-s3list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sources/s3.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A "Vm...:   N kB" line of /proc/self/status, in kB; -1 when missing. */
static long vm_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static int report_at(unsigned long long page)
{
    return page == 1 || page == 10 || page == 100 || page == 500 || (page % 1000) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-s3list s3://BUCKET/PREFIX [EXPECTED_KEYS]\n");
        return 2;
    }
    char err[512];
    struct s3_location loc;
    struct s3_config *cfg = NULL;
    struct s3_client *c = NULL;
    if (s3_url_parse(argv[1], &loc, err, sizeof err) != 0 || !(cfg = s3_config_load(NULL, NULL, err, sizeof err)) ||
        !(c = s3_client_new(cfg, loc.bucket, err, sizeof err))) {
        fprintf(stderr, "bench-s3list: %s\n", err);
        return 2;
    }
    struct s3_list_opts o = {.prefix = loc.prefix};
    struct s3_lister *l = s3_lister_new(c, &o, err, sizeof err);
    const struct s3_page *p;
    struct s3_result res;
    unsigned long long keys = 0, retries = 0;
    double t0 = now();
    int rc;
    printf("%10s %12s %10s %12s %14s\n", "page", "keys", "VmRSS kB", "VmHWM kB", "lister bytes");
    while ((rc = s3_lister_next(l, &p, &res)) != 0) {
        if (rc < 0 && res.outcome == S3_RETRY && retries++ < 100)
            continue;
        if (rc < 0) {
            fprintf(stderr, "bench-s3list: %s\n", res.message);
            return 1;
        }
        keys += p->n;
        if (report_at(s3_lister_pages(l)))
            printf("%10llu %12llu %10ld %12ld %14zu\n", (unsigned long long)s3_lister_pages(l), keys, vm_kb("VmRSS"),
                   vm_kb("VmHWM"), s3_lister_bytes(l));
    }
    double dt = now() - t0;
    printf("%10s %12llu %10ld %12ld %14zu\n", "end", keys, vm_kb("VmRSS"), vm_kb("VmHWM"), s3_lister_bytes(l));
    printf("%llu keys in %llu pages in %.2f s (%.0f keys/s), %llu retries\n", keys,
           (unsigned long long)s3_lister_pages(l), dt, keys / dt, retries);
    s3_lister_free(l);
    s3_client_free(c);
    s3_config_free(cfg);
    s3_location_free(&loc);
    if (argc > 2 && keys != strtoull(argv[2], NULL, 10)) {
        fprintf(stderr, "bench-s3list: %llu keys, want %s\n", keys, argv[2]);
        return 1;
    }
    return 0;
}
