/* gate: one endpoint's capacity, shared by every thread of the mock: K slots, and a FIFO of the
 * requests waiting for one, bounded or not. This is what a GPU server with a bounded queue does
 * (TorchServe, Triton, KServe): K requests are served at once, the next ones wait in arrival
 * order, and once the queue is full a new request is turned away at once (the server answers
 * 503 with Retry-After).
 *
 * The gate knows nothing of HTTP nor of event loops: it hands back the job that gets a freed
 * slot, and the caller starts its service on whichever thread owns it. One mutex guards
 * everything; it is held for a few pointer moves only.
 *
 * A job is embedded in the caller's request record; the gate only links it. */
#ifndef ANNOTATE_MOCK_GATE_H
#define ANNOTATE_MOCK_GATE_H

#include <pthread.h>
#include <stdint.h>

enum gate_where { GATE_OUT = 0, GATE_WAITING, GATE_SERVED };

struct gate_job {
    struct gate_job *prev, *next; /* in the FIFO while waiting */
    int where;                    /* enum gate_where; read and written under the gate's mutex */
};

/* The fields are the gate's; use the functions. */
struct gate {
    pthread_mutex_t mu;
    int capacity;                 /* K >= 1 */
    int queue_max;                /* -1: no bound */
    int in_service, waiting;
    int peak_in_service, peak_waiting;
    uint64_t refused;             /* turned away because the queue was full */
    struct gate_job *head, *tail;
};

enum gate_verdict {
    GATE_SERVE,  /* a slot was free: the job holds it now */
    GATE_WAIT,   /* queued; gate_leave of another job hands it a slot later */
    GATE_FULL,   /* the queue is full: the job was not taken */
};

/* capacity >= 1, queue_max >= 0 or -1 for no bound. 0, or -1 when the mutex cannot be made. */
int gate_init(struct gate *g, int capacity, int queue_max);

/* Frees the mutex; the jobs are the caller's. */
void gate_destroy(struct gate *g);

/* A request arrives. */
enum gate_verdict gate_enter(struct gate *g, struct gate_job *j);

/* j, which holds a slot, is done (answered, or its client went away and its service time is
 * over). The slot goes to the head of the queue, which is returned (now GATE_SERVED) for the
 * caller to start; NULL when nobody waits and the slot is free again. */
struct gate_job *gate_leave(struct gate *g, struct gate_job *j);

/* j's client went away. 1 when j was waiting: it is out of the queue and the caller may drop
 * it. 0 when j holds a slot: the slot stays busy until gate_leave, as a GPU finishes a batch
 * whose client has gone. */
int gate_cancel(struct gate *g, struct gate_job *j);

struct gate_stats {
    int capacity, queue_max;
    int in_service, waiting;
    int peak_in_service, peak_waiting;
    uint64_t refused;
};

/* A consistent snapshot. With reset, the refusals are zeroed and the peaks restart from the
 * present counts. */
void gate_read(struct gate *g, struct gate_stats *out, int reset);

#endif
