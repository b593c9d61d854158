/* endpoint: what a model server can take, behind one pair of calls.
 *
 * Every stage's requests go to one endpoint (a URL, or a list of replicas of one model). What
 * the endpoint can take is decided here and nowhere else, for every driver and every process:
 *
 *   - its rate: the run's --max-rps and the stage's "max_rps" (ratelimit.h), a token of each per
 *     attempt, the stage's first;
 *   - its concurrency: the stage's "concurrency", fixed or "auto" (limit.h), a slot per attempt,
 *     held only while the attempt is on the wire;
 *   - its replicas (replicas.c): each attempt goes to the replica with the fewest attempts
 *     outstanding, a retry elsewhere; one that fails the way a down server does, or answers as
 *     no replica of the model should (a garbled 200, a 404), is ejected for a while, as Envoy's
 *     outlier detection does;
 *   - its breakers (breakers.h): a stage whose server is down (failures that say no server is
 *     there, in a row, from several requests or from its only request in flight) is waited for
 *     rather than charged to the images' retries; a stage that answers "not set up for you"
 *     (401, 403, 404, 405, a certificate that does not verify) before it ever answered
 *     otherwise stops the run (exit 2);
 *   - its credentials: a 401 re-reads the stage's ${file:...} headers. When they changed, the
 *     request is retried at once. When they did not, and the stage was answering (the file
 *     lags the server's rotation: a secrets agent writing a moment late), the request waits,
 *     re-reading them every ENDPOINT_CRED_POLL_MS, until they change or ENDPOINT_CRED_WAIT_MS
 *     have passed since the stage's first 401 (after which its 401s fail as they come). A stage
 *     that never answered re-reads them once per request: its 401 is a set-up error.
 *
 * A request's standing with its endpoint is its ticket. A driver asks before each attempt:
 *
 *   endpoint_admit(run, ticket, now)  GO: send now, to ticket->replica (it holds its tokens and
 *                                         its slot); WAIT: call again at *until (a rate token is
 *                                         not valid yet, or the stage's credentials are
 *                                         awaited); PARK: no slot is free (the curl-multi
 *                                         driver keeps it on its stage's list, the blocking
 *                                         driver waits in endpoint_park), call again later;
 *
 * and the chain, which reads each answer once (chain.h: one answer kind), tells the endpoint how
 * the attempt ended:
 *
 *   endpoint_done(run, ticket, report, now)  gives the slot back with what the answer says of the
 *                                         server's capacity, and feeds replicas and breakers;
 *                                         returns what the chain must know to decide (the
 *                                         stage is down: wait beyond the retry budget; a set-up
 *                                         error, or a replica's: the image is not at fault;
 *                                         credentials renewed or awaited: retry at once).
 *
 * endpoint_cancel gives back what a ticket holds when its attempt never went (the chain settled
 * the request, a handle could not be had). Whatever the driver, these are the only calls that
 * take or give back anything of an endpoint, so that no two of them can disagree about an
 * answer. The endpoint reads no clock: callers pass the time in. */
#ifndef ANNOTATE_ENDPOINT_H
#define ANNOTATE_ENDPOINT_H

#include "endpoint/ticket.h"
#include "run.h"

#define ENDPOINT_CRED_WAIT_MS 10000
#define ENDPOINT_CRED_POLL_MS 100

enum admit {
    ADMIT_GO = 0,   /* send now, to t->replica */
    ADMIT_WAIT = 1, /* a rate token is ours but not valid before *until, or the stage's
                     * credentials are awaited (a 401 with its files unchanged): call again then */
    ADMIT_PARK = 2  /* the stage has no free slot: call again once one may be (endpoint_park) */
};

/* Before each attempt (the first and every retry). behind: the driver already has requests of
 * this stage parked ahead of this one, so it must not take a slot before them (it takes its
 * tokens, then parks). Tokens are taken once per attempt, the stage's before the run's, so that
 * a request held back by its stage does not spend the run's rate before it can go. */
enum admit endpoint_admit(const struct run *run, struct ticket *t, double now, double *until, int behind);

/* The blocking driver's wait for a slot: waits (on a futex in the shared page, across
 * processes) until a slot of t's stage may be free, at most about a second. Returns 1 when t
 * now holds one. The caller calls run->alive and checks whether the request still matters
 * between waits. */
int endpoint_park(const struct run *run, struct ticket *t);

/* What endpoint_done tells the chain. */
struct endpoint_news {
    int down;    /* the stage's server is down, within --outage-timeout: a retryable failure of
                  * the busy or down kind is retried whatever its budget */
    int no_row;  /* a set-up error before the stage ever answered otherwise: not the image's
                  * fault. Worth another attempt, beyond its retries, while the set-up breaker
                  * judges; when it stops the run, the image gets no row and --resume runs it
                  * (breakers.h) */
    int reauth;  /* a 401 and the stage's header files re-read: retry at once (an attempt that
                  * waits for them to change waits in endpoint_admit) */
    int elsewhere; /* a replica answered as a server not set up for the stage while another may
                  * answer: the request is worth another attempt, on another replica, within its
                  * retries (replicas.h) */
};

/* The attempt admitted last on t has ended. */
struct endpoint_news endpoint_done(const struct run *run, struct ticket *t, const struct attempt_report *r,
                                   double now);

/* Gives back what t holds for an attempt that never went. */
void endpoint_cancel(const struct run *run, struct ticket *t);

/* 1 when stage s's concurrency is "auto" (its 429s and 503s are flow control, chain.h). */
int endpoint_adaptive(const struct run *run, int s);

/* Stage s's concurrency limit in force, or -1 when it has none. */
int endpoint_limit(const struct run *run, int s);

/* How long stage s's server has been down (seconds; 0 when it is up). */
double endpoint_down_for(const struct run *run, int s, double now);

#endif
