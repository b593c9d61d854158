/* budget: the bytes of images (base64, raw bytes, prepared copies, crops being cut) and of
 * answers being received that the whole run holds at once, capped by --max-memory. The count
 * lives in the run's shared page (endpoint/shared.h), so that the parent and every worker
 * process draw on one budget; a process that has not been given a page counts on a private one.
 *
 * Images: the load stage takes an image's share before it reads the file and the item gives it
 * back when it drops its payload (item_drop_payload, item_free), so a folder of 60 MB images
 * holds a few of them, not a queue full. One image larger than the whole budget is still loaded,
 * alone (when nothing else is held).
 *
 * Answers (budget_answer_grow): an answer's buffer draws on the budget as it grows, beyond
 * BUDGET_SMALL per request slot (http.c), and a result an item keeps from it is counted until
 * the item is freed (item_charge_result). Answers may go past the cap by `room` (one answer's
 * largest size: --max-answer-bytes times the largest batch), so that an answer never waits for
 * images to go; past that, one answer at a time (the one holding the token, "alone") may still
 * grow, and the others wait for room. That one always progresses (it waits for nothing), so
 * answers cannot wait on each other for ever. Images and answers being received come to at most
 * cap + 2 x room. What is in memory already when it is counted (budget_force: a result kept, the
 * copy of a payload a worker process was sent) may pass that; loads and answers then wait.
 *
 * Worker processes: each draws on the same page and notes what it holds in its entry of the
 * holder table (by_holder, indexed as limit.h's holders), so that its parent gives back what a
 * worker held when it dies (budget_reap), and takes over the charge of an image a worker loaded
 * and sent back with its payload (budget_adopt). */
#ifndef ANNOTATE_BUDGET_H
#define ANNOTATE_BUDGET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BUDGET_MAX_HOLDERS 4096 /* LIMIT_MAX_HOLDERS */

/* An answer's buffer, or a result an item keeps, up to this size is not counted: every model's
 * usual JSON fits, and the pieces are bounded in number (request slots, items in flight). */
#define BUDGET_SMALL (64 * 1024)

struct budget_page {
    _Atomic uint64_t cap;     /* --max-memory; 0: no cap */
    _Atomic uint64_t room;    /* how far answers may go past cap */
    _Atomic uint64_t held;    /* images and answers */
    _Atomic uint64_t peak;
    _Atomic uint64_t alone;   /* the answer that may grow past every limit; 0: none */
    _Atomic uint32_t gen;     /* futex word: bumped when bytes are given back */
    _Atomic int waiters;      /* asleep on gen */
    _Atomic uint64_t by_holder[BUDGET_MAX_HOLDERS]; /* what each worker process holds */
};

/* This process draws on page (NULL: a private one), as holder (a worker process's entry + 1 in
 * the holder table, run->holder; 0 for the parent). Call before any image is loaded. */
void budget_use(struct budget_page *page, int holder);

/* Sets the cap (0: none) and the room answers have past it. The parent, before the workers. */
void budget_set(uint64_t max_bytes, uint64_t answer_room);

/* Waits until n more bytes of an image fit (or nothing is held), then counts them. While it
 * waits it calls alive(arg) about every second (a worker says it is not stuck), and gives up,
 * returning -1, when stop(arg) becomes true. 0 when taken. */
int budget_take(uint64_t n, void (*alive)(const void *), int (*stop)(const void *), const void *arg);

/* Counts n bytes already in memory (a copy that came from another process), without waiting. */
void budget_force(uint64_t n);

void budget_give(uint64_t n);

/* An answer's buffer wants n more bytes. *token is the answer's: 0 until it holds the token
 * (it is set then). Returns 0 when counted; 1 when there is no room now (wait with
 * budget_answer_wait, or pause the transfer, and ask again). */
int budget_answer_grow(uint64_t n, uint64_t *token);

/* Gives back n bytes of an answer, and its token when it holds it (*token set to 0). */
void budget_answer_give(uint64_t n, uint64_t *token);

/* Sleeps until bytes are given back, at most max_s seconds. */
void budget_answer_wait(double max_s);

/* Bytes held now (images and answers), and the most ever held. */
uint64_t budget_held(void);
uint64_t budget_peak(void);

/* The parent, with the run's page: worker pid has died; gives back what it held. */
struct shared_page;
void budget_reap(struct shared_page *sh, int pid);

/* The parent takes over n bytes that worker pid holds (an image it sent back with its payload):
 * they stay counted, now as the parent's. */
void budget_adopt(struct shared_page *sh, int pid, uint64_t n);

#endif
