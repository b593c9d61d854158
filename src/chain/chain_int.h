/* chain_int: what the chain's own files share (chain.c: the state machine; request.c: a request's
 * life; answer.c: reading an answer; batch.c: batches; body.c: bodies). Not for other modules:
 * chain.h is the chain's interface. */
#ifndef ANNOTATE_CHAIN_INT_H
#define ANNOTATE_CHAIN_INT_H

#include "chain/chain.h"
#include "prepare/prepare.h"

/* The one place an item's stage state changes. A stage goes WAITING -> RUNNING (its requests are
 * made) -> DONE or FAILED, or WAITING -> SKIPPED, DONE (nothing to send) or FAILED (its
 * requests could not be made). */
void chain_set_state(struct item *it, int s, enum stage_state state);

/* Records a request's end: result (owned, taken) when it succeeded, or NULL and err. Gives back
 * what its ticket holds and frees it. The one place where a request stops counting as in
 * flight, its attempts are added to the item's, its time is logged, and the payload is let go
 * once nothing will send it again. */
void chain_settle(const struct run *run, struct chain_req *req, cJSON *result, const char *err);

/* A list of n nulls (an "each" stage's results, or cells, before their answers come); NULL when
 * out of memory. */
cJSON *chain_null_list(int n);

/* Lets go of what no stage of the item will send, or cut from, again: the file's bytes, each
 * prepared copy, the share held for cutting crops; everything once the item has failed and has
 * nothing in flight. */
void chain_release(const struct pipeline *p, struct item *it);

/* A crop stage's cut (chain.h): the file's bytes, the rectangles of the upright original, and
 * the crops made from them. */
struct chain_cut {
    const unsigned char *bytes; /* the item's own (it->raw), kept while the cut is in flight */
    size_t len;
    const struct prep_spec *spec; /* the stage's "image", or NULL */
    uint64_t max_pixels;
    int n;
    struct prep_rect *rects;      /* [n] */
    struct prep_result *out;      /* [n], made by chain_cut_run */
    int failed;
    char err[768];
};

void chain_cut_free(struct chain_cut *c);

/* Marks req's images (a batch: its members') as not at fault: no row, left to --resume. */
void chain_no_row(struct chain_req *req);

/* A short, printable excerpt of a body for error messages (never the whole of it): its first
 * CHAIN_EXCERPT bytes once the run's secrets are replaced (common/secrets.h), so that none is
 * shown, whole or cut. */
#define CHAIN_EXCERPT 80
void chain_excerpt(const char *body, size_t len, char *out, size_t outlen);

/* Runs an expression for its first output. Returns 1 with the output's text in *out (malloc'd),
 * 0 when it yields nothing, null or false, -1 when it fails (why in err), EXPR_OVER_BUDGET when
 * it ran past its CPU-time budget (expr.h; err names it). */
int chain_eval_first(const struct expr *e, const char *body, size_t len, char **out, char *err, size_t errlen);

/* A value's text for a message: a string's content (printable), anything else its JSON. */
void chain_message_of(const char *text, char *out, size_t outlen);

/* ---- batches (batch.c) ---- */

/* A batch's result split into one element per member. */
struct span {
    const char *p;
    size_t n;
    int count, cap;
};

/* Before a batch's attempt: members whose image has failed (or all, when the run is torn down)
 * are settled and leave it, and its body is made for the members it still has. Returns 1 when
 * none is left (the caller gives back its ticket and frees it). */
int batch_begin(const struct run *run, struct chain_req *b);
/* A batch's result (the list): one element per member into el, or -1 with why. */
int batch_split(const struct chain_req *b, const cJSON *result, struct span *el, char *err, size_t errlen);
/* A batch's answer: each member gets its element (and its column's, cel, when the stage has
 * one), or fails with its element's "error". Frees b. */
void batch_done(const struct run *run, struct chain_req *b, const struct span *el, const struct span *cel);
/* A batch that failed for good: each member goes again alone. Frees b. */
void batch_split_up(struct chain_req *b);
/* Settles every member of batch b with why (no_row: not their images' fault), and frees b. */
void batch_fail_all(const struct run *run, struct chain_req *b, const char *why, int no_row);

#endif
