/* shared: the counters of a run that its worker processes update too. Shared memory (a few
 * pages) behind a memfd that the parent creates and each worker maps through the descriptor it
 * inherits across exec (see ipc.h); threads of one process use the same page. Every field is
 * an atomic, updated without locks. */
#ifndef ANNOTATE_SHARED_H
#define ANNOTATE_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "common/prepstat.h"
#include "common/stats.h"
#include "endpoint/limit.h"
#include "flow/budget.h"

#define SHARED_MAX_STAGES 64   /* PIPELINE_MAX_STAGES */
#define SHARED_MAX_REPLICAS 64 /* PIPELINE_MAX_REPLICA_SLOTS */

/* The answer store's registry of questions on the wire (chain/memo.c), so that a request whose
 * question another request is asking waits for that answer, across threads, event loops and
 * worker processes. Open addressing on the key's hash bytes, under one process-shared robust
 * mutex; a claim is its key, the claimer's process and a serial. */
#define SHARED_MEMO_SLOTS 4096
#define SHARED_MEMO_KEY 24 /* STORE_KEY_BYTES */
#define SHARED_MEMO_PUT_WORDS (1u << 20) /* 8 MiB: 2^26 bits */

struct shared_memo {
    pthread_mutex_t mu;     /* guards what follows but gen and told */
    int ready;              /* mu is initialised */
    int used;               /* slots claimed */
    uint32_t serial;        /* the last claim's serial */
    _Atomic uint32_t gen;   /* futex word: bumped when a claim that others wait for is given back */
    _Atomic int told;       /* the store's failure has been told (once per run, every process) */
    struct shared_memo_slot {
        unsigned char key[SHARED_MEMO_KEY];
        int32_t pid;        /* the claimer's process; 0: a free slot */
        uint32_t serial;
        uint16_t waiters;   /* requests that found it claimed */
        uint8_t remote;     /* one of them is in another process */
        uint8_t done;       /* answered: kept until the claimer's store has committed the answer,
                             * for the other processes to find it there */
    } slot[SHARED_MEMO_SLOTS];
    /* A Bloom filter of the keys this run has put (4 bits a key, in one block of 64 bytes): what
     * a stage new to the store is looked up for. Its pages are touched only with --cache. */
    _Alignas(64) _Atomic uint64_t put[SHARED_MEMO_PUT_WORDS];
};

struct shared_page {
    _Atomic int64_t in_flight; /* HTTP attempts on the wire, every driver, every process */
    /* --concurrency auto, curl-multi: the event loops' totals (limit.h's limit_total) added up,
     * the most they came to, and their tries kept, for the summary. */
    _Atomic int total_now, total_peak;
    _Atomic uint64_t total_ups, total_downs;
    struct shared_stage {
        _Atomic int answered;    /* the stage's server has answered as a server that is set up */
        _Atomic int setup_fails; /* final failures that say it is not (401, 404, a bad certificate) */
        /* The outage breaker (breakers.h): failed attempts of the kind an outage gives, in a
         * row, by how many different requests, how many of them came from a request alone on
         * the wire, the last request, and since when the stage has been down (monotonic ms; 0:
         * up). */
        _Atomic int fails_in_row;
        _Atomic int fail_reqs;
        _Atomic int lone_fails;
        _Atomic uint64_t last_fail_req;
        _Atomic int64_t down_since_ms;
        _Atomic int on_wire;          /* the stage's attempts on the wire (endpoint.c); one of a
                                       * worker process killed on the wire stays counted, and the
                                       * outage breaker then waits for a second request */
        _Atomic int64_t unauth_since_ms; /* the first 401 since its last good answer (endpoint.c) */
        /* A batch stage's HTTP attempts and the items they carried (chain.c), for the summary. */
        _Atomic uint64_t batch_sends, batch_items;
        /* --cache (chain/memo.c): requests answered from the store, and requests asked of the
         * server; whether the store held answers of its identity when the run started (else only
         * the keys this run has put are looked up). */
        _Atomic uint64_t memo_hits, memo_misses;
        _Atomic int memo_look;
    } stage[SHARED_MAX_STAGES];
    /* The replicas of stages with several URLs (slots from stage->replica_base): what chain.c
     * chooses by and ejects with, and what the summary reports. */
    struct shared_replica {
        _Atomic int outstanding;        /* attempts on the wire to it */
        _Atomic int fails_in_row;       /* attempts it failed (replicas.h), in a row */
        _Atomic int setup_bad;          /* it answered as a server not set up for the stage,
                                           and has not answered well since */
        _Atomic int64_t ejected_until_ms; /* monotonic ms; 0: in rotation */
        _Atomic int ejections;          /* times ejected since it last answered well */
        _Atomic int ejected_total;
        _Atomic uint64_t attempts, errors;
        struct hist latency_us;         /* per attempt */
    } replica[SHARED_MAX_REPLICAS];
    _Atomic int fatal;           /* 1 once fatal_msg is written: the run must stop, exit 2 */
    _Atomic int fatal_claim;     /* who writes fatal_msg (the first one) */
    char fatal_msg[1024];
    /* Per endpoint: the "concurrency" limits (limit.h), counted across every process. */
    double t0;                   /* the run's start (now_s), for the limits' history */
    struct limit_stage lim[SHARED_MAX_STAGES];
    struct limit_holder holders[LIMIT_MAX_HOLDERS]; /* which slot each worker process holds */
    struct shared_memo memo;     /* --cache: the questions on the wire */
    struct prepstat prep;        /* is preparing images what limits the run (prepstat.h) */
    struct budget_page budget;   /* --max-memory: images and answers, every process (budget.h) */
};

_Static_assert(BUDGET_MAX_HOLDERS == LIMIT_MAX_HOLDERS, "one holder table");

struct shared {
    struct shared_page *page;
    int fd;
};

/* Creates the page (parent). Without a memfd (fd -1) the page is this process's only. Returns
 * 0, or -1 with errno set. */
int shared_create(struct shared *s);

/* Maps the page behind an inherited descriptor (worker); takes the descriptor. fd -1: a
 * private page. 0 or -1. */
int shared_attach(struct shared *s, int fd);

/* Unmaps and closes; a zeroed struct is a no-op. */
void shared_close(struct shared *s);

#endif
