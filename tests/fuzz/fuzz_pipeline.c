/* libFuzzer target: pipeline files (parse, then resolve against a base URL). */
#include <stddef.h>
#include <stdint.h>
#include "pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pipeline *p = NULL;
    char err[512];
    if (pipeline_parse((const char *)data, size, "fuzz.json", &p, err, sizeof err) == 0) {
        pipeline_resolve(p, "http://127.0.0.1:8080", err, sizeof err);
        (void)pipeline_csv_columns(p);
        pipeline_free(p);
    }
    return 0;
}
