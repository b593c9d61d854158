/* resume: reading a results file's rows back, so a run can continue where a crashed or stopped
 * one ended (results.c does it on the locked file; merge.c on its inputs). Images are keyed by
 * path (the bytes of the path column); the done-set is the set of paths to skip: the ok rows,
 * and the failed rows too unless retry_failed. */
#ifndef ANNOTATE_RESUME_H
#define ANNOTATE_RESUME_H

#include <stddef.h>
#include <stdint.h>
#include "pipeline.h"

struct doneset;

struct resume_info {
    uint64_t rows, ok, failed, dropped_failed;
    uint64_t torn_bytes; /* bytes cut off the end */
    uint64_t duplicates; /* rows whose path was seen before (kept the first) */
};

/* Parses CSV text already in memory (the fuzz target and the benchmark use it). Returns the number
 * of complete rows, fills the set, and sets *complete_len to the length of the complete-row prefix. */
int64_t resume_parse(const char *text, size_t len, const char *header, int retry_failed,
                     struct doneset *set, size_t *complete_len, struct resume_info *info,
                     char *err, size_t errlen);

/* Calls fn for every complete, well-formed row of a results file in memory: its path, whether it
 * is ok, and its bytes [start, end). Checks the header against `header` (a csv_header line).
 * Returns the number of records (header included) and the length of the complete-row prefix, or
 * -1 with err when the text is not a results file of this pipeline. */
typedef void (*csv_row_fn)(void *ud, const char *path, size_t len, int ok, size_t start, size_t end);
int64_t csv_rows(const char *text, size_t len, const char *header, csv_row_fn fn, void *ud,
                 size_t *complete_len, char *err, size_t errlen);

struct doneset *doneset_new(void);
int doneset_add(struct doneset *d, const char *path, size_t len); /* 1 added, 0 already there */
int doneset_has(const struct doneset *d, const char *path, size_t len);
uint64_t doneset_size(const struct doneset *d);
/* 1 when some path in the set does not start with prefix (one is copied into example). */
int doneset_outside(const struct doneset *d, const char *prefix, size_t plen, char *example, size_t exlen);
void doneset_free(struct doneset *d);

#endif
