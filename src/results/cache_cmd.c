/* cache_cmd: see cache_cmd.h. Parsing and printing only: store_admin.c does the work. */
#include "results/cache_cmd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: annotate cache stats FILE\n"
    "       annotate cache prune FILE [--older-than AGE] [--stage NAME|HASH]... [--keep-pipelines P.json...]\n"
    "                                 [--server URL] [--vacuum]\n"
    "stats: entries and result bytes per stage identity of the answer store FILE (--cache FILE).\n"
    "prune: drops the entries that pass every filter given: put more than AGE ago (30d, 12h, 90m,\n"
    "       3600s, 2w); of the stage named NAME or whose identity hash starts with HASH (6 to 32 hex\n"
    "       digits, as stats shows them); of a stage identity no given pipeline file uses (relative\n"
    "       URLs joined to --server, as the runs had it). --vacuum then gives the room back to the\n"
    "       file system.\n";

long long cache_parse_age(const char *text)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno || end == text || n <= 0 || !*end || end[1] || text[0] == '+' || text[0] == ' ')
        return -1;
    long long unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400
                   : *end == 'w' ? 7 * 86400 : 0;
    if (!unit || n > 100LL * 366 * 86400 / unit) /* a century at most */
        return -1;
    return n * unit;
}

static void when(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "-");
}

static int stats(const char *path, FILE *out, FILE *err)
{
    struct store_summary sum;
    char msg[1200];
    if (store_stats(path, &sum, msg, sizeof msg)) {
        fprintf(err, "annotate cache: %s\n", msg);
        return 2;
    }
    int nw = 5, vw = 7;
    for (int i = 0; i < sum.n; i++) {
        int l = (int)strlen(sum.stages[i].ident.name), v = (int)strlen(sum.stages[i].ident.version);
        nw = l > nw ? l : nw;
        vw = v > vw ? v : vw;
    }
    fprintf(out, "cache %s: %llu entries, %llu bytes of results; file %llu bytes (+ %llu bytes of WAL)\n", path,
            (unsigned long long)sum.entries, (unsigned long long)sum.result_bytes,
            (unsigned long long)sum.file_bytes, (unsigned long long)sum.wal_bytes);
    if (sum.old_keys)
        fprintf(out, "(made by an earlier annotate, whose keys were SHA-256: none of its answers can be found by "
                     "this one, and a run refuses the file)\n");
    fprintf(out, "%-16s  %-*s  %-*s  %10s  %14s  %-20s  %-20s  %s\n", "identity", nw, "stage", vw, "version",
            "entries", "result bytes", "oldest", "newest", "url");
    for (int i = 0; i < sum.n; i++) {
        const struct store_stage_stats *s = &sum.stages[i];
        char hex[2 * STORE_IDENT_BYTES + 1], old[32], young[32];
        hash_hex(s->ident.id, STORE_IDENT_BYTES, hex);
        hex[16] = 0;
        when(s->oldest, old, sizeof old);
        when(s->newest, young, sizeof young);
        fprintf(out, "%-16s  %-*s  %-*s  %10llu  %14llu  %-20s  %-20s  %s\n", hex, nw, s->ident.name, vw,
                s->ident.version[0] ? s->ident.version : "-", (unsigned long long)s->entries,
                (unsigned long long)s->result_bytes, old, young, s->ident.url);
    }
    store_summary_free(&sum);
    return 0;
}

/* What prune's command line gave; freed with prune_args_free. */
struct prune_args {
    struct store_prune p;
    const char *server; /* --server: what the pipelines' relative URLs are joined to */
    const char **stages;
    unsigned char (*keep)[STORE_IDENT_BYTES];
};

static void prune_args_free(struct prune_args *a)
{
    free(a->stages);
    free(a->keep);
}

/* Adds the identities of one pipeline file to the keep list. 0, or 2 with a message. */
static int keep_pipeline(struct prune_args *a, const char *file, const struct cache_hooks *h, FILE *err)
{
    struct store_ident *ids = NULL;
    int n = 0;
    char msg[1200] = "";
    if (!h || !h->pipeline_idents) {
        fprintf(err, "annotate cache prune: --keep-pipelines is not available in this build\n");
        return 2;
    }
    if (h->pipeline_idents(h->ud, file, a->server, &ids, &n, msg, sizeof msg)) {
        fprintf(err, "annotate cache prune: --keep-pipelines %s: %s\n", file, msg);
        return 2;
    }
    void *k = realloc(a->keep, (size_t)(a->p.n_keep + n + 1) * sizeof *a->keep);
    if (!k) {
        free(ids);
        fprintf(err, "annotate cache prune: out of memory\n");
        return 2;
    }
    a->keep = k;
    for (int i = 0; i < n; i++)
        memcpy(a->keep[a->p.n_keep++], ids[i].id, STORE_IDENT_BYTES);
    a->p.keep = (const unsigned char(*)[STORE_IDENT_BYTES])a->keep;
    a->p.keep_given = 1;
    free(ids);
    return 0;
}

