/* libFuzzer target: the ListObjectsV2 page reader (src/sources/s3xml.c, s3_page_parse). Whatever
 * the bytes, the reader answers a page, an <Error>, or a reason; a page's keys are 1 to
 * S3_KEY_MAX bytes without a NUL, each NUL-terminated inside the page's storage, sizes are not
 * negative, a truncated page has a continuation token; a refused answer leaves an empty page and
 * a one-line reason; reading the same bytes again into the same (reused) page gives the same
 * page. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sources/s3.h"

static void check_page(const struct s3_page *p, int rc, const char *err)
{
    if (rc < -1 || rc > 1)
        abort();
    if (rc == -1) {
        if (p->n != 0 || p->truncated || !err[0])
            abort();
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20)
                abort();
        return;
    }
    if (rc == 1) {
        if (!p->is_error || !p->code[0] || p->n != 0)
            abort();
        return;
    }
    if (p->truncated && (!p->next_token || !p->next_token[0]))
        abort();
    for (size_t i = 0; i < p->n; i++) {
        const struct s3_object *o = &p->obj[i];
        if (!o->key || o->key_len == 0 || o->key_len > S3_KEY_MAX || strlen(o->key) != o->key_len || o->size < 0)
            abort();
        if (o->key < p->arena || o->key + o->key_len >= p->arena + p->arena_cap)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct s3_page p = {0};
    char err[300], err2[300];
    int rc = s3_page_parse(&p, (const char *)data, size, err, sizeof err);
    check_page(&p, rc, err);
    size_t n = p.n;
    int64_t total = 0;
    for (size_t i = 0; i < p.n; i++)
        total += p.obj[i].size;
    int rc2 = s3_page_parse(&p, (const char *)data, size, err2, sizeof err2);
    check_page(&p, rc2, err2);
    int64_t total2 = 0;
    for (size_t i = 0; i < p.n; i++)
        total2 += p.obj[i].size;
    if (rc2 != rc || p.n != n || total2 != total)
        abort();
    s3_page_free(&p);
    return 0;
}
