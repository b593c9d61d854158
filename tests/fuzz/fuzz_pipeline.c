/* libFuzzer target: pipeline files (parse, then resolve against a base URL, with a --header), and
 * --header lines (the input's first line, added to the built-in pipeline, then resolved). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pipeline *p = NULL;
    char err[512];
    if (pipeline_parse((const char *)data, size, "fuzz.json", &p, err, sizeof err) == 0) {
        pipeline_add_header(p, "Authorization: Bearer fuzz", err, sizeof err);
        pipeline_resolve(p, "http://127.0.0.1:8080", err, sizeof err);
        (void)pipeline_csv_columns(p);
        pipeline_free(p);
    }
    char line[256];
    size_t n = 0;
    while (n < size && n < sizeof line - 1 && data[n] != '\n')
        n++;
    memcpy(line, data, n);
    line[n] = 0;
    if (pipeline_default(&p) == 0) {
        if (pipeline_add_header(p, line, err, sizeof err) == 0)
            pipeline_resolve(p, "http://127.0.0.1:8080/v1", err, sizeof err);
        pipeline_free(p);
    }
    return 0;
}
