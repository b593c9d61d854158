/* libFuzzer target: answers read through stages' expressions (src/pipeline/expr.c, chain_read_answer):
 * plain paths on the raw text and jq programs, for "result", "error", "retry_if" and
 * "retry_after", under 200 and 4xx/5xx statuses. The pipeline is parsed once. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "chain/chain.h"

static const char PIPELINE[] =
    "{\"stages\": ["
    "{\"name\": \"plain\", \"url\": \"/p\", \"result\": \".outputs[0].data[0]\", \"error\": \".error\"},"
    "{\"name\": \"jq\", \"url\": \"/j\", \"result\": \".choices[0].message.content | fromjson\","
    " \"error\": \"if (.error | type) == \\\"object\\\" then .error.message else .error end\","
    " \"retry_if\": \".error.code == \\\"Throttling\\\"\", \"retry_after\": \".estimated_time\"},"
    "{\"name\": \"whole\", \"url\": \"/w\", \"result\": \".\", \"error\": \".responses[0].error.message\"},"
    "{\"name\": \"many\", \"url\": \"/m\", \"result\": \"[.[]?] | length\", \"retry_on\": [404, 503]}"
    "]}";

static struct pipeline *P;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (!P && pipeline_parse(PIPELINE, strlen(PIPELINE), "fuzz", &P, err, sizeof err))
        abort();
    static const long statuses[] = {200, 400, 503};
    for (int s = 0; s < P->n; s++)
        for (size_t k = 0; k < sizeof statuses / sizeof *statuses; k++) {
            struct chain_answer a = {CURLE_OK, statuses[k], (const char *)data, size, NULL, -1, NULL};
            cJSON *res = NULL;
            long ra;
            enum answer_kind o = chain_read_answer(&P->stages[s], &a, &res, &ra, err, sizeof err);
            if (o == ANSWER_OK && (!res || !cJSON_IsRaw(res)))
                abort(); /* a result is always text */
            if (o != ANSWER_OK && (res || !err[0]))
                abort(); /* a failure always says why */
            cJSON_Delete(res);
        }
    return 0;
}
