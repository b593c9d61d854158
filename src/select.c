/* select: see select.h. */
#include "select.h"

#include <string.h>
#include <sys/stat.h>

uint64_t shard_hash(const char *rel, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)rel[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int selection_in_shard(const struct config *c, const char *rel, size_t len)
{
    return !c->shard_n || shard_hash(rel, len) % (uint64_t)c->shard_n == (uint64_t)c->shard_k;
}

void selection_init(struct selection *s, const struct config *cfg, const struct doneset *done)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->done = done;
    struct stat st;
    if (cfg->out && strcmp(cfg->out, "-") && stat(cfg->out, &st) == 0) {
        const char *slash = strrchr(cfg->out, '/');
        s->out_name = slash ? slash + 1 : cfg->out;
        s->out_name_len = strlen(s->out_name);
        s->out_dev = st.st_dev;
        s->out_ino = st.st_ino;
    }
}

/* 1 when e is the results file: compared by name first, so only a namesake costs a stat. */
static int is_results_file(const struct selection *s, const struct scan_entry *e)
{
    if (!s->out_name || e->path_len < s->out_name_len ||
        memcmp(e->path + e->path_len - s->out_name_len, s->out_name, s->out_name_len) ||
        (e->path_len > s->out_name_len && e->path[e->path_len - s->out_name_len - 1] != '/'))
        return 0;
    struct stat st;
    return stat(e->path, &st) == 0 && st.st_dev == s->out_dev && st.st_ino == s->out_ino;
}

int selection_finds(void *ud, const char *path, size_t len)
{
    const struct config *c = ud;
    size_t dl = strlen(c->dir), pl = dl + (dl && c->dir[dl - 1] == '/' ? 0 : 1);
    if (len <= pl || memcmp(path, c->dir, dl) || path[pl - 1] != '/' || memchr(path, '\0', len))
        return 0;
    const char *rel = path + pl;
    size_t rel_len = len - pl;
    if (!selection_in_shard(c, rel, rel_len))
        return 0;
    if (path[len - 1] != '/') {
        const char *slash = memrchr(path, '/', len);
        const char *name = slash ? slash + 1 : path;
        if (!scan_name_is_image(&c->scan, name, len - (size_t)(name - path)))
            return 0;
    }
    return resume_path_exists(NULL, path, len);
}

enum pick selection_pick(struct selection *s, const struct scan_entry *e)
{
    const struct config *c = s->cfg;
    if (is_results_file(s, e))
        return PICK_SELF;
    if (!selection_in_shard(c, e->rel, e->rel_len))
        return PICK_OTHER_SHARD;
    if (s->done && doneset_has(s->done, e->path, e->path_len))
        return PICK_DONE;
    if (c->max_images && s->taken >= c->max_images)
        return PICK_STOP;
    s->taken++;
    return PICK_TAKE;
}
