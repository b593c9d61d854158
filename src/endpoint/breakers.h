/* breakers: what a stage's answers say about its server as a whole, beyond one request. Part of
 * the endpoint (endpoint.h); the state is in the shared page (shared.h).
 *
 * The outage breaker. Only failures that say no server is there to answer count: no answer at
 * all (refused, reset, nothing, a timeout), or 429, 502, 503, 504 (a gateway, or a server too
 * busy to take the request, speaking for it). The stage's server is down when such failures
 * come OUTAGE_ATTEMPTS times in a row, with no other answer between, and either from at least
 * OUTAGE_REQUESTS different requests, or from a request that was each time the stage's only one
 * on the wire. While it is down for less than --outage-timeout, its requests are retried with
 * backoff beyond their retry budget: a restart costs time, not rows. Any other answer puts it
 * back up.
 *
 * One rule for both ways of getting this wrong. A restart while a stage has a single request
 * in flight (a batching stage, "concurrency": 1, serial, the stage behind one) shows only that
 * request's failures: they open the breaker on their own, since nothing else could have
 * answered. And an answer of the server's own, a 500 included, says the server is running:
 * images it always fails on (a 500 that follows particular images while other requests
 * succeed) fail alone, with their retries, and never make the others wait for --outage-timeout,
 * however many of them are in flight at once. What the rule cannot tell apart: an image that
 * makes its server drop the connection or hang, sent while it is the stage's only request, reads
 * as an outage, and waits up to --outage-timeout before it fails.
 *
 * The set-up breaker: a final answer of the "not set up" kind (ANSWER_SETUP) from a stage that
 * has never answered otherwise says the run is misconfigured, not that the image is bad. Such
 * answers from SETUP_FAILS different requests, or as many from a request that was each time the
 * stage's only one on the wire, stop the run with exit 2, naming the stage, its URL and what to
 * check, and their images get no row (--resume runs them once the set-up is mended). Until the
 * breaker has judged, such a request is retried, beyond its retries if need be (the judgement
 * comes: the stage answers, or its requests say the same, or one of them is alone): once the
 * stage has answered well, its next set-up answer is about the image, and its row says so. So
 * an image is never left without a row by a run that goes on, and one image a server refuses
 * before the others' answers came back does not stop the run. (A replica that answers so while
 * another may answer well is that replica's fault, not the stage's: replicas.h.) */
#ifndef ANNOTATE_BREAKERS_H
#define ANNOTATE_BREAKERS_H

#include "endpoint/ticket.h"
#include "run.h"

#define OUTAGE_ATTEMPTS 3
#define OUTAGE_REQUESTS 2
#define SETUP_FAILS 3

/* Feeds the outage breaker with how an attempt of request id ended; alone: it was the stage's
 * only attempt on the wire. */
void outage_note(const struct run *run, int s, uint64_t id, const struct attempt_report *r, int alone, double now);

/* 1 while stage s is down and its --outage-timeout has not run out. */
int outage_waiting(const struct run *run, int s, double now);

/* Feeds the set-up breaker with how an attempt of t ended; alone: it was the stage's only
 * attempt on the wire. Returns 1 when the image is not at fault (a set-up error before the
 * stage ever answered otherwise: retried while the breaker judges). May stop the run. */
int setup_note(const struct run *run, struct ticket *t, const struct attempt_report *r, int alone);

#endif
