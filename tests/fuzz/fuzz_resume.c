/* libFuzzer target: reading a results file back (resume): header check, torn-row detection,
 * the done-set. The complete prefix must never extend past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "results/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pipeline *p;
    static char *header;
    if (!p) {
        pipeline_default(&p);
        header = csv_header(p);
    }
    for (int retry = 0; retry < 2; retry++) {
        struct doneset *d = doneset_new();
        struct resume_info info = {0};
        size_t complete = 0;
        char err[300];
        int64_t n = resume_parse((const char *)data, size, header, retry, d, &complete, &info, err, sizeof err);
        if (n >= 0 && complete > size)
            abort();
        doneset_free(d);
    }
    return 0;
}
