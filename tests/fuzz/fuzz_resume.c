/* libFuzzer target: reading a results file back (resume), in both formats: the CSV's header
 * check, torn-row detection and done-set; the JSON Lines' row check (strict JSON, the pipeline's
 * keys in order, the path's bytes through json_string_bytes), torn-line detection and done-set;
 * and jsonl_columns on the first line, as merge reads it. The complete prefix must never extend
 * past the input, and must end at a line's end. */
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
    const char *text = (const char *)data;
    for (int f = RESULTS_CSV; f <= RESULTS_JSONL; f++)
        for (int retry = 0; retry < 2; retry++) {
            struct doneset *d = doneset_new();
            struct resume_info info = {0};
            struct resume_redo redo = {retry, NULL, NULL, NULL};
            size_t complete = 0;
            char err[300];
            int64_t n = resume_parse_rows((enum results_format)f, text, size, header, &redo, d, &complete, &info, err,
                                          sizeof err);
            if (n >= 0 && (complete > size || (complete && text[complete - 1] != '\n')))
                abort();
            doneset_free(d);
        }
    free(jsonl_columns(text, size));
    return 0;
}
