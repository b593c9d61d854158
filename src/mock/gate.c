/* gate: K slots and a FIFO under one mutex (see gate.h). */
#include "mock/gate.h"

#include <string.h>

int gate_init(struct gate *g, int capacity, int queue_max)
{
    memset(g, 0, sizeof *g);
    g->capacity = capacity < 1 ? 1 : capacity;
    g->queue_max = queue_max < 0 ? -1 : queue_max;
    return pthread_mutex_init(&g->mu, NULL) == 0 ? 0 : -1;
}

void gate_destroy(struct gate *g)
{
    pthread_mutex_destroy(&g->mu);
}

enum gate_verdict gate_enter(struct gate *g, struct gate_job *j)
{
    enum gate_verdict v;
    pthread_mutex_lock(&g->mu);
    if (g->in_service < g->capacity) {
        j->where = GATE_SERVED;
        if (++g->in_service > g->peak_in_service)
            g->peak_in_service = g->in_service;
        v = GATE_SERVE;
    } else if (g->queue_max < 0 || g->waiting < g->queue_max) {
        j->where = GATE_WAITING;
        j->next = NULL;
        j->prev = g->tail;
        if (g->tail)
            g->tail->next = j;
        else
            g->head = j;
        g->tail = j;
        if (++g->waiting > g->peak_waiting)
            g->peak_waiting = g->waiting;
        v = GATE_WAIT;
    } else {
        j->where = GATE_OUT;
        g->refused++;
        v = GATE_FULL;
    }
    pthread_mutex_unlock(&g->mu);
    return v;
}

static void unlink_job(struct gate *g, struct gate_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        g->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        g->tail = j->prev;
    j->prev = j->next = NULL;
    g->waiting--;
}

struct gate_job *gate_leave(struct gate *g, struct gate_job *j)
{
    pthread_mutex_lock(&g->mu);
    j->where = GATE_OUT;
    struct gate_job *next = g->head;
    if (next) {
        unlink_job(g, next);
        next->where = GATE_SERVED; /* the slot passes on: in_service does not change */
    } else {
        g->in_service--;
    }
    pthread_mutex_unlock(&g->mu);
    return next;
}

int gate_cancel(struct gate *g, struct gate_job *j)
{
    pthread_mutex_lock(&g->mu);
    int was_waiting = j->where == GATE_WAITING;
    if (was_waiting) {
        unlink_job(g, j);
        j->where = GATE_OUT;
    }
    pthread_mutex_unlock(&g->mu);
    return was_waiting;
}

void gate_read(struct gate *g, struct gate_stats *out, int reset)
{
    pthread_mutex_lock(&g->mu);
    out->capacity = g->capacity;
    out->queue_max = g->queue_max;
    out->in_service = g->in_service;
    out->waiting = g->waiting;
    out->peak_in_service = g->peak_in_service;
    out->peak_waiting = g->peak_waiting;
    out->refused = g->refused;
    if (reset) {
        g->refused = 0;
        g->peak_in_service = g->in_service;
        g->peak_waiting = g->waiting;
    }
    pthread_mutex_unlock(&g->mu);
}
