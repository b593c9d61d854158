/* report: what `annotate bench` prints and writes of its points: the table on stdout (a header,
 * then a row per point as it is measured), the JSON report and the SVG chart of images/s against
 * concurrency. The report and the chart are rewritten after every point, so a bench that is
 * stopped keeps what it measured. */
#ifndef ANNOTATE_BENCH_REPORT_H
#define ANNOTATE_BENCH_REPORT_H

#include <cjson/cJSON.h>

#include "bench/point.h"

void report_header(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu);
void report_row(const struct bench_opts *b, const struct point *pt);

/* The JSON report and the chart of the np points so far (complete once every point has run).
 * 0, or -1 when the report could not be written (said on stderr). */
int report_write(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu,
                 const struct point *pts, int np, int complete);

/* A report's "mode" object, added to rep, with what every report starts with: "dir", "server",
 * "url". */
cJSON *report_mode(cJSON *rep, const struct config *cfg, const struct bench_opts *b, const char *url);

/* Writes txt and a newline to path whole (a temporary file renamed; its folders made). 0 or -1
 * with errno. */
int report_write_file(const char *path, const char *txt);

#endif
