/* queue: a bounded, blocking, multi-producer multi-consumer queue of pointers.
 *
 * The stages of a run are connected by these. A full queue blocks its producers: that is the
 * backpressure that keeps memory bounded whatever the number of images. A queue closes when its
 * last producer says it is done (or when queue_close is called): consumers then drain what is
 * left and see the end. One mutex and two conditions, after zstd's pool.c.
 * An event-driven consumer (the curl-multi and process executors) can ask for an eventfd that is
 * written on every push and on close, so it can sleep in epoll/poll instead of on a condition. */
#ifndef ANNOTATE_QUEUE_H
#define ANNOTATE_QUEUE_H

#include <stddef.h>

typedef struct queue queue;

/* A queue holding at most cap (>= 1) pointers, with `producers` producers: it closes after that
 * many queue_producer_done calls. Returns NULL when out of memory. */
queue *queue_new(size_t cap, int producers);

/* Blocks while full. Returns 0, or -1 when the queue is closed (the item was not taken). */
int queue_push(queue *q, void *p);

/* Non-blocking push: 0 when taken, 1 when the queue is full (try again later), -1 when closed. */
int queue_try_push(queue *q, void *p);

/* Blocks while empty and open. Returns the oldest item, or NULL once closed and drained. */
void *queue_pop(queue *q);

/* Non-blocking pop: 1 and *out set, 0 when empty but still open, -1 when closed and drained. */
int queue_try_pop(queue *q, void **out);

/* One producer is done; the queue closes when all are. */
void queue_producer_done(queue *q);

/* Closes at once: pushes fail, blocked producers and consumers wake. Items already in the queue
 * can still be popped. */
void queue_close(queue *q);

/* Returns an eventfd (EFD_NONBLOCK) that is written on every push and on close; created on first
 * call, owned by the queue. -1 on error. */
int queue_notify_fd(queue *q);

/* Like queue_notify_fd, but a new eventfd for each caller (at most QUEUE_MAX_NOTIFY), so that
 * several event loops consuming one queue each get their own wake-up: one loop reading a shared
 * eventfd would swallow the others'. Owned by the queue. */
#define QUEUE_MAX_NOTIFY 256
int queue_add_notify_fd(queue *q);

size_t queue_len(queue *q);

/* Counts in ps (prepstat.h) the time this queue's consumers wanted an item and found none: from a
 * pop that finds it empty and open (queue_pop about to wait, queue_try_pop returning 0: an event
 * loop asks only while it has room) to the next push, or to its close (after which nothing more
 * comes: not starved). One queue per prepstat. Call before the first pop; ps outlives the queue. */
struct prepstat;
void queue_watch_starved(queue *q, struct prepstat *ps);

/* Frees the queue; items still in it are not freed (the caller drains first). NULL is a no-op. */
void queue_free(queue *q);

#endif
