/* e2e_util: helpers shared by the end-to-end and fault tests (test_e2e.c, test_faults.c).
 *
 *   - results files read back with libcsv into rows of fields (byte strings, lengths kept);
 *   - the prediction of every cell of a row from the image's bytes, through the mock's own
 *     models (mock_answer), and the check of a whole results file against a list of paths;
 *   - annotate started in the background (so a test can act while it runs), its children found
 *     through /proc, a closed port, temporary directories.
 *
 * Paths are byte strings (see util_tree.h): compare them with memcmp, never print them raw. */
#ifndef ANNOTATE_TESTS_E2E_UTIL_H
#define ANNOTATE_TESTS_E2E_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- results files ---- */

struct e2e_field {
    char *s; /* owned, NUL-terminated (a path cannot hold a NUL) */
    size_t len;
};

struct e2e_row {
    struct e2e_field *f;
    int n;
};

struct e2e_csv {
    struct e2e_row header;
    struct e2e_row *rows; /* the records after the header */
    size_t n, cap;
    int ragged;    /* rows whose field count differs from the header's */
    int complete;  /* the file ends with a newline (or is empty) */
};

/* The column indexes of the seed chain's results file. */
enum { COL_PATH, COL_STATUS, COL_M01, COL_M02, COL_M03, COL_M05, COL_ERROR, COL_ATTEMPTS, COL_ELAPSED, N_COLS };

#define E2E_HEADER "path,status,model_01,model_02,model_03,model_05,error,attempts,elapsed_ms\n"

/* Reads a results file (strict CSV). Returns 0, or -1 when it cannot be read or is not CSV. */
int e2e_csv_read(const char *path, struct e2e_csv *out);
void e2e_csv_free(struct e2e_csv *c);

/* 1 when the header is exactly the seed chain's, and every row has its N_COLS fields. */
int e2e_csv_well_formed(const struct e2e_csv *c);

/* Sum of the attempts column. */
long e2e_csv_attempts(const struct e2e_csv *c);

/* A sorted list of the rows with the attempts and elapsed_ms columns left out (each a malloc'd
 * string, fields joined by 0x1f; free with free_strs of util.h): compares the results of two runs. */
char **e2e_csv_keys(const struct e2e_csv *c);

/* ---- predictions ---- */

struct e2e_pred {
    char *cell[4];   /* model_01, model_02, model_03, model_05 columns; "" when empty; owned */
    int requests[5]; /* requests the chain makes to model_01 .. model_05 */
};

/* The row an image of these bytes must get. Returns 0, or -1 on a failure of the models. */
int e2e_predict(const unsigned char *bytes, size_t len, struct e2e_pred *p);
void e2e_pred_free(struct e2e_pred *p);

/* argv (at most max entries, NULL-terminated) for: annotate ROOT --out CSV --server URL --quiet
 * [--force unless EXTRA has --resume] EXTRA... Returns the count. */
int e2e_annotate_argv(const char **argv, int max, const char *root, const char *csv, const char *server,
                      const char *const *extra);

/* Runs annotate ROOT --out CSV --server URL --quiet EXTRA... (extra NULL-terminated, or NULL)
 * through run_cmd: its output into out, killed after timeout_s. Returns run_cmd's status. */
int e2e_run(char *out, size_t outlen, int timeout_s, const char *root, const char *csv, const char *server,
            const char *const *extra);

struct mock_proc;
/* POST /stats/reset on the mock. 0 or -1. */
int e2e_stats_reset(const struct mock_proc *m);

/* What check_results expects of the rows. */
struct e2e_expect {
    uint64_t max_bytes;       /* > 0: larger files must be failed, mentioning max-image-bytes */
    const char *fail_substr;  /* non-NULL: every non-empty image must be failed with this in its
                                 error (case-insensitive), result cells empty */
    int allow_worker_failed;  /* a row may be failed with an error naming a worker process */
    int check_attempts;       /* ok rows: attempts == the predicted number of requests */
};

