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
 * LABELS = cat dog car tree boat bird house person. */
#ifndef ANNOTATE_MOCK_ANSWERS_H
#define ANNOTATE_MOCK_ANSWERS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

uint64_t mock_key(const unsigned char *payload, size_t len);

/* The result (the value of "result") of model m (1..5) for this payload; the caller frees it.
 * For model 4 the model_03 argument is not checked here (see mock_model04_accepts). */
cJSON *mock_answer(int m, const unsigned char *payload, size_t len);

/* 1 when model03 (may be NULL) is what model_04 must be sent with for this payload. */
int mock_model04_accepts(const unsigned char *payload, size_t len, const cJSON *model03);

#endif
