/* answers: the five deterministic models (spec in answers.h).
 *
 * Everything is a pure function of a 64-bit key (and, for model_05, a length), so the server's
 * two modes (decode and hash the payload, or hash the base64 text) share one implementation,
 * and the tests predict every answer by linking this file. */
#include "mock/answers.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/b64.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define GOLDEN 0x9E3779B97F4A7C15ULL
#define TRUST_PREFIX 1024

static const char *const LABELS[8] = {"cat", "dog", "car", "tree", "boat", "bird", "house", "person"};

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t mock_key(const unsigned char *payload, size_t len)
{
    return fnv1a(FNV_OFFSET, payload, len);
}

uint64_t mock_key_b64(const char *text, size_t n)
{
    uint64_t h = fnv1a(FNV_OFFSET, (const unsigned char *)text, n < TRUST_PREFIX ? n : TRUST_PREFIX);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)n >> (8 * i));
    return fnv1a(h, len8, sizeof len8);
}

size_t mock_b64_payload_len(const char *text, size_t n)
{
    size_t out = n / 4 * 3;
    if (n % 4 == 0 && n >= 4)
        out -= (text[n - 1] == '=') + (text[n - 2] == '=');
    return out;
}

/* model_01: a quarter of the images get one of the four falsy values a JSON client must not
 * mistake for an answer. */
static cJSON *answer01(uint64_t key)
{
    switch (key % 16) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateFalse();
    case 2: return cJSON_CreateNumber(0);
    case 3: return cJSON_CreateString("");
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "label", LABELS[(key >> 8) % 8])
        || !cJSON_AddNumberToObject(o, "score", (double)((key >> 16) % 1000))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *answer02(uint64_t key)
{
    switch ((key >> 24) % 16) {
    case 0: return cJSON_CreateArray();
    case 1: return cJSON_CreateObject();
    }
    cJSON *a = cJSON_CreateArray();
    int n = 1 + (int)((key >> 28) % 3);
    for (int i = 0; a && i < n; i++) {
        char tag[6] = {'t', 'a', 'g', '_', (char)('a' + (key >> (32 + 4 * i)) % 26), 0};
        cJSON *s = cJSON_CreateString(tag);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static int regions_of(uint64_t key)
{
    return (int)((key >> 20) % 4);
}

static cJSON *answer03(uint64_t key)
{
    char id[17];
    snprintf(id, sizeof id, "%016" PRIx64, key);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", id)
        || !cJSON_AddNumberToObject(o, "regions", regions_of(key))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Sub-image bytes: noise, so that base64 of it has no pattern a buggy codec could get right by
 * luck. */
static void xorshift_fill(uint64_t seed, unsigned char *dst, size_t n)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (size_t j = 0; j < 8 && i + j < n; j++)
            dst[i + j] = (unsigned char)(x >> (8 * j));
    }
}

static cJSON *answer04(uint64_t key)
{
    int n = regions_of(key);
    cJSON *o = cJSON_CreateObject();
    cJSON *subs = NULL;
    if (!o || !cJSON_AddNumberToObject(o, "n", n) || !(subs = cJSON_AddArrayToObject(o, "sub-img")))
        goto fail;
    for (int i = 0; i < n; i++) {
        unsigned char bytes[16 + 199];
        char text[4 * ((sizeof bytes + 2) / 3) + 1];
        size_t len = 16 + (size_t)((key >> (8 * i)) % 200);
        xorshift_fill(key ^ (uint64_t)(i + 1) * GOLDEN, bytes, len);
        b64_encode(bytes, len, text);
        int box[4] = {i, i + 1, i + 2, i + 3};
        cJSON *sub = cJSON_CreateObject();
        if (!sub || !cJSON_AddItemToArray(subs, sub)) {
            cJSON_Delete(sub);
            goto fail;
        }
        cJSON *b = cJSON_CreateIntArray(box, 4);
        if (!cJSON_AddStringToObject(sub, "img", text) || !b || !cJSON_AddItemToObject(sub, "box", b)) {
            cJSON_Delete(b);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static cJSON *answer05(uint64_t key, size_t len)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "label", LABELS[key % 8])
        || !cJSON_AddNumberToObject(o, "bytes", (double)len)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *mock_answer_key(int m, uint64_t key, size_t len)
{
    switch (m) {
    case 1: return answer01(key);
    case 2: return answer02(key);
    case 3: return answer03(key);
    case 4: return answer04(key);
    case 5: return answer05(key, len);
    }
    return NULL;
}

cJSON *mock_answer(int m, const unsigned char *payload, size_t len)
{
    return mock_answer_key(m, mock_key(payload, len), len);
}

int mock_model04_accepts(const unsigned char *payload, size_t len, const cJSON *model03)
{
    if (!model03)
        return 0;
    cJSON *want = answer03(mock_key(payload, len));
    int ok = want && cJSON_Compare(want, model03, 1);
    cJSON_Delete(want);
    return ok;
}
