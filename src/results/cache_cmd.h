/* cache_cmd: the `annotate cache` subcommand, over the answer store of --cache (store.h).
 *
 *   annotate cache stats FILE
 *       entries and result bytes per stage identity: its hash (the first 16 hex digits), stage
 *       name, version, entries, result bytes, oldest and newest put (UTC), URL; then the totals
 *       and the file's size.
 *   annotate cache prune FILE [--older-than AGE] [--stage NAME|HASH]... [--keep-pipelines P.json...]
 *                             [--server URL] [--vacuum]
 *       drops the entries that pass every filter given (at least one): put more than AGE ago
 *       (30d, 12h, 90m, 3600s, 2w); of a stage identity named NAME, or whose hash starts with
 *       HASH (6 to 32 hex digits); of an identity that none of the pipeline files uses, their
 *       relative URLs joined to --server as a run joins them (the run's default without it).
 *       Then, with --vacuum, gives the freed room back to the file system (SQLite's VACUUM: a
 *       while on a large store). Prints what went.
 *
 * Exit status: 0 done; 2 a usage error (named), a file that is not a store, a --stage that
 * matches nothing, or a failure (the message says which). A prune runs beside a run that uses
 * the store: it deletes 10,000 entries a transaction, and the run's writer waits for each. */
#ifndef ANNOTATE_CACHE_CMD_H
#define ANNOTATE_CACHE_CMD_H

#include <stddef.h>
#include <stdio.h>
#include "results/store.h"

struct cache_hooks {
    /* The stage identities of a pipeline file, as a run with --server server (NULL: the run's
     * default) would compute them (what --keep-pipelines keeps): *ids malloc'd (the caller frees
     * it), *n of them. 0, or -1 with err (the file cannot be read, is not a valid pipeline, ...).
     * NULL: --keep-pipelines is refused as not available. */
    int (*pipeline_idents)(void *ud, const char *path, const char *server, struct store_ident **ids, int *n,
                           char *err, size_t errlen);
    void *ud;
};

/* argv[0] is "cache". Prints to stdout and stderr; returns the exit status. h may be NULL. */
int cache_main(int argc, char **argv, const struct cache_hooks *h);

/* The same, printing to out and err (the tests read them). */
int cache_run(int argc, char **argv, const struct cache_hooks *h, FILE *out, FILE *err);

/* Parses an age: a whole number and a unit, s, m, h, d or w ("30d"). Seconds, or -1. */
long long cache_parse_age(const char *text);

#endif
