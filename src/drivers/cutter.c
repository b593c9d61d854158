/* cutter: see cutter.h. A list of cuts to run and a list of cuts that have run, under one lock. */
#include "drivers/cutter.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct cutter {
    const struct run *run;
    int wake_fd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct chain_req *todo, **todo_tail, *done;
    int stop;
    int n;
    pthread_t *tids;
};

static void *cut_thread(void *arg)
{
    struct cutter *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->todo && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        struct chain_req *r = c->todo;
        if (!r)
            break; /* stopping, and nothing left to run */
        if (!(c->todo = r->next))
            c->todo_tail = &c->todo;
        pthread_mutex_unlock(&c->mu);
        chain_cut_run(c->run, r);
        pthread_mutex_lock(&c->mu);
        r->next = c->done;
        c->done = r;
        uint64_t one = 1;
        ssize_t w = write(c->wake_fd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct cutter *cutter_new(const struct run *run, int threads, int wake_fd)
{
    struct cutter *c = calloc(1, sizeof *c);
    if (!c || !(c->tids = calloc((size_t)threads, sizeof *c->tids))) {
        free(c);
        return NULL;
    }
    c->run = run;
    c->wake_fd = wake_fd;
    c->todo_tail = &c->todo;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    while (c->n < threads && pthread_create(&c->tids[c->n], NULL, cut_thread, c) == 0)
        c->n++;
    if (c->n == 0) {
        cutter_free(c);
        return NULL;
    }
    return c;
}

void cutter_put(struct cutter *c, struct chain_req *cut)
{
    cut->next = NULL;
    pthread_mutex_lock(&c->mu);
    *c->todo_tail = cut;
    c->todo_tail = &cut->next;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

struct chain_req *cutter_take(struct cutter *c)
{
    pthread_mutex_lock(&c->mu);
    struct chain_req *r = c->done;
    if (r) {
        c->done = r->next;
        r->next = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

void cutter_free(struct cutter *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->n; i++)
        pthread_join(c->tids[i], NULL);
    for (struct chain_req *r = c->done, *n; r; r = n) {
        n = r->next;
        chain_req_free(r);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->tids);
    free(c);
}
