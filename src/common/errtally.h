/* errtally: why images failed, counted by kind. Each failed row's error is reduced to its stage
 * and a reason that leaves out what differs from one image to the next, so that 50,000 images
 * that failed for one cause make one entry, not 50,000:
 *
 *   "model_03: HTTP 503: <html>Service Unavail... (after 4 attempts)"   model_03  HTTP 503
 *   "model_05[2]: Operation timed out after 30001 milliseconds ..."     model_05  timed out
 *   "model_01: Failed to connect to h port 80 after 0 ms: Connection refused (after 4 attempts)"
 *                                                                       model_01  cannot connect: Connection refused
 *   "model_01: the answer is not JSON at byte 0: <html>... (after 4 attempts)"
 *                                                                       model_01  the answer is not JSON
 *   "empty file (0 bytes): not sent"                                    (none)    empty file (N bytes): not sent
 *
 * Other reasons (a message an "error" expression read from the answer, a TLS message) are kept
 * as they are, with each number standing alone replaced by N, printable, at most
 * ERRTALLY_REASON - 1 bytes. The table holds at most ERRTALLY_MAX kinds; failures of further
 * kinds are counted together as "other", so memory stays fixed however many images fail.
 *
 * The run tallies where rows are written (runner.c), so the images of worker processes count too.
 * One writer and any number of readers (the progress line, the benchmark's sampler): every call
 * takes the table's mutex. */
#ifndef ANNOTATE_ERRTALLY_H
#define ANNOTATE_ERRTALLY_H

#include <stddef.h>
#include <stdint.h>

#define ERRTALLY_MAX 32
#define ERRTALLY_STAGE 64
#define ERRTALLY_REASON 100
#define ERRTALLY_EXAMPLE 200

struct errtally_entry {
    char stage[ERRTALLY_STAGE];     /* "" when no stage is named (the file could not be read, ...) */
    char reason[ERRTALLY_REASON];
    char example[ERRTALLY_EXAMPLE]; /* the first error of this kind, as the row has it (cut, printable) */
    uint64_t count;
};

struct errtally;

struct errtally *errtally_new(void);
void errtally_free(struct errtally *t);

/* Counts one failed row by its error text (NULL counts as "no reason given"). */
void errtally_add(struct errtally *t, const char *error);

/* Copies up to max entries, most common first (ties: the kind seen first), into out. Returns how
 * many. *other (may be NULL) gets the failures counted outside the table (kinds beyond
 * ERRTALLY_MAX and, when max is smaller than the table, the entries not copied); *total (may be
 * NULL) every failure counted. t NULL: 0, and both 0. */
int errtally_top(struct errtally *t, struct errtally_entry *out, int max, uint64_t *other, uint64_t *total);

/* The reduction alone: stage and reason of one error text. */
void errtally_normalise(const char *error, char *stage, size_t stagelen, char *reason, size_t reasonlen);

/* "model_03: HTTP 503", or the reason alone when no stage is named. */
void errtally_label(const struct errtally_entry *e, char *buf, size_t len);

#endif
