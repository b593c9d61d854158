/* source: where a run's images come from, behind one interface the runner (and the progress
 * line's counting) drives: a folder (scan.h), an S3 bucket's listing (s3://BUCKET/PREFIX,
 * sources/s3.h), or a list of paths and URLs (--files-from FILE, or - for standard input).
 *
 * What callers may rely on:
 *
 *  - source_open picks the source from the configuration and checks there everything that can
 *    be checked before the first image, as an error (exit 2): a folder that cannot be opened; a
 *    list that cannot be read or, when it is a regular file, holds a line longer than
 *    SOURCE_LINE_MAX or a NUL byte in a newline-separated list (read once through before the run
 *    to find that out, and whether it names s3:// objects); for a bucket, the S3 configuration
 *    and the first page of its listing, so that a wrong key or secret, a missing bucket or
 *    AccessDenied exits 2 before any model request, naming S3's error Code.
 *
 *  - source_next gives the entries one at a time, in the source's order (a walk's, S3's key
 *    order, the list's), streaming: memory does not grow with the number of images, but for a
 *    list, which remembers the lines it gave so that a line given twice is one image (about the
 *    line's length plus 30 bytes each). It returns 1 for an image, 2 for an entry that is a
 *    failed row (e->error says why: a folder that cannot be read, a list line that names no
 *    image), 0 at the end.
 *
 *  - An entry: path is what the row's path column holds (a folder: DIR joined with the path
 *    below it; a bucket: s3://BUCKET/KEY; a list: the line as written); rel is what --shard
 *    hashes (the path below DIR; the key; the whole line); kind says how the load stage reads it
 *    (item.h), size what the source knows of its size (an S3 listing's Size).
 *
 *  - Which entries are images: a folder's files and a bucket's keys with an image extension
 *    (--extensions; a key ending in '/' is a folder marker); a list names its images itself,
 *    whatever their extension. Listing pages are retried as fetches are (fetch.h: backoff, and an
 *    outage waited out for --outage-timeout).
 *
 *  - source_incomplete: the source ended before its end for a reason that is not the run's (a
 *    listing that failed past its retries, a list that could not be read on, a folder that
 *    could be neither read nor given a row): the run must not claim to be complete (exit 2; the
 *    rows written are valid and --resume goes on).
 *
 *  - source_finds answers resume's question for --retry-failed (results.h's can_redo): will
 *    this run find this path again, so that its failed row may be dropped and redone. A bucket
 *    asks S3 (a HEAD of the object); a list, whether it names the line (read through first).
 *
 *  - rows_under: the bytes every row's path of this source begins with (resume refuses a file
 *    with other rows: DIR spelled otherwise); NULL when anything goes (a list). */
#ifndef ANNOTATE_SOURCE_H
#define ANNOTATE_SOURCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "flow/scan.h"

#define SOURCE_LINE_MAX 65536 /* bytes of one --files-from entry */

struct sources;

struct source_entry {
    struct scan_entry e; /* path, rel, error (valid until the next call) */
    int kind;            /* enum item_kind */
    int size_known;
    uint64_t size;
};

struct source {
    int (*next)(struct source *s, struct source_entry *out);
    int (*finds)(struct source *s, const char *path, size_t len);
    /* 1 with why when the source ended early; 0 otherwise. */
    int (*incomplete)(const struct source *s, char *why, size_t len);
    /* Entries that could not be read so far (a folder's unreadable directories), and the last
     * reason; 0 for a source that has none. */
    uint64_t (*warnings)(const struct source *s, const char **last);
    void (*close)(struct source *s);
    const char *rows_under;
    const char *name; /* for messages: the folder, the bucket's URL, the list's name */
    /* The run's stop flag, when the caller sets it: a source that waits (a listing page retried
     * through an outage) gives up once it is not 0 (RUN_GOING). */
    const atomic_int *stop;
};

/* Opens the run's source. counting: a second one for the progress line's count ahead, which
 * checks nothing and gives no failed entries; NULL when the source cannot be counted ahead (a
 * list on standard input), or on any error. src: the run's S3 clients (NULL when the run has
 * none). NULL with err (exit 2) otherwise. */
struct source *source_open(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen);

static inline int source_next(struct source *s, struct source_entry *out)
{
    return s->next(s, out);
}

/* The folder, the bucket and the list: each opens its own kind (source_open picks one). */
struct source *source_folder(const struct config *cfg, int counting, char *err, size_t errlen);
struct source *source_s3(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen);
struct source *source_list(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen);

/* 1 when the list (cfg->files_from, a regular file) names an s3:// object, 0 when not or it cannot
 * tell (standard input); -1 with err when it cannot be read, or holds a line it must refuse. */
int source_list_check(const struct config *cfg, char *err, size_t errlen);

void source_close(struct source *s); /* NULL is a no-op */

#endif
