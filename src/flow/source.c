/* source: see source.h. This file picks the source and holds the folder's (a walk, scan.h); the
 * list's is listfile.c, the bucket's sources/s3source.c. */
#include "flow/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/item.h"
#include "select.h"

struct folder {
    struct source base;
    const struct config *cfg;
    scanner *sc;
    char under[4096]; /* DIR with one '/' after it */
};

static int folder_next(struct source *s, struct source_entry *out)
{
    struct folder *f = (struct folder *)s;
    memset(out, 0, sizeof *out);
    out->kind = ITEM_FILE;
    return scan_next(f->sc, &out->e);
}

static int folder_finds(struct source *s, const char *path, size_t len)
{
    struct folder *f = (struct folder *)s;
    return selection_finds((void *)f->cfg, path, len);
}

static int folder_incomplete(const struct source *s, char *why, size_t len)
{
    const struct folder *f = (const struct folder *)s;
    uint64_t lost = scan_lost(f->sc);
    if (!lost)
        return 0;
    snprintf(why, len, "out of memory while scanning: %llu folder%s could not be read nor given a row",
             (unsigned long long)lost, lost == 1 ? "" : "s");
    return 1;
}

static uint64_t folder_warnings(const struct source *s, const char **last)
{
    const struct folder *f = (const struct folder *)s;
    *last = scan_last_warning(f->sc);
    return scan_warnings(f->sc);
}

static void folder_close(struct source *s)
{
    struct folder *f = (struct folder *)s;
    scan_close(f->sc);
    free(f);
}

struct source *source_folder(const struct config *cfg, int counting, char *err, size_t errlen)
{
    struct folder *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(f->sc = scan_open(cfg->dir, &cfg->scan, err, errlen))) {
        free(f);
        return NULL;
    }
    scan_report_folders(f->sc, !counting);
    size_t dl = strlen(cfg->dir);
    snprintf(f->under, sizeof f->under, "%s%s", cfg->dir, dl && cfg->dir[dl - 1] == '/' ? "" : "/");
    f->cfg = cfg;
    f->base = (struct source){folder_next, folder_finds, folder_incomplete, folder_warnings, folder_close, f->under,
                              cfg->dir, NULL};
    return &f->base;
}

struct source *source_open(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen)
{
    if (cfg->files_from)
        return source_list(cfg, src, counting, err, errlen);
    if (!strncmp(cfg->dir, "s3://", 5))
        return source_s3(cfg, src, counting, err, errlen);
    return source_folder(cfg, counting, err, errlen);
}

void source_close(struct source *s)
{
    if (s)
        s->close(s);
}