/* One option of prune at argv[*i] (moved past what it took). 0, or 2 with a message. */
static int prune_option(int argc, char **argv, int *i, struct prune_args *a, const struct cache_hooks *h, FILE *err)
{
    const char *o = argv[*i];
    if (!strcmp(o, "--vacuum")) {
        a->p.vacuum = 1;
    } else if (!strcmp(o, "--server")) {
        ++*i; /* read before the others (prune): --keep-pipelines uses it wherever it is */
    } else if (!strcmp(o, "--older-than") || !strcmp(o, "--stage")) {
        if (*i + 1 >= argc) {
            fprintf(err, "annotate cache prune: %s needs a value\n", o);
            return 2;
        }
        const char *v = argv[++*i];
        if (o[2] == 'o' && (a->p.older_than = cache_parse_age(v)) < 0) {
            fprintf(err, "annotate cache prune: --older-than %s: give a whole number and a unit, s, m, h, d or w "
                         "(30d)\n", v);
            return 2;
        }
        if (o[2] == 's') {
            a->stages[a->p.n_stages++] = v;
            a->p.stages = a->stages;
        }
    } else if (!strcmp(o, "--keep-pipelines")) {
        int any = 0;
        while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) {
            if (keep_pipeline(a, argv[++*i], h, err))
                return 2;
            any = 1;
        }
        if (!any) {
            fprintf(err, "annotate cache prune: --keep-pipelines needs one pipeline file at least\n");
            return 2;
        }
    } else {
        fprintf(err, "annotate cache prune: unknown option %s\n%s", o, USAGE);
        return 2;
    }
    return 0;
}

static int prune(int argc, char **argv, const struct cache_hooks *h, FILE *out, FILE *err)
{
    const char *path = argv[1];
    struct prune_args a = {.stages = calloc((size_t)argc, sizeof *a.stages)};
    int rc = a.stages ? 0 : 2;
    for (int i = 2; rc == 0 && i < argc; i++)
        if (!strcmp(argv[i], "--server") && (i + 1 >= argc || !(a.server = argv[++i]))) {
            fprintf(err, "annotate cache prune: --server needs a value\n");
            rc = 2;
        }
    for (int i = 2; rc == 0 && i < argc; i++)
        rc = prune_option(argc, argv, &i, &a, h, err);
    if (rc == 0 && !a.p.older_than && !a.p.n_stages && !a.p.keep_given) {
        fprintf(err, "annotate cache prune: say what to drop: --older-than, --stage or --keep-pipelines (to drop "
                     "everything, remove the file)\n");
        rc = 2;
    }
    struct store_pruned r;
    char msg[1200];
    if (rc == 0 && store_prune(path, &a.p, &r, msg, sizeof msg)) {
        fprintf(err, "annotate cache prune: %s\n", msg);
        rc = 2;
    }
    if (rc == 0)
        fprintf(out, "cache %s: dropped %llu entries (%llu bytes of results); %d stage identities left without "
                     "entries removed; file %llu -> %llu bytes%s\n",
                path, (unsigned long long)r.entries, (unsigned long long)r.result_bytes, r.identities,
                (unsigned long long)r.file_before, (unsigned long long)r.file_after,
                a.p.vacuum ? "" : " (--vacuum gives the room back)");
    prune_args_free(&a);
    return rc;
}

int cache_run(int argc, char **argv, const struct cache_hooks *h, FILE *out, FILE *err)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(USAGE, out);
        return 0;
    }
    int is_stats = argc >= 2 && !strcmp(argv[1], "stats"), is_prune = argc >= 2 && !strcmp(argv[1], "prune");
    if (!is_stats && !is_prune) {
        if (argc >= 2)
            fprintf(err, "annotate cache: unknown command %s\n", argv[1]);
        fputs(USAGE, err);
        return 2;
    }
    if (argc < 3 || argv[2][0] == '-' || (is_stats && argc > 3)) {
        fprintf(err, "annotate cache %s: %s\n%s", argv[1], argc < 3 || argv[2][0] == '-' ? "give the store's FILE first"
                                                                                        : "takes one FILE", USAGE);
        return 2;
    }
    return is_stats ? stats(argv[2], out, err) : prune(argc - 1, argv + 1, h, out, err);
}

int cache_main(int argc, char **argv, const struct cache_hooks *h)
{
    return cache_run(argc, argv, h, stdout, stderr);
}
