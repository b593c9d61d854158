/* batchy: tests/servers/batchy.py (TF Serving style requests, with the faults its docstring lists)
 * as a test's server, and runs of a one-stage template pipeline against it over a tree of named
 * files, with the check of every row.
 *
 * The tree: n files img000.png, img001.png, ... (30 + 3i bytes of one letter each), named
 * bad%03d.png at the indexes of bad[], which batchy.py fails as its endpoint says.
 * The pipeline: one stage "m" on the endpoint, "retries": 2, "error": ".error" (or the case's); its body
 * {"instances": ITEMS}, each item {"name": "{{name}}", "b64": "{{image}}"}: a "batch" of them, or
 * one; its "result" .predictions (a batch: one element per image) or .predictions[0], or the
 * case's own jq. A good file's cell is its prediction, {"name": N, "len": L} (with a /big/P
 * endpoint's pad), byte for byte as the server wrote it, or as jq prints it (compact). */
#ifndef ANNOTATE_TESTS_BATCHY_H
#define ANNOTATE_TESTS_BATCHY_H

#include <cjson/cJSON.h>

struct mock_proc;

/* Starts tests/servers/batchy.py (from the repository root, or its parent) with
 * listener_start. 0 or -1. */
int batchy_start(struct mock_proc *m);

struct batchy_case {
    const char *endpoint;    /* "/ok", "/poison", "/big/3000", ... */
    int n;                   /* files */
    const int *bad;          /* the indexes of the "bad" ones */
    int n_bad;
    const char *want_bad;    /* each bad row is failed with this in its error */
    const char *want_all;    /* or, non-NULL: every row is failed with this */
    const char *const *opts; /* more options, NULL-terminated (may be NULL) */
    int batch;               /* the batch's size; 0: no batch */
    int wait_ms;             /* the batch's max_wait_ms (0: 50) */
    const char *result;      /* a jq "result" of the stage (NULL: the plain path above) */
    const char *error;       /* its "error" (NULL: .error) */
    int bad_attempts;        /* > 0: each bad row has exactly this many attempts */
    int may_stop;            /* exit 2 with no row is right too (a set-up error's verdict) */
    double seconds;          /* out: how long the run took */
};

/* Runs annotate with the case's pipeline (--concurrency 4, --backoff-ms 1, --backoff-max-ms 5,
 * then opts), checks its exit (1 when rows fail, else 0) and every row (CUnit assertions).
 * Returns the server's GET /stats ({"requests", "items", "sizes": [each request's items]}), to
 * cJSON_Delete, or NULL. */
cJSON *batchy_run(struct batchy_case *c);

/* A number of the stats (-1 when missing), and how many requests carried a single item. */
long batchy_stat(const cJSON *stats, const char *key);
int batchy_singles(const cJSON *stats);

#endif
