/* fdlimit: see fdlimit.h.
 *
 * What a run holds open at most, measured (ls /proc/PID/fd, sampled, libcurl 7.88) and rounded up:
 *   fixed        the results file, its rewrite, the shared page, --stats-json, the rate limiter,
 *                libc, libcurl and OpenSSL's own files (CA bundle, resolv.conf), DNS: FIXED
 *   scanning     the run's walk and the progress line's counting walk: max_open streams each
 *   load         threads: one image file per worker, and with a bucket or a list the connection
 *                its fetch handle keeps; processes: two pipes per worker (the parent's ends; a
 *                worker's own descriptors count against its own table); curl-multi (fetches):
 *                one connection per fetch in flight (--concurrency) and its loop's PER_LOOP
 *   query        threads: three per worker (a connection, and the socket pair of the internal
 *                multi handle curl_easy_perform keeps); processes: two pipes per worker;
 *                curl-multi: one connection per request in flight, and per event loop its epoll,
 *                curl's wake-up pair and the 8 spare cached connections (CURLMOPT_MAXCONNECTS is
 *                the loop's share + 8)
 *   serial       one file and one handle (3).
 *   --cache      the answer store: its file and WAL per connection (the writer and two readers)
 *                and one shared-memory file: STORE_FDS. */
#include "fdlimit.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define FIXED 16
#define SCAN_DEFAULT_OPEN 128
#define PER_LOOP 12
#define STORE_FDS 8

long fdlimit_open_now(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 8; /* no /proc: a guess, covered by FIXED's slack */
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the one opendir holds */
}

static long scan_cost(const struct config *cfg)
{
    long each = cfg->scan.max_open ? (long)cfg->scan.max_open : SCAN_DEFAULT_OPEN;
    return 2 * each;
}

/* What the stages hold, for w workers, c requests in flight and l loops. */
static long stage_cost(const struct config *cfg, long w, long c, long l)
{
    if (cfg->load == STRAT_PROCESSES && cfg->query == STRAT_PROCESSES)
        return 2 * w + 2; /* fused; + a spawn's pair in passing */
    long n = 0;
    int fetching = cfg->files_from || (cfg->dir && !strncmp(cfg->dir, "s3://", 5));
    switch (cfg->load) {
    case STRAT_THREADS: n += fetching ? 2 * w : w; break;
    case STRAT_PROCESSES: n += 2 * w + 2; break;
    case STRAT_CURL_MULTI: n += c + PER_LOOP; break;
    default: n += 1; break;
    }
    switch (cfg->query) {
    case STRAT_THREADS: n += 3 * w; break;
    case STRAT_PROCESSES: n += 2 * w + 2; break;
    case STRAT_CURL_MULTI: n += c + PER_LOOP * l; break;
    default: n += 3; break;
    }
    return n;
}

long fdlimit_need(const struct config *cfg, long open_now)
{
    long loops = cfg->loops > 0 ? cfg->loops : 1;
    return open_now + FIXED + scan_cost(cfg) + stage_cost(cfg, cfg->workers, cfg->concurrency, loops) +
           (cfg->cache ? STORE_FDS : 0);
}

/* Whether w and c matter for this run's strategies. */
static int uses_workers(const struct config *cfg)
{
    return cfg->load == STRAT_THREADS || cfg->load == STRAT_PROCESSES || cfg->query == STRAT_THREADS ||
           cfg->query == STRAT_PROCESSES;
}

int fdlimit_fit(struct config *cfg, char *note, size_t notelen, char *err, size_t errlen)
{
    note[0] = '\0';
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0; /* nothing known: run as asked */
    long open_now = fdlimit_open_now();
    long need = fdlimit_need(cfg, open_now);
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur && rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || (rlim_t)need * 2 < rl.rlim_max ? (rlim_t)need * 2 : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur == RLIM_INFINITY || (rlim_t)need <= rl.rlim_cur)
        return 0;
    long limit = (long)rl.rlim_cur;

    /* Too few even when raised: scan with fewer streams, then scale the stages down. */
    long scan_each = limit / 16;
    if (scan_each < 4)
        scan_each = 4;
    if (scan_each < SCAN_DEFAULT_OPEN)
        cfg->scan.max_open = (size_t)scan_each;
    long avail = limit - open_now - FIXED - scan_cost(cfg);
    long w = cfg->workers, c = cfg->concurrency, l = cfg->loops > 0 ? cfg->loops : 1;
    int multi = cfg->query == STRAT_CURL_MULTI || cfg->load == STRAT_CURL_MULTI, workers = uses_workers(cfg);
    /* Event loops cost PER_LOOP each whatever they carry: at most a quarter of what is left. */
    if (multi && PER_LOOP * l > avail / 4)
        l = avail / 4 / PER_LOOP > 1 ? avail / 4 / PER_LOOP : 1;
    long fixed_part = stage_cost(cfg, 0, 0, multi ? l : 0);
    long var = stage_cost(cfg, w, c, multi ? l : 0) - fixed_part;
    if (var > 0 && avail > fixed_part) {
        double f = (double)(avail - fixed_part) / (double)var;
        if (f < 1) {
            if (workers && w > 1)
                w = (long)((double)w * f) > 1 ? (long)((double)w * f) : 1;
            if (multi && c > 1)
                c = (long)((double)c * f) > 1 ? (long)((double)c * f) : 1;
        }
    }
    /* Fewer loops than requests; then shave one at a time until it fits (the max(1)s above). */
    if (multi && l > c)
        l = c;
    while (stage_cost(cfg, w, c, multi ? l : 0) > avail) {
        if (multi && l > 1 && PER_LOOP * l > c)
            l--;
        else if (multi && c > 1 && (!workers || c >= w))
            c--;
        else if (workers && w > 1)
            w--;
        else if (multi && c > 1)
            c--;
        else if (multi && l > 1)
            l--;
        else
            break;
    }
    if (stage_cost(cfg, w, c, multi ? l : 0) > avail) {
        long min_need = open_now + FIXED + scan_cost(cfg) + stage_cost(cfg, 1, 1, 1);
        snprintf(err, errlen, "ulimit -n is %ld, too low for this run: it needs at least %ld open files (%ld are "
                 "open already); raise it with ulimit -n", limit, min_need, open_now);
        return -1;
    }
    char what[200] = "";
    size_t at = 0;
    if (workers && w != cfg->workers)
        at += (size_t)snprintf(what + at, sizeof what - at, "--workers %ld (not %d)", w, cfg->workers);
    if (multi && c != cfg->concurrency)
        at += (size_t)snprintf(what + at, sizeof what - at, "%s--concurrency %ld (not %d)", at ? ", " : "", c,
                               cfg->concurrency);
    if (multi && l != (cfg->loops > 0 ? cfg->loops : 1) && at < sizeof what)
        at += (size_t)snprintf(what + at, sizeof what - at, "%s--loops %ld (not %d)", at ? ", " : "", l, cfg->loops);
    cfg->workers = (int)w;
    cfg->concurrency = (int)c;
    if (multi)
        cfg->loops = (int)l;
    if (at) {
        char hard[32] = "unlimited";
        if (rl.rlim_max != RLIM_INFINITY)
            snprintf(hard, sizeof hard, "%ld", (long)rl.rlim_max);
        snprintf(note, notelen, "ulimit -n is %ld: running with %s, so that the run stays within its open files; "
                 "raise ulimit -n (the hard limit is %s) for more", limit, what, hard);
    }
    return 0;
}
