/* blocking: the blocking driver, used by the serial, threads and processes strategies. One per
 * worker (a thread or a worker process): it runs an item's whole chain, a request at a time, on
 * one reused easy handle (so connections stay open), and waits by sleeping: for a rate token or a
 * retry's time, and on the shared page's futex for a slot of a stage's concurrency. It only
 * schedules and waits: what a request means is the chain's, what a server can take the
 * endpoint's. */
#ifndef ANNOTATE_BLOCKING_H
#define ANNOTATE_BLOCKING_H

#include "flow/item.h"
#include "run.h"

struct blocking;
/* NULL when out of memory or curl cannot make a handle. */
struct blocking *blocking_new(const struct run *run);
/* Runs the whole chain for one item, with retries. w may be NULL (its creation failed): the item
 * then fails with that reason. */
void blocking_query(struct blocking *w, struct item *it);
/* NULL is a no-op. */
void blocking_free(struct blocking *w);

#endif