/* Checks a results file against the list of paths it must hold (byte-exact, each once): ok rows
 * with every cell as predicted, empty files failed mentioning "empty", the expectations above.
 * Adds the requests the rows imply to req[5] (may be NULL). Returns the number of problems
 * (the first few described on stderr, paths escaped). */
long e2e_check_results(const struct e2e_csv *c, char *const *paths, size_t n,
                       const struct e2e_expect *x, long req[5]);

/* The paths of a tree_make_generated(root, n, ...) tree. Free with free_strs (util.h). */
char **e2e_generated_paths(const char *root, size_t n);

/* A JSON file (--stats-json) parsed; NULL when missing or not JSON. cJSON_Delete it. */
struct cJSON;
struct cJSON *e2e_read_json(const char *path);

/* A number field of a JSON object; -1 when missing. */
double e2e_json_num(const struct cJSON *o, const char *key);

/* Checks an annotate --stats-json summary against a results file: attempts equals the attempts
 * column's sum, retries equals attempts - requests (no wrap-around), images_ok/images_failed
 * match the rows; requests_want >= 0: requests must equal it. Returns the number of problems
 * (described on stderr). */
long e2e_check_summary(const char *stats_json, const struct e2e_csv *c, long requests_want);

/* ---- a test's tree ---- */

/* A fresh temporary directory holding a tree of images, and the names of a run's files in it. */
struct e2e_tree {
    char base[512];  /* $TMPDIR/annotate-TAG-XXXXXX, removed by e2e_tree_free */
    char root[600];  /* base/t: the images */
    char csv[600];   /* base/r.csv */
    char log[600];   /* base/log */
    char sj[600];    /* base/stats.json */
    char **paths;    /* the paths a scan of root must report (see util_tree.h) */
    size_t n;
};

/* With tree_make_generated(root, n, 200, seed): n distinct valid PNGs of 200 bytes. 0, or -1 with
 * nothing left behind. */
int e2e_tree_generated(struct e2e_tree *t, const char *tag, size_t n, unsigned seed);

/* With tree_make_hostile(root, e2e_fixtures_dir()), paths from tree_expected. 0 or -1. */
int e2e_tree_hostile(struct e2e_tree *t, const char *tag);

/* Removes the directory and frees the paths; t may be zeroed, or freed already. */
void e2e_tree_free(struct e2e_tree *t);

/* ---- processes ---- */

/* $ANNOTATE_BIN, or build/annotate. */
const char *e2e_annotate_bin(void);

/* The test images: $ANNOTATE_FIXTURES, or fixtures/images. */
const char *e2e_fixtures_dir(void);

/* Starts argv (argv[0] a path, not looked up) in its own process group, stdin from /dev/null,
 * stdout and stderr appended to log_path (NULL: /dev/null). Returns the pid or -1. */
pid_t e2e_spawn(const char *const argv[], const char *log_path);

/* Waits up to timeout_s for pid; returns its exit status, 128 + signal, or -2 after a timeout
 * (the process group is then killed with SIGKILL and reaped). */
int e2e_wait(pid_t pid, int timeout_s);

/* Waits until the file has at least `lines` lines: 1 when it got there, 0 when pid ended first or
 * the time ran out (the caller finds out which from e2e_wait). */
int e2e_wait_lines(const char *csv, long lines, pid_t pid, int timeout_s);

/* The children of pid (from /proc/PID/stat), with their states ('R', 'S', 'Z'...) when state
 * is not NULL. Returns the count (at most max). */
int e2e_children(pid_t parent, pid_t *kids, char *state, int max);

/* The number of live (not zombie) processes in process group pgid. */
int e2e_group_count(pid_t pgid);

/* 1 while pid exists and is not a zombie. */
int e2e_alive(pid_t pid);

/* The number of '\n' in a file (0 when missing). */
long e2e_count_lines(const char *path);

/* A local TCP port that nothing listens on (bound, then closed). -1 on failure. */
int e2e_closed_port(void);

#endif
