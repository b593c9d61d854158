/* shared: the counters of a run that its worker processes update too. One page of memory
 * behind a memfd that the parent creates and each worker maps through the descriptor it
 * inherits across exec (see ipc.h); threads of one process use the same page. Every field is
 * an atomic, updated without locks. */
#ifndef ANNOTATE_SHARED_H
#define ANNOTATE_SHARED_H

#include <stdatomic.h>
#include <stdint.h>

struct shared_page {
    _Atomic int64_t in_flight; /* HTTP attempts on the wire, every driver, every process */
};

struct shared {
    struct shared_page *page;
    int fd;
};

/* Creates the page (parent). Returns 0, or -1 with errno set. */
int shared_create(struct shared *s);

/* Maps the page behind an inherited descriptor (worker); takes the descriptor. 0 or -1. */
int shared_attach(struct shared *s, int fd);

/* Unmaps and closes; a zeroed struct is a no-op. */
void shared_close(struct shared *s);

#endif
