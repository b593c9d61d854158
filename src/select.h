/* select: which images found by the scan this run takes, in one place: the shard (--shard K/N,
 * by a hash of the path below DIR), images already in the results file (--resume), and the
 * cap (--max-images, counting only images this run takes). The run's scanner and the progress
 * line's counting scanner both ask it, so the total the progress line shows is the number of
 * images the run will settle. */
#ifndef ANNOTATE_SELECT_H
#define ANNOTATE_SELECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "config.h"
#include "results/resume.h"
#include "flow/scan.h"

enum pick {
    PICK_TAKE = 0,    /* this run processes it */
    PICK_SELF,        /* the run's own results file (an --out inside DIR): never an image */
    PICK_DONE,        /* it has a row already (resume): skipped */
    PICK_OTHER_SHARD, /* another shard's */
    PICK_STOP         /* --max-images reached: take nothing more */
};

struct selection {
    const struct config *cfg;
    const struct doneset *done; /* may be NULL; read-only, so several selections may share it */
    uint64_t taken;
    const char *out_name;       /* the results file's last path component, or NULL */
    size_t out_name_len;
    dev_t out_dev;
    ino_t out_ino;
};

/* Call once the results file exists (it is recognised by device and inode). */
void selection_init(struct selection *s, const struct config *cfg, const struct doneset *done);

/* What to do with the next image the scan found. */
enum pick selection_pick(struct selection *s, const struct scan_entry *e);

/* 1 when a run of cfg will find path (len bytes, as a results file spells it) again: it is under
 * DIR, in this shard, and names a regular file with an image extension, or, ending in '/', a
 * directory (a folder's row). Resume asks it before it drops a failed row to redo it, so that a
 * row is never dropped for an image that will not be run. Does not follow symbolic links below
 * DIR, as the scanner does not. (ud is the config, for struct resume_redo.) */
int selection_finds(void *cfg, const char *path, size_t len);

/* FNV-1a 64 of the path below the root: the stable key --shard uses. */
uint64_t shard_hash(const char *rel, size_t len);

/* 1 when rel (what the source's --shard hashes: source.h) is in cfg's shard, or there is none. */
int selection_in_shard(const struct config *cfg, const char *rel, size_t len);

#endif
