/* summary: what a run tells the user at the end, as text on stderr and as JSON (--stats-json). */
#ifndef ANNOTATE_SUMMARY_H
#define ANNOTATE_SUMMARY_H

#include <stdio.h>
#include <cjson/cJSON.h>
#include "config.h"
#include "runner.h"
#include "common/stats.h"

void summary_print(FILE *f, const struct config *cfg, const struct run_summary *s, const struct stats *st);
cJSON *summary_json(const struct config *cfg, const struct run_summary *s, const struct stats *st);
int summary_write_json(const char *path, const struct config *cfg, const struct run_summary *s,
                       const struct stats *st, char *err, size_t errlen);
/* Latency percentiles of a histogram as a JSON object {p50_ms, p90_ms, p99_ms, max_ms, count}. */
cJSON *hist_json(const struct hist *h);

#endif
