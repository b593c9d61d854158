/* cutter: the threads that cut crops for the curl-multi driver (chain.h: chain_cut_run), so that
 * its event loop never spends the CPU time of decoding an image. The loop puts a cut in; one of
 * the cutter's threads runs it and wakes the loop (a write to wake_fd, an eventfd in its epoll
 * set); the loop takes it back with cutter_take and finishes it with chain_cut_done, in the loop,
 * which owns the item. Cuts are run in the order they were put in. */
#ifndef ANNOTATE_CUTTER_H
#define ANNOTATE_CUTTER_H

#include "chain/chain.h"

struct cutter;

/* threads: how many cuts run at once. NULL when out of memory or no thread could start. */
struct cutter *cutter_new(const struct run *run, int threads, int wake_fd);

void cutter_put(struct cutter *c, struct chain_req *cut);

/* A cut that has run, or NULL when none is back yet. */
struct chain_req *cutter_take(struct cutter *c);

/* Stops the threads once the cuts put in have run; cuts not taken back are freed. NULL: no-op. */
void cutter_free(struct cutter *c);

#endif
