/* csv_out: the results file. One row per image, written only when the image is settled, as a
 * single write(2) of the whole row so that a crash can tear at most the last row (which resume
 * repairs), never interleave two. Fields are quoted (libcsv) only when they need it.
 * Columns: path, status, one per CSV stage of the pipeline, error, attempts, elapsed_ms. */
#ifndef ANNOTATE_CSV_OUT_H
#define ANNOTATE_CSV_OUT_H

#include <stddef.h>
#include "item.h"
#include "pipeline.h"

struct csv_out;

/* Opens path for writing ("-" is stdout). append: keep what is there (resume) and write no
 * header if the file is not empty; otherwise the file is created or truncated and gets a header.
 * sync_every: fdatasync after that many rows (0: only at close), done by a syncer thread so the
 * writer never waits for the disk. NULL with err on failure. */
struct csv_out *csv_out_open(const char *path, const struct pipeline *p, int append, long sync_every,
                             char *err, size_t errlen);

/* Takes an exclusive flock on fd (a results file), or fails with a message naming path: two runs
 * must never write one file. The lock goes with the descriptor. */
int csv_lock(int fd, const char *path, char *err, size_t errlen);

/* Writes the item's row. Returns 0, or -1 with err (the disk is full, say). */
int csv_out_write(struct csv_out *c, const struct item *it, char *err, size_t errlen);

/* fsync now. */
int csv_out_sync(struct csv_out *c);

/* Syncs and closes. Returns 0 or -1. NULL is a no-op. */
int csv_out_close(struct csv_out *c);

/* The header line (with its newline) for a pipeline; caller frees. */
char *csv_header(const struct pipeline *p);

/* Appends one CSV field (quoted when needed) to *buf; grows it. */
void csv_put_field(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

#endif
