/* libFuzzer target: the strict JSON checker and plain paths (src/common/json.c). The input is a path,
 * a newline, then a document. Whatever a path finds in an accepted document must be a whole,
 * valid JSON value lying inside it, and so must every element json_elements gives of an accepted
 * document, their number matching its count. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common/json.h"

struct elems {
    const char *doc;
    size_t dlen;
    int n;
};

static int each(void *arg, const char *v, size_t vl)
{
    struct elems *e = arg;
    char err[200];
    if (v < e->doc || v + vl > e->doc + e->dlen || vl == 0 || json_check(v, vl, err, sizeof err))
        abort();
    e->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t plen = nl ? (size_t)(nl - s) : 0;
    const char *doc = nl ? nl + 1 : s;
    size_t dlen = size - (size_t)(doc - s);
    char err[200];
    int ok = json_check(doc, dlen, err, sizeof err) == 0;
    if (ok) {
        struct elems e = {doc, dlen, 0};
        int n = json_elements(doc, dlen, each, &e);
        if (n != (n < 0 ? n : e.n) || (n < 0 && e.n))
            abort();
    }
    if (!nl || plen > 200)
        return 0;
    char expr[201];
    memcpy(expr, s, plen);
    expr[plen] = 0;
    struct json_path p;
    if (json_path_parse(expr, &p, err, sizeof err))
        return 0;
    const char *v;
    size_t vl;
    if (ok && json_find(doc, dlen, &p, &v, &vl) == 0) {
        if (v < doc || v + vl > doc + dlen || vl == 0)
            abort();
        if (json_check(v, vl, err, sizeof err))
            abort();
    }
    json_path_free(&p);
    return 0;
}
