/* libFuzzer target: the template compiler (src/pipeline/template.c). The input is a stage's "body" (and,
 * when it is an object, also its "form"), compiled and then filled for an image whose path and
 * results need escaping; whatever compiles must fill to a body of exactly the length announced,
 * and a JSON body must fill to valid JSON. The input is also compiled as a batch's body (its
 * {{batch}} around three items of the seed's): that too must fill to valid JSON of the length
 * announced. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common/json.h"
#include "pipeline/template.h"

static int ref(void *arg, const char *name, char *err, size_t errlen)
{
    (void)arg;
    (void)err;
    (void)errlen;
    return strcmp(name, "model_01") == 0 ? 0 : strcmp(name, "model_02") == 0 ? 1 : -1;
}

static void fill(const struct body *b, const struct fill_src *src, int json)
{
    char err[256];
    const struct tmpl *t[64];
    int n = 0;
    if (b->kind == BODY_FORM)
        for (int i = 0; i < b->n_parts && n < 64; i++)
            t[n++] = &b->parts[i].value;
    else
        t[n++] = &b->t;
    for (int i = 0; i < n; i++) {
        struct filled f;
        if (tmpl_fill(t[i], src, &f, err, sizeof err))
            continue;
        char *buf = malloc(f.total + 1);
        size_t pos = 0, got = 0, r;
        while ((r = filled_read(&f, &pos, buf + got, 7)) > 0)
            got += r;
        if (got != f.total)
            abort();
        if (json && json_check(buf, got, err, sizeof err))
            abort(); /* a JSON body always fills to JSON */
        free(buf);
        filled_free(&f);
    }
}

static void fill_batch(const struct body *b, const struct fill_src *src)
{
    char err[256];
    struct filled items[3], all;
    const struct filled *ip[3];
    for (int i = 0; i < 3; i++) {
        if (tmpl_fill(&b->t, src, &items[i], err, sizeof err))
            abort(); /* the seed's item always fills */
        ip[i] = &items[i];
    }
    if (batch_fill(&b->outer, ip, 3, &all) == 0) {
        char *buf = malloc(all.total + 1);
        size_t pos = 0, got = 0, r;
        while ((r = filled_read(&all, &pos, buf + got, 5)) > 0)
            got += r;
        if (got != all.total || json_check(buf, got, err, sizeof err))
            abort();
        free(buf);
        filled_free(&all);
    }
    for (int i = 0; i < 3; i++)
        filled_free(&items[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *v = cJSON_ParseWithLength((const char *)data, size);
    if (!v)
        return 0;
    cJSON *r0 = cJSON_CreateRaw("{\"k\":\"v\\\"\",\"n\":1e999}"), *r1 = cJSON_CreateRaw("\"a \\\"b\\\" \\u00e9\"");
    const cJSON *results[2] = {r0, r1};
    static const unsigned char bytes[] = {0x89, 'P', 'N', 'G', 0, 1, 2};
    struct fill_src src = {.b64 = "iVBORwABAg==", .b64_len = 12, .bytes = bytes, .bytes_len = sizeof bytes,
                           .mime = "image/png", .path = "dir/a\"b\\c\n.png", .path_len = 14, .name = "a\"b\\c\n.png",
                           .index = 3, .results = results};
    struct body b;
    char err[256];
    if (body_compile_json(&b, v, ref, NULL, err, sizeof err) == 0) {
        fill(&b, &src, b.kind == BODY_JSON);
        body_free(&b);
    }
    if (body_compile_form(&b, v, ref, NULL, err, sizeof err) == 0) {
        fill(&b, &src, 0);
        body_free(&b);
    }
    struct seed_field sf[] = {{"model_03", "null", -1}, {"r", NULL, 1}};
    if (body_compile_seed(&b, sf, 2) == 0) {
        if (body_batch(&b, v, err, sizeof err) == 0)
            fill_batch(&b, &src);
        body_free(&b);
    }
    cJSON_Delete(v);
    cJSON_Delete(r0);
    cJSON_Delete(r1);
    return 0;
}
