/* queue: see queue.h. A ring buffer under one mutex; not_full wakes producers, not_empty wakes
 * consumers; close wakes both.
 *
 * Producers blocked on a full queue are woken only once it has drained to half its capacity, not
 * at every pop: a scanner feeding a busy stage would otherwise sleep and wake once per image
 * (a context switch each, measured at thousands a second), where now it refills half the queue
 * per wake-up. */
#include "flow/queue.h"
#include "common/prepstat.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t not_full, not_empty;
    void **ring;
    size_t cap, head, len;
    int producers;
    int waiting_producers;
    int closed;
    int efd;                  /* queue_notify_fd's, shared */
    int extra[QUEUE_MAX_NOTIFY]; /* queue_add_notify_fd's, one per event loop */
    int n_extra;
    struct prepstat *starve;  /* queue_watch_starved's, or NULL */
    int starving;             /* a consumer found it empty, and nothing was pushed since */
};

queue *queue_new(size_t cap, int producers)
{
    if (cap < 1)
        cap = 1;
    queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->ring = calloc(cap, sizeof *q->ring);
    if (!q->ring) {
        free(q);
        return NULL;
    }
    q->cap = cap;
    q->producers = producers > 0 ? producers : 1;
    q->efd = -1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    return q;
}

/* A consumer found the queue empty and open; an item came, or it closed (under q->mu). */
static void starve_begin(queue *q)
{
    if (q->starve && !q->starving && !q->closed) {
        q->starving = 1;
        prepstat_starve_begin(q->starve);
    }
}

static void starve_end(queue *q)
{
    if (q->starving) {
        q->starving = 0;
        prepstat_starve_end(q->starve);
    }
}

static void notify(queue *q)
{
    uint64_t one = 1;
    ssize_t r;
    /* EAGAIN only when a counter is saturated: its reader is awake anyway */
    if (q->efd >= 0)
        r = write(q->efd, &one, sizeof one);
    for (int i = 0; i < q->n_extra; i++)
        r = write(q->extra[i], &one, sizeof one);
    (void)r;
}

int queue_push(queue *q, void *p)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed) {
        q->waiting_producers++;
        pthread_cond_wait(&q->not_full, &q->mu);
        q->waiting_producers--;
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    q->ring[(q->head + q->len) % q->cap] = p;
    q->len++;
    starve_end(q);
    pthread_cond_signal(&q->not_empty);
    notify(q);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int queue_try_push(queue *q, void *p)
{
    pthread_mutex_lock(&q->mu);
    int r = q->closed ? -1 : q->len == q->cap ? 1 : 0;
    if (r == 0) {
        q->ring[(q->head + q->len) % q->cap] = p;
        q->len++;
        starve_end(q);
        pthread_cond_signal(&q->not_empty);
        notify(q);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void *take(queue *q)
{
    void *p = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    if (q->waiting_producers && q->len <= q->cap / 2)
        pthread_cond_broadcast(&q->not_full);
    return p;
}

void *queue_pop(queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed) {
        starve_begin(q);
        pthread_cond_wait(&q->not_empty, &q->mu);
    }
    void *p = q->len ? take(q) : NULL;
    pthread_mutex_unlock(&q->mu);
    return p;
}

int queue_try_pop(queue *q, void **out)
{
    int r;
    pthread_mutex_lock(&q->mu);
    if (q->len) {
        *out = take(q);
        r = 1;
    } else {
        r = q->closed ? -1 : 0;
        starve_begin(q);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void close_locked(queue *q)
{
    starve_end(q);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    notify(q);
}

void queue_producer_done(queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (q->producers > 0 && --q->producers == 0)
        close_locked(q);
    pthread_mutex_unlock(&q->mu);
}

void queue_close(queue *q)
{
    pthread_mutex_lock(&q->mu);
    close_locked(q);
    pthread_mutex_unlock(&q->mu);
}

int queue_notify_fd(queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (q->efd < 0) {
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (q->efd >= 0 && (q->len || q->closed))
            notify(q);
    }
    int fd = q->efd;
    pthread_mutex_unlock(&q->mu);
    return fd;
}

int queue_add_notify_fd(queue *q)
{
    pthread_mutex_lock(&q->mu);
    int fd = -1;
    if (q->n_extra < QUEUE_MAX_NOTIFY && (fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0) {
        q->extra[q->n_extra++] = fd;
        if (q->len || q->closed) {
            uint64_t one = 1;
            ssize_t r = write(fd, &one, sizeof one);
            (void)r;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return fd;
}

void queue_watch_starved(queue *q, struct prepstat *ps)
{
    pthread_mutex_lock(&q->mu);
    q->starve = ps;
    pthread_mutex_unlock(&q->mu);
}

size_t queue_len(queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void queue_free(queue *q)
{
    if (!q)
        return;
    if (q->efd >= 0)
        close(q->efd);
    for (int i = 0; i < q->n_extra; i++)
        close(q->extra[i]);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    free(q->ring);
    free(q);
}
