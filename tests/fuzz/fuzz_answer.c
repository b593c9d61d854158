/* libFuzzer target: the parser of model answers ({"result": ...}) and the outcome rules. */
#include <stddef.h>
#include <stdint.h>
#include "chain/chain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *res = NULL;
    char err[256];
    if (chain_parse_answer((const char *)data, size, &res, err, sizeof err) == 0) {
        (void)chain_truthy(res);
        cJSON_Delete(res);
    }
    enum answer_kind o = chain_outcome(&(struct chain_answer){CURLE_OK, 200, (const char *)data, size, NULL, -1, NULL, 0}, &res, err, sizeof err);
    if (o == ANSWER_OK)
        cJSON_Delete(res);
    return 0;
}
