/* progress: the live status line. On a terminal, one line on stderr redrawn at most 10 times a
 * second and cleared at the end; otherwise a plain line every --progress-interval seconds;
 * nothing with --quiet. The total comes from a second source of the run's kind (a scanner, a
 * listing of the bucket, a reading of the list file) that counts ahead without keeping the list;
 * a list on standard input is not counted ahead (the total is what the run has read so far, shown
 * as "N/M+"). Colour only on a terminal, and never when NO_COLOR is set. */
#ifndef ANNOTATE_PROGRESS_H
#define ANNOTATE_PROGRESS_H

#include <stdatomic.h>
#include "config.h"
#include "results/resume.h"
#include "endpoint/shared.h"
#include "common/stats.h"

struct progress;

/* Starts the progress thread (and the counting source, which selects images as the run does:
 * done is the run's resume set, may be NULL; sources the run's S3 clients, may be NULL; found
 * the run's count of images taken). NULL when quiet. Everything passed must outlive
 * progress_end. */
struct sources;
struct progress *progress_new(const struct config *cfg, struct sources *sources, struct stats *st,
                              const struct shared_page *shared, const struct doneset *done, const atomic_int *stop,
                              const atomic_uint_fast64_t *found);
/* Stops drawing and clears the line. NULL is a no-op. */
void progress_end(struct progress *p);
void progress_free(struct progress *p);

/* Formats seconds as 1h02m, 3m05s or 12s. */
void progress_fmt_duration(double s, char *buf, size_t len);

#endif
