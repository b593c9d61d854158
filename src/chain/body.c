/* body: a request's body on its way out (see chain.h): read in pieces, or sent whole from the
 * slack the loader left around the image's base64. */
#include "chain/chain_int.h"

#include <string.h>

size_t chain_req_body_len(const struct chain_req *req)
{
    return req->body.total;
}

size_t chain_req_read(struct chain_req *req, char *buf, size_t n)
{
    return filled_read(&req->body, &req->sent, buf, n);
}

/* Writes (write) or compares with what is there the pieces of f but the k-th, the ones before it
 * ending at start, the ones after it from end. Returns 1 when all are in place. */
static int around_in_place(const struct filled *f, int k, char *start, char *end, int write)
{
    char *at = start;
    for (int i = 0; i < f->n; i++) {
        if (i == k) {
            at = end;
            continue;
        }
        if (!f->pc[i].n)
            continue;
        if (write)
            memcpy(at, f->pc[i].p, f->pc[i].n);
        else if (memcmp(at, f->pc[i].p, f->pc[i].n))
            return 0;
        at += f->pc[i].n;
    }
    return 1;
}

const char *chain_req_whole(struct chain_req *req)
{
    struct item *it = req->it;
    const struct filled *f = &req->body;
    if (!it->b64 || !it->b64_slack || req->n_parts)
        return NULL;
    int k = 0;
    size_t head = 0;
    while (k < f->n && f->pc[k].p != it->b64) /* (an element's body points at r->el, never here) */
        head += f->pc[k++].n;
    if (k == f->n || f->pc[k].n != it->b64_len)
        return NULL;
    size_t tail = f->total - head - it->b64_len;
    if (head > it->b64_slack || tail > it->b64_slack)
        return NULL;
    char *start = it->b64 - head, *end = it->b64 + it->b64_len;
    if (!it->slack_users)
        around_in_place(f, k, start, end, 1);
    else if (!around_in_place(f, k, start, end, 0))
        return NULL; /* another request of the image is on the wire with other bytes there */
    it->slack_users++;
    return start;
}

void chain_req_whole_done(struct item *it)
{
    it->slack_users--;
}
