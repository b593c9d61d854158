/* replicas: a stage whose "url" is a list of replicas of one model (up to 8). Part of the
 * endpoint (endpoint.h); its state is in the shared page (shared.h), so threads, event loops and
 * worker processes choose and eject by the same figures.
 *
 * Each attempt goes to the replica with the fewest attempts outstanding (ties broken at random),
 * not to the one the last attempt failed on when there is another. What a replica fails:
 *   - the way a down server does (ANSWER_BUSY, ANSWER_DOWN: refused, reset, a timeout, 5xx);
 *   - an answer no replica of a model that is set up would give: a 2xx that does not read as
 *     the stage's answer (not JSON, no result, a wrong count of a batch's results), a 404 or
 *     405 (the model is not at that path there), a certificate that does not verify. Not a
 *     401 or 403: credentials are the stage's, the same for every replica.
 * A replica that answered 404, 405 or with a bad certificate while another in rotation has not
 * (setup_bad, until it answers well again) has the request retried there, within its retries
 * (endpoint_news.elsewhere), and it is not a set-up error of the stage: the stage is wrong only
 * when every replica says so. A replica failing REPLICA_EJECT_AFTER times in a row is ejected
 * for REPLICA_EJECT_BASE_S seconds times the number of its ejections (at most
 * REPLICA_EJECT_MAX_S), as Envoy's outlier detection does (consecutive_5xx 5,
 * base_ejection_time 30 s); once back, one more failure ejects it again, an answer puts it back
 * for good. The last replica in rotation is never ejected. */
#ifndef ANNOTATE_REPLICAS_H
#define ANNOTATE_REPLICAS_H

#include "endpoint/ticket.h"
#include "run.h"

#define REPLICA_EJECT_AFTER 5
#define REPLICA_EJECT_BASE_S 30
#define REPLICA_EJECT_MAX_S 300

/* Chooses t's replica for an attempt going now and counts it outstanding there. */
void replica_pick(const struct run *run, struct ticket *t, double now);

/* How the attempt on t's replica ended: latency, errors, ejection. */
void replica_note(const struct run *run, struct ticket *t, const struct attempt_report *r, double now);

/* 1 when the attempt's answer r (ANSWER_SETUP) is its replica's fault while another replica of
 * the stage, in rotation, has not answered so: worth another attempt there. */
int replica_elsewhere(const struct run *run, const struct ticket *t, const struct attempt_report *r, double now);

/* Takes t's attempt off its replica's outstanding count, for an attempt that never went. */
void replica_forget(const struct run *run, struct ticket *t);

#endif
