/* answers: the mock model server's models, deterministic functions of the bytes they are sent.
 *
 * The server (server.c) calls these to answer; the tests link the same functions to predict
 * every cell of the CSV. key = FNV-1a 64 of the decoded payload (the image bytes, or for
 * model_05 the sub-image bytes).
 *
 *   model_01: falsy for about a quarter of images: key % 16 == 0 → null, 1 → false, 2 → 0,
 *             3 → ""; otherwise {"label": LABELS[(key >> 8) % 8], "score": (key >> 16) % 1000}.
 *   model_02: (key >> 24) % 16 == 0 → [], == 1 → {}; otherwise an array of 1 + (key >> 28) % 3
 *             tags, "tag_" followed by a lowercase letter 'a' + ((key >> (32 + 4*i)) % 26).
 *   model_03: {"id": "<key as 16 lowercase hex digits>", "regions": (key >> 20) % 4}.
 *   model_04: needs "model_03" equal (cJSON_Compare) to model_03's answer for the same image;
 *             answers {"n": regions, "sub-img": [{"img": "<base64>", "box": [i, i+1, i+2, i+3]}, ...]}
 *             with `regions` sub-images; sub-image i is 16 + (key >> (8*i)) % 200 bytes of
 *             xorshift64 output seeded with key ^ (i + 1) * 0x9E3779B97F4A7C15.
 *   model_05: {"label": LABELS[key % 8], "bytes": <payload length>}.
 * LABELS = cat dog car tree boat bird house person.
 *
 * xorshift64 is Marsaglia's (x ^= x << 13; x ^= x >> 7; x ^= x << 17), stepped before each
 * 64-bit word; the bytes are the words least significant byte first, the last word cut short.
 *
 * In --trust-payload mode the server does not decode the base64 text; it answers from
 * mock_key_b64 of the text and the length the text would decode to (see mock_b64_payload_len),
 * through mock_answer_key, so both modes run the same models. */
#ifndef ANNOTATE_MOCK_ANSWERS_H
#define ANNOTATE_MOCK_ANSWERS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

uint64_t mock_key(const unsigned char *payload, size_t len);

/* The result (the value of "result") of model m (1..5) for this payload; the caller frees it.
 * For model 4 the model_03 argument is not checked here (see mock_model04_accepts).
 * NULL when m is out of range or memory runs out. */
cJSON *mock_answer(int m, const unsigned char *payload, size_t len);

/* The same models driven by a key directly: mock_answer(m, p, n) is
 * mock_answer_key(m, mock_key(p, n), n). len only matters to model 5 ("bytes"). */
cJSON *mock_answer_key(int m, uint64_t key, size_t len);

/* 1 when model03 (may be NULL) is what model_04 must be sent with for this payload. */
int mock_model04_accepts(const unsigned char *payload, size_t len, const cJSON *model03);

/* The --trust-payload key of a base64 text of n characters: FNV-1a 64 over its first
 * min(n, 1024) characters, continued over the 8 bytes of n, least significant first. Bounded
 * work per request whatever the image size, and still different for images that share a
 * header but not a length. */
uint64_t mock_key_b64(const char *text, size_t n);

/* The number of bytes n characters of base64 decode to, read from the length and the padding
 * alone (exact for strict base64; for anything else a plausible figure, never more than
 * 3 * n / 4). */
size_t mock_b64_payload_len(const char *text, size_t n);

#endif
