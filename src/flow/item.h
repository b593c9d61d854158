/* item: one image on its way through the run. The scanner creates it, each stage fills in its
 * part, and the writer frees it once the row is written; nothing about an image outlives its row.
 * The stage that holds an item owns it. */
#ifndef ANNOTATE_ITEM_H
#define ANNOTATE_ITEM_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "common/hash.h"
#include "prepare/box.h"

enum item_status { ITEM_PENDING = 0, ITEM_OK = 1, ITEM_FAILED = 2 };

/* Where an image's bytes are (source.h): a file a folder's walk found (not followed if it became
 * a link), a file a list names (links followed, as the user named it), an S3 object
 * (s3://BUCKET/KEY), an http(s) URL. The load stage reads each its own way (load.h, fetch.h). */
enum item_kind { ITEM_FILE = 0, ITEM_LISTED_FILE, ITEM_S3, ITEM_HTTP };

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

/* A stage's failure while the item's other stages go on (item_stage_fail): why, the element it
 * came from (0 for an image stage), and whether it is final. */
struct stage_fail {
    char *why;  /* NULL: the stage has not failed */
    int index;
    int final;
};

/* A prepared copy of the image: what the load stage made for one distinct "image" spec of the
 * pipeline (pipeline.h: p->specs), shared by every stage that asks for that spec. Its bytes (and
 * their base64, when a body sends base64) go once no stage of the spec will send them again
 * (item_drop_copy); its size and frame stay, for the boxes a stage answers about it. */
struct item_copy {
    unsigned char *raw;  /* the prepared file (malloc'd) */
    size_t raw_len;
    char *b64;           /* its base64, when a body sends base64 (malloc'd) */
    size_t b64_len;
    const char *mime;    /* static (mime.h) */
    int width, height;
    struct prep_frame frame; /* its pixels in the upright original (box.h) */
    uint64_t charged;    /* bytes of --max-memory it holds */
};

struct item {
    uint64_t seq;
    char *path;          /* owned; root joined with the path below it, byte for byte */
    size_t path_len;
    size_t rel_off;      /* path + rel_off is the path below the scanned root */
    int kind;            /* enum item_kind */
    int size_known;      /* the source said how large it is (an S3 listing): size */
    uint64_t size;
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
    unsigned char digest[HASH_BYTES]; /* with --cache: the BLAKE3 hash of the bytes in raw (and
                            encoded in b64), taken by the load stage: what stands for them in the
                            answer store's keys (chain/memo.h). Code that changes those bytes must
                            take it again or clear has_digest */
    int has_digest;
    uint64_t charged;    /* bytes of the --max-memory budget its payload holds (budget.h) */
    int stored_w, stored_h, orientation; /* the file's pixels as stored and its EXIF orientation
                                            (prepare.h: prep_info), when its header was read;
                                            stored_w 0 otherwise */
    struct item_copy *copies; /* [n_copies]: one per distinct "image" spec, made by the load stage */
    int n_copies;
    uint64_t cut_charged; /* bytes of --max-memory held for cutting crops (chain_cut), given back
                             when the last crop stage has been cut */
    int cutting;          /* crop stages being cut (chain.h: chain_cut_run) */
    int status;          /* enum item_status */
    int no_row;          /* failed in a way that says the set-up is wrong: written nowhere, left to
                            --resume (see chain_attempt_end) */
    char *error;         /* owned; NULL when ok */
    int fail_final;      /* failed, and a retry would fail the same way: a 4xx on the image itself,
                            a garbled answer that repeats, a file that is not an image (a run's
                            --retry-failed is worth it only for the others: timeouts, outages, 5xx
                            after their retries, out of memory). The others are the failures that
                            say load, which `annotate bench` holds against a point (chain.h:
                            chain_load_shaped is the one rule for an answer) */
    struct stage_fail *fails; /* [n_stages] once a stage has failed (item_stage_fail), else NULL */
    int n_stages;
    cJSON **results;     /* [n_stages], owned; NULL while a stage has not run */
    cJSON **cells;       /* [n_stages], owned: a stage's "column" (pipeline.h), what its cell shows
                            instead of its result (an "each" stage: one per element); NULL for a
                            stage without one */
    uint64_t results_charged; /* bytes of --max-memory its large results hold (item_charge_result) */
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

/* Marks the item failed with a message (the first failure wins; later ones are ignored): at once,
 * so that nothing more of it is sent. item_fail's failure is one a retry may mend; item_fail_final's
 * is not (fail_final). The message (here and in item_stage_fail) is scrubbed of the run's secrets
 * (common/secrets.h) before it is cut to 1023 bytes: every failed row's error passes here. */
void item_fail(struct item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void item_fail_final(struct item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stage s failed (element index of an "each" stage, else 0), final or not: the item's other
 * stages go on, those that need s are skipped, and the row, once every stage is settled, is
 * failed with the cells of the stages that answered (item_settle_fails). Of one stage's failures
 * the lowest element index is kept, so that the reason does not depend on which answer came
 * first. 0, or -1 when out of memory (then the item has failed at once, with item_fail). */
int item_stage_fail(struct item *it, int s, int index, int final, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Once every stage is settled: when some stage failed, the item fails with the reasons of its
 * failed stages in pipeline order, joined by "; " (final when any is), and 1 is returned; else
 * 0. */
int item_settle_fails(struct item *it);

/* Drops the payload (after the last request that needs it): the file's bytes and base64, every
 * prepared copy's bytes, and what was held for cutting crops, with their share of the budget. */
void item_drop_payload(struct item *it);

/* Drops the file's own bytes and base64 only (no stage sends them, or cuts from them, again). */
void item_drop_original(struct item *it);

/* Drops prepared copy k's bytes (no stage of its spec will send them again). */
void item_drop_copy(struct item *it, int k);

/* Gives back what was held for cutting crops. */
void item_drop_cut_charge(struct item *it);

/* The bytes of --max-memory the item holds: its payload's, its copies' and its cut's. */
uint64_t item_charge(const struct item *it);

/* Its payload has gone to another process with its charges (ipc.h): forgets them, so that
 * freeing it gives nothing back. */
void item_disown_charge(struct item *it);

/* A result the item now keeps (a server's text, up to --max-answer-bytes): one larger than
 * BUDGET_SMALL is counted in --max-memory (without waiting: it is in memory already) until the
 * item is freed. */
void item_charge_result(struct item *it, const cJSON *result);

void item_log_request(struct item *it, int stage, uint32_t us, int attempts);

void item_free(struct item *it);

/* Monotonic clock in seconds. */
double now_s(void);

#endif
