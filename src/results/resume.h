/* resume: reading a results file's rows back, so a run can continue where a crashed or stopped
 * one ended (results.c does it on the locked file; merge.c on its inputs). Images are keyed by
 * path (the bytes of the path column); the done-set is the set of paths to skip: the ok rows,
 * and the failed rows that are not to be redone (see struct resume_redo). */
#ifndef ANNOTATE_RESUME_H
#define ANNOTATE_RESUME_H

#include <stddef.h>
#include <stdint.h>
#include "pipeline/pipeline.h"

struct doneset;

struct resume_info {
    uint64_t rows, ok, failed, dropped_failed;
    uint64_t kept_failed;  /* failed rows that stay (not dropped to be redone) */
    uint64_t kept_missing; /* of those, rows --retry-failed kept because their file is gone */
    uint64_t torn_bytes;   /* bytes cut off the end */
    uint64_t duplicates;   /* rows whose path was seen before (kept the first) */
};

/* The value (doneset_get) of a path in a resume's done-set whose row is failed; an ok row's is 0. */
#define RESUME_ROW_FAILED 1

/* Which failed rows a resume drops so that their image (or folder) is run again. A row is
 * dropped only when the run will find its path again, so that no row is ever lost: a failed row
 * whose file no longer exists stays as it is. Failed folder rows (a path ending in '/', written
 * when a folder could not be read) are candidates on every resume, failed image rows only with
 * retry_failed. */
struct resume_redo {
    int retry_failed;
    /* 1 when this run will find path again (an image file, or a folder for a path ending in '/').
     * NULL: resume_path_exists. */
    int (*can_redo)(void *ud, const char *path, size_t len);
    void *ud;
    struct doneset *redo; /* receives the paths whose failed rows are dropped; may be NULL */
};

/* A folder's plain spelling: p[0, n) without "." and empty parts (./ds, ds/ and ds//. are all
 * ds; a leading '/' stays), into out (room for n + 1 bytes, not NUL-terminated); its length.
 * Rows are keyed by path as the run's DIR spelled it, so two spellings of one folder key one
 * image twice: --resume (results.c) and merge name the spelling a file's rows use with it. */
size_t results_plain_folder(const char *p, size_t n, char *out);

/* The default can_redo: path (without NUL bytes) names a regular file, or a directory when it ends
 * in '/'; symbolic links are not followed, as the scanner follows none. */
int resume_path_exists(void *ud, const char *path, size_t len);

/* Parses CSV text already in memory (the fuzz target and the benchmark use it). Returns the number
 * of complete rows, fills the set (a path's value RESUME_ROW_FAILED when its row is failed), and sets *complete_len to the length of the complete-row prefix.
 * resume_parse is resume_parse_redo with {retry_failed} and the default can_redo. */
int64_t resume_parse(const char *text, size_t len, const char *header, int retry_failed,
                     struct doneset *set, size_t *complete_len, struct resume_info *info,
                     char *err, size_t errlen);
int64_t resume_parse_redo(const char *text, size_t len, const char *header, const struct resume_redo *redo,
                          struct doneset *set, size_t *complete_len, struct resume_info *info,
                          char *err, size_t errlen);

/* Calls fn for every complete, well-formed row of a results file in memory: its path, whether it
 * is ok, and its bytes [start, end). Checks the header against `header` (a csv_header line).
 * Returns the number of records (header included) and the length of the complete-row prefix, or
 * -1 with err when the text is not a results file of this pipeline, or -2 when out of memory
 * (resume_parse too). */
typedef void (*csv_row_fn)(void *ud, const char *path, size_t len, int ok, size_t start, size_t end);
int64_t csv_rows(const char *text, size_t len, const char *header, csv_row_fn fn, void *ud,
                 size_t *complete_len, char *err, size_t errlen);

/* The two formats of a results file. CSV: a header line, then one RFC 4180 record a row. JSON
 * Lines: no header; one JSON object a line (its newline included), whose keys are the CSV's
 * columns in the CSV's order: "path" (a string: the path's bytes as json_put_bytes writes them,
 * so a name that is not UTF-8 comes back byte for byte), "status" ("ok" or "failed"), one key
 * per CSV stage holding its result as the server sent it (null when the stage did not run),
 * "error" (a string, or null for an ok row), "attempts" and "elapsed_ms" (numbers). A line is
 * written whole or is the torn last line of a crash, cut off as a torn CSV row is. */
enum results_format { RESULTS_CSV = 0, RESULTS_JSONL = 1 };

/* JSON Lines for a name ending in .jsonl or .ndjson (any case), else CSV. */
enum results_format results_format_of(const char *path);
const char *results_format_name(enum results_format f); /* "csv", "jsonl" */

/* csv_rows for either format: for JSON Lines, header (a csv_header line) names the keys every
 * row must have, in its order, and the count returned is the rows plus one, as if the file had
 * a header. A line that is not such a row is an error, except the last one when it has no
 * newline (a torn write: not in the complete-row prefix). A NUL byte before the last line is an
 * error too (a block the disk never wrote); in the last line it is part of the torn write. err
 * names the line (and, for a bad field, the field, its value and what is allowed). merge and
 * --resume both read with it. */
int64_t results_rows(enum results_format f, const char *text, size_t len, const char *header, csv_row_fn fn,
                     void *ud, size_t *complete_len, char *err, size_t errlen);

/* The stage cells of the row that begins at byte start of text (a row results_rows gave, under
 * the same header): each cell's bytes, with its length (u32) before them, into *cells (malloc'd).
 * A CSV cell is the field as read back, a JSON Lines cell the value's text as written: two rows
 * whose cells are the same bytes hold the same results. 0, or -1 (out of memory, not such a row). */
int results_row_cells(enum results_format f, const char *text, size_t len, size_t start, const char *header,
                      char **cells, size_t *cells_len);

/* The columns of a JSON Lines row (the line's len bytes, its newline left out or not) as a
 * csv_header line ("path,status,...,error,attempts,elapsed_ms\n"), malloc'd; NULL when the line
 * is not a JSON object whose keys are plain names (letters, digits, _ - .) or memory ran out.
 * merge takes its inputs' columns from their first row. */
char *jsonl_columns(const char *line, size_t len);

/* resume_parse_redo for either format. */
int64_t resume_parse_rows(enum results_format f, const char *text, size_t len, const char *header,
                          const struct resume_redo *redo, struct doneset *set, size_t *complete_len,
                          struct resume_info *info, char *err, size_t errlen);

struct doneset *doneset_new(void);
int doneset_add(struct doneset *d, const char *path, size_t len); /* 1 added, 0 already there, -1 out of memory */
int doneset_has(const struct doneset *d, const char *path, size_t len);
/* Each path carries a value, 0 unless put: doneset_put adds path with value, or sets the value of
 * a path already there (1 added, 0 set, -1 out of memory: the set is as it was); doneset_get gives
 * it (1, or 0 when path is not there). */
int doneset_put(struct doneset *d, const char *path, size_t len, uint64_t value);
int doneset_get(const struct doneset *d, const char *path, size_t len, uint64_t *value);
uint64_t doneset_size(const struct doneset *d);
/* 1 when some path in the set does not start with prefix (one is copied into example), or, with
 * folder (prefix is a folder, ending in '/'), goes on with an empty or "." part (DIR//x, DIR/./x:
 * the folder spelled otherwise). */
int doneset_outside(const struct doneset *d, const char *prefix, size_t plen, int folder, char *example,
                    size_t exlen);
void doneset_free(struct doneset *d);

#endif
