/* breakers: what a stage's answers say about its server as a whole, beyond one request. Part of
 * the endpoint (endpoint.h); the state is in the shared page (shared.h).
 *
 * The outage breaker: failed attempts of the down kind (ANSWER_BUSY, ANSWER_DOWN), at least
 * OUTAGE_ATTEMPTS in a row and from at least OUTAGE_REQUESTS requests, with no other answer
 * since, say the stage's server is down: one image the server chokes on is not an outage, every
 * request failing is. While it is down for less than --outage-timeout, its requests are retried
 * with backoff beyond their retry budget: a restart costs time, not rows.
 *
 * The set-up breaker: a final answer of the "not set up" kind (ANSWER_SETUP) from a stage that
 * has never answered otherwise says the run is misconfigured, not that the image is bad: the
 * image gets no row (--resume runs it once the set-up is mended), and SETUP_FAILS of them stop
 * the run with exit 2, naming the stage, its URL and what to check. */
#ifndef ANNOTATE_BREAKERS_H
#define ANNOTATE_BREAKERS_H

#include "endpoint/ticket.h"
#include "run.h"

#define OUTAGE_ATTEMPTS 3
#define OUTAGE_REQUESTS 2
#define SETUP_FAILS 3

/* Feeds the outage breaker with how an attempt of request id ended. */
void outage_note(const struct run *run, int s, uint64_t id, const struct attempt_report *r, double now);

/* 1 while stage s is down and its --outage-timeout has not run out. */
int outage_waiting(const struct run *run, int s, double now);

/* Feeds the set-up breaker; returns 1 when the image is not at fault (a set-up error before the
 * stage ever answered otherwise). May stop the run. */
int setup_note(const struct run *run, int s, const struct attempt_report *r);

#endif
