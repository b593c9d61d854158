/* libFuzzer target: reading a results file back (resume), in both formats: the CSV's header
 * check, torn-row detection and done-set; the JSON Lines' row check (strict JSON, the pipeline's
 * keys in order, the path's bytes through json_string_bytes), torn-line detection and done-set;
 * and jsonl_columns on the first line, as merge reads it. The complete prefix must never extend
 * past the input, and must end at a line's end. Every row results_rows gives must give its stage
 * cells to results_row_cells (merge compares two ok rows of one image with them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "results/results.h"

struct starts {
    size_t at[64];
    int n;
};

static void row_start(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    (void)path;
    (void)len;
    (void)ok;
    (void)end;
    struct starts *s = ud;
    if (s->n < 64)
        s->at[s->n++] = start;
}

/* Each row's cells, as merge asks for them. */
static void cells_of_rows(enum results_format f, const char *text, size_t size, const char *header)
{
    struct starts s = {.n = 0};
    size_t complete;
    char err[300];
    if (results_rows(f, text, size, header, row_start, &s, &complete, err, sizeof err) < 0)
        return;
    for (int i = 0; i < s.n; i++) {
        char *cells = NULL;
        size_t len;
        if (results_row_cells(f, text, size, s.at[i], header, &cells, &len))
            abort();
        free(cells);
    }
}

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
    cells_of_rows(RESULTS_CSV, text, size, header);
    cells_of_rows(RESULTS_JSONL, text, size, header);
    free(jsonl_columns(text, size));
    return 0;
}
