/* results: the results file, from lock to close. Nobody else opens it.
 *
 * One descriptor under one exclusive lock for the whole run: results_open takes the lock, and
 * with --resume reads the rows already there, cuts off a torn last row, and with --retry-failed
 * (or duplicate rows, or failed folder rows) rewrites the file without the rows to be redone (a
 * failed row whose path the run will not find again stays); then it writes the header
 * if the file is empty. Rows are written with results_write, one write(2) each, so that a crash
 * can tear at most the last row (which the next resume repairs), never interleave two. fdatasync
 * runs every sync_every rows on a syncer thread, so the writer never waits for the disk.
 *
 * The rewrite goes to PATH.compact.tmp, locked before it is renamed over PATH, and that
 * descriptor becomes the run's: there is no moment at which PATH exists unlocked. A lock taken
 * on a file that was renamed over meanwhile is dropped and taken again on the new one.
 *
 * Columns: path, status, one per CSV stage of the pipeline, error, attempts, elapsed_ms. Fields
 * are quoted (libcsv) only when they need it. The same rows can be written as JSON Lines
 * (resume.h): one object a line, the same keys, each result spliced in byte for byte; no header
 * line; everything above (lock, resume, repair, rewrite) works the same way on it. */
#ifndef ANNOTATE_RESULTS_H
#define ANNOTATE_RESULTS_H

#include <stddef.h>
#include "flow/item.h"
#include "pipeline/pipeline.h"
#include "results/resume.h"

struct results;

struct results_opts {
    const char *path;     /* "-": standard output (no lock, nothing to resume) */
    enum results_format format; /* CSV or JSON Lines (resume.h) */
    const char *dir;      /* DIR as the run was given it: resume refuses rows not under it */
    const char *under;    /* without dir: resume refuses rows whose path does not begin with these
                             bytes (s3://BUCKET/PREFIX); NULL: no check */
    int resume;           /* keep the rows there and skip their images */
    int retry_failed;     /* with resume: failed rows are removed, their images redone */
    int force;            /* without resume: a file holding rows may be truncated */
    long sync_every;      /* rows between fdatasyncs; 0: only at close */
    /* With resume: 1 when the run will find this path again, so that its failed row may be
     * dropped and redone (see struct resume_redo); NULL: the path exists. */
    int (*can_redo)(void *ud, const char *path, size_t len);
    void *can_redo_ud;
};

/* Opens (and with resume, reads and repairs) the results file. *done gets the paths to skip
 * (NULL when nothing is to be skipped); *info what was found. NULL with err on failure: another
 * run holds the lock, the header is another pipeline's, the rows are under another spelling of
 * DIR, the file cannot be read, written or repaired. */
struct results *results_open(const struct results_opts *o, const struct pipeline *p, struct doneset **done,
                             struct resume_info *info, char *err, size_t errlen);

/* Writes the item's row. Returns 0, or -1 with err (the disk is full, say). Not thread-safe:
 * the run's writer calls it. */
int results_write(struct results *r, const struct item *it, char *err, size_t errlen);

/* fdatasync now (the signal path's last resort). 0 or -1. */
int results_sync(struct results *r);

/* Syncs, releases the lock and closes. Returns 0, or -1 with errno (a write-back error reported
 * to the syncer counts). NULL is a no-op. */
int results_close(struct results *r);

/* The header line (with its newline) for a pipeline; caller frees. NULL when out of memory. */
char *csv_header(const struct pipeline *p);

/* Appends one CSV field (quoted when needed) to *buf, growing it. Returns 0, or -1 when out of
 * memory (the buffer is left as it was). */
int csv_put_field(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

#endif
