/* item: one image on its way through the run. The scanner creates it, each stage fills in its
 * part, and the writer frees it once the row is written; nothing about an image outlives its row.
 * The stage that holds an item owns it. */
#ifndef ANNOTATE_ITEM_H
#define ANNOTATE_ITEM_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "common/hash.h"

enum item_status { ITEM_PENDING = 0, ITEM_OK = 1, ITEM_FAILED = 2 };

/* Per-stage progress, used by chain.c. */
enum stage_state { ST_WAITING = 0, ST_RUNNING, ST_DONE, ST_SKIPPED, ST_FAILED };

/* One completed request: which stage, how long from first attempt to final answer, how many
 * attempts. Kept on the item so that every strategy (processes included) reports the same way. */
struct req_log {
    uint32_t us;
    uint16_t stage;
    uint16_t attempts;
};

struct chain_req;

struct item {
    uint64_t seq;
    char *path;          /* owned; root joined with the path below it, byte for byte */
    size_t path_len;
    size_t rel_off;      /* path + rel_off is the path below the scanned root */
    char *b64;           /* owned; the image, base64-encoded once by the load stage (when a
                            stage's body sends base64) */
    size_t b64_len;
    size_t b64_slack;    /* bytes the loader left free before b64 and after its end (the block
                            starts at b64 - b64_slack): a body's head and tail are written there,
                            around the base64, so that the body is one piece (chain_req_whole) */
    int slack_users;     /* requests on the wire whose body is that piece */
    unsigned char *raw;  /* owned; the image's bytes (when a stage's body sends them) */
    size_t raw_len;
    const char *mime;    /* static (mime.h); set by the load stage */
    unsigned char digest[HASH_BYTES]; /* with --cache: the SHA-256 of the bytes in raw (and
                            encoded in b64), taken by the load stage: what stands for them in the
                            answer store's keys (chain/memo.h). Code that changes those bytes must
                            take it again or clear has_digest */
    int has_digest;
    uint64_t charged;    /* bytes of the --max-memory budget its payload holds (budget.h) */
    int status;          /* enum item_status */
    int no_row;          /* failed in a way that says the set-up is wrong: written nowhere, left to
                            --resume (see chain_attempt_end) */
    char *error;         /* owned; NULL when ok */
    int n_stages;
    cJSON **results;     /* [n_stages], owned; NULL while a stage has not run */
    unsigned char *state;/* [n_stages] enum stage_state */
    int *outstanding;    /* [n_stages] requests of that stage still in flight */
    int in_flight;       /* requests of this item in flight, all stages */
    uint32_t requests;   /* requests completed (each counted once, whatever its retries) */
    uint32_t attempts;   /* HTTP attempts, retries included */
    double t_start;      /* monotonic seconds when the item entered the pipeline */
    struct req_log *log; /* one entry per completed request, folded into the stats by the writer */
    struct chain_req *requeue; /* requests of a batch that was split, for chain_next to give out
                                  again (always taken by the follow-up of that batch's end) */
    int n_log, cap_log;
};

/* A new pending item for path (copied). NULL when out of memory. */
struct item *item_new(const char *path, size_t path_len, size_t rel_off, int n_stages, uint64_t seq);

/* Marks the item failed with a message (the first failure wins; later ones are ignored). */
void item_fail(struct item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the payload (after the last request that needs it). */
void item_drop_payload(struct item *it);

void item_log_request(struct item *it, int stage, uint32_t us, int attempts);

void item_free(struct item *it);

/* Monotonic clock in seconds. */
double now_s(void);

#endif
