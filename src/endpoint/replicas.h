/* replicas: a stage whose "url" is a list of replicas of one model (up to 8). Part of the
 * endpoint (endpoint.h); its state is in the shared page (shared.h), so threads, event loops and
 * worker processes choose and eject by the same figures.
 *
 * Each attempt goes to the replica with the fewest attempts outstanding (ties broken at random),
 * not to the one the last attempt failed on when there is another. A replica whose attempts fail
 * the way a down server does (ANSWER_BUSY, ANSWER_DOWN) REPLICA_EJECT_AFTER times in a row is
 * ejected for REPLICA_EJECT_BASE_S seconds times the number of its ejections (at most
 * REPLICA_EJECT_MAX_S), as Envoy's outlier detection does (consecutive_5xx 5, base_ejection_time
 * 30 s); once back, one more such failure ejects it again, an answer puts it back for good. The
 * last replica in rotation is never ejected. */
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

/* Takes t's attempt off its replica's outstanding count, for an attempt that never went. */
void replica_forget(const struct run *run, struct ticket *t);

#endif
