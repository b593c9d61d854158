/* select: see select.h. */
#include "select.h"

uint64_t shard_hash(const char *rel, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)rel[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void selection_init(struct selection *s, const struct config *cfg, const struct doneset *done)
{
    s->cfg = cfg;
    s->done = done;
    s->taken = 0;
}

enum pick selection_pick(struct selection *s, const struct scan_entry *e)
{
    const struct config *c = s->cfg;
    if (c->shard_n && shard_hash(e->rel, e->rel_len) % (uint64_t)c->shard_n != (uint64_t)c->shard_k)
        return PICK_OTHER_SHARD;
    if (s->done && doneset_has(s->done, e->path, e->path_len))
        return PICK_DONE;
    if (c->max_images && s->taken >= c->max_images)
        return PICK_STOP;
    s->taken++;
    return PICK_TAKE;
}
