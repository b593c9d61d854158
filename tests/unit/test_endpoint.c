/* Suite "endpoint": what a server can take, behind endpoint_admit / endpoint_done (src/endpoint):
 * the order of an admission (tokens, slot, replica), what each answer kind does to the limit,
 * the replicas and the breakers, and endpoint_cancel giving back what a ticket holds. Driven by
 * hand with the time passed in: no network, no clock. */
#include "endpoint/endpoint.h"

#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "endpoint/breakers.h"
#include "endpoint/limit.h"
#include "endpoint/ratelimit.h"
#include "endpoint/replicas.h"
#include "endpoint/shared.h"
#include "pipeline/pipeline.h"
#include "check.h"
#include "util.h"

struct fixture {
    struct shared sh;
    struct config cfg;
    struct pipeline *p;
    atomic_int stop;
    struct run run;
};

static int fixture_open(struct fixture *f, const char *pipeline_text, int outage_s)
{
    memset(f, 0, sizeof *f);
    char err[512];
    if (pipeline_parse(pipeline_text, strlen(pipeline_text), "inline", &f->p, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return -1;
    }
    CU_ASSERT_EQUAL_FATAL(shared_create(&f->sh), 0);
    f->cfg = (struct config){.pipeline = f->p, .query = STRAT_CURL_MULTI, .concurrency = 64, .retries = 3,
                             .outage_timeout_s = outage_s};
    if (limit_setup(f->sh.page, &f->cfg, 0, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return -1;
    }
    f->run = (struct run){.cfg = &f->cfg, .p = f->p, .shared = f->sh.page, .stop = &f->stop};
    return 0;
}

static void fixture_close(struct fixture *f)
{
    limit_teardown(f->sh.page, f->p->n);
    shared_close(&f->sh);
    pipeline_free(f->p);
}

static const struct attempt_report OK = {ANSWER_OK, 0, 200, ""};
static const struct attempt_report REFUSED = {ANSWER_DOWN, 7, 0, "refused"};
static const struct attempt_report TIMEOUT = {ANSWER_BUSY, 28, 0, "timed out"};
static const struct attempt_report TOO_MANY = {ANSWER_BUSY, 0, 429, "HTTP 429"};
static const struct attempt_report BAD_GATEWAY = {ANSWER_DOWN, 0, 502, "HTTP 502"};
static const struct attempt_report NOT_FOUND = {ANSWER_SETUP, 0, 404, "HTTP 404: no such model"};
static const struct attempt_report BAD_IMAGE = {ANSWER_FINAL, 0, 400, "HTTP 400: bad image"};
static const struct attempt_report SERVER_ERROR = {ANSWER_DOWN, 0, 500, "HTTP 500"};
static const struct attempt_report GARBLED = {ANSWER_RETRY, 0, 200, "the answer is not JSON"};
static const struct attempt_report UNAUTHORIZED = {ANSWER_SETUP, 0, 401, "HTTP 401"};

/* One attempt of t, admitted at now and ended with r at now: what the endpoint says. */
static struct endpoint_news attempt(struct fixture *f, struct ticket *t, const struct attempt_report *r, double now)
{
    double until;
    CU_ASSERT_EQUAL(endpoint_admit(&f->run, t, now, &until, 0), ADMIT_GO);
    return endpoint_done(&f->run, t, r, now);
}

/* A stage with one slot: the second request parks until the first is done; a request behind
 * others parks even when a slot is free; cancel gives a slot back. */
static void test_admit_slots(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"concurrency\": 1}]}", 0))
        return;
    struct ticket t1, t2;
    ticket_init(&t1, 0, 1, 1);
    ticket_init(&t2, 0, 2, 2);
    double until;
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t1, 1.0, &until, 0), ADMIT_GO);
    CU_ASSERT(t1.slot);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t2, 1.0, &until, 0), ADMIT_PARK);
    CU_ASSERT(!t2.slot);
    struct endpoint_news n = endpoint_done(&f.run, &t1, &OK, 1.1);
    CU_ASSERT(!n.down && !n.no_row && !n.reauth);
    CU_ASSERT(!t1.slot);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t2, 1.1, &until, 1), ADMIT_PARK); /* behind others */
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t2, 1.1, &until, 0), ADMIT_GO);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t1, 1.1, &until, 0), ADMIT_PARK);
    CU_ASSERT_EQUAL(endpoint_park(&f.run, &t1), 0); /* waited (at most a second), no slot came */
    endpoint_cancel(&f.run, &t2);
    CU_ASSERT_EQUAL(atomic_load(&f.sh.page->lim[0].in_flight), 0);
    CU_ASSERT_EQUAL(endpoint_park(&f.run, &t1), 1);
    CU_ASSERT(t1.slot);
    endpoint_cancel(&f.run, &t1);
    CU_ASSERT_EQUAL(endpoint_limit(&f.run, 0), 1);
    fixture_close(&f);
}

/* What each kind says to an "auto" limit: BUSY (429, 503, a timeout) is a drop, DOWN and
 * answers without a status say nothing, the rest are latency samples. */
static void test_capacity_signal(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"concurrency\": \"auto\"}]}", 0))
        return;
    CU_ASSERT(endpoint_adaptive(&f.run, 0));
    struct limit_view v;
    const struct attempt_report *quiet[] = {&REFUSED, &BAD_GATEWAY};
    double t = 10;
    for (size_t i = 0; i < sizeof quiet / sizeof *quiet; i++) {
        struct ticket tk;
        ticket_init(&tk, 0, 100 + i, i);
        double until;
        CU_ASSERT_EQUAL_FATAL(endpoint_admit(&f.run, &tk, t, &until, 0), ADMIT_GO);
        endpoint_done(&f.run, &tk, quiet[i], t += 0.01);
    }
    limit_read(f.sh.page, 0, &v);
    CU_ASSERT_EQUAL(v.drops, 0);
    const struct attempt_report *busy[] = {&TOO_MANY, &TIMEOUT};
    for (size_t i = 0; i < sizeof busy / sizeof *busy; i++) {
        struct ticket tk;
        ticket_init(&tk, 0, 200 + i, i);
        double until;
        t += 5; /* a decrease at most once per round trip: far apart */
        CU_ASSERT_EQUAL_FATAL(endpoint_admit(&f.run, &tk, t, &until, 0), ADMIT_GO);
        endpoint_done(&f.run, &tk, busy[i], t + 0.01);
        limit_read(f.sh.page, 0, &v);
        CHECKF(v.drops == i + 1, "busy answer %zu: %llu drops", i, (unsigned long long)v.drops);
    }
    fixture_close(&f);
}

/* The outage breaker: failures that say no server is there (refused, a timeout, 502) from two
 * requests, three in a row, and the stage is down (its requests wait beyond their budget); one
 * answer puts it back up. */
static void test_outage_breaker(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", 300))
        return;
    struct ticket a, b, c;
    ticket_init(&a, 0, 1, 1);
    ticket_init(&b, 0, 2, 2);
    ticket_init(&c, 0, 3, 3);
    double until;
    struct endpoint_news n;
    /* a and b on the wire together: neither is alone */
    endpoint_admit(&f.run, &a, 1.0, &until, 0);
    endpoint_admit(&f.run, &b, 1.0, &until, 0);
    n = endpoint_done(&f.run, &a, &REFUSED, 1.0);
    CU_ASSERT(!n.down);
    endpoint_admit(&f.run, &a, 2.0, &until, 0);
    n = endpoint_done(&f.run, &a, &BAD_GATEWAY, 2.0);
    CU_ASSERT(!n.down); /* two failures, from one request that was not alone */
    CU_ASSERT_EQUAL(endpoint_down_for(&f.run, 0, 3.0), 0);
    n = endpoint_done(&f.run, &b, &TIMEOUT, 3.0);
    CU_ASSERT(n.down);
    CU_ASSERT(endpoint_down_for(&f.run, 0, 5.0) > 1.9);
    n = attempt(&f, &c, &BAD_IMAGE, 8.0); /* an answer: the server is up */
    CU_ASSERT(!n.down);
    CU_ASSERT_EQUAL(endpoint_down_for(&f.run, 0, 9.0), 0);
    fixture_close(&f);
}

/* A stage with one request in flight (serial, "concurrency": 1, a batching stage): that
 * request's own failures, each while it was alone on the wire, open the breaker. */
static void test_outage_lone_request(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", 300))
        return;
    struct ticket a;
    ticket_init(&a, 0, 1, 1);
    struct endpoint_news n = {0};
    for (int i = 0; i < OUTAGE_ATTEMPTS; i++) {
        CU_ASSERT(!n.down);
        n = attempt(&f, &a, &REFUSED, 1.0 + i);
    }
    CU_ASSERT(n.down);
    CU_ASSERT(endpoint_down_for(&f.run, 0, 10.0) > 0);
    CU_ASSERT_EQUAL(atomic_load(&f.sh.page->stage[0].on_wire), 0);
    fixture_close(&f);
}

/* A server that answers 500 is up: images it always fails on never make it read as down,
 * however many requests fail at once or in a row, alone or not; and a 500 ends a run of
 * refusals. */
static void test_outage_not_for_500(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", 300))
        return;
    struct ticket t[8];
    double until;
    for (int i = 0; i < 8; i++) {
        ticket_init(&t[i], 0, (uint64_t)i + 1, (uint64_t)i);
        endpoint_admit(&f.run, &t[i], 1.0, &until, 0);
    }
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < 8; i++) {
            struct endpoint_news n = endpoint_done(&f.run, &t[i], &SERVER_ERROR, 1.0 + round);
            CU_ASSERT(!n.down);
            endpoint_admit(&f.run, &t[i], 1.0 + round, &until, 0);
        }
    for (int i = 0; i < 8; i++)
        endpoint_cancel(&f.run, &t[i]);
    struct ticket a;
    ticket_init(&a, 0, 100, 1);
    for (int i = 0; i < 4 * OUTAGE_ATTEMPTS; i++) /* alone */
        CU_ASSERT(!attempt(&f, &a, &SERVER_ERROR, 10.0 + i).down);
    CU_ASSERT_EQUAL(endpoint_down_for(&f.run, 0, 30.0), 0);
    attempt(&f, &a, &REFUSED, 30.0);
    attempt(&f, &a, &REFUSED, 31.0);
    attempt(&f, &a, &SERVER_ERROR, 32.0); /* the server answered: the run of refusals is over */
    CU_ASSERT(!attempt(&f, &a, &REFUSED, 33.0).down);
    CU_ASSERT(!attempt(&f, &a, &REFUSED, 34.0).down);
    CU_ASSERT(attempt(&f, &a, &REFUSED, 35.0).down);
    fixture_close(&f);
}

/* The set-up breaker: "not set up" answers before the stage ever answered otherwise are not the
 * image's fault, and three stop the run with a message naming the stage; after a good answer, a
 * 404 is about the image. */
static void test_setup_breaker(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"det\", \"url\": \"http://127.0.0.1:9/det\"},"
                         "{\"name\": \"cls\", \"url\": \"http://127.0.0.1:9/cls\"}]}", 0))
        return;
    struct ticket t;
    double until;
    for (int i = 0; i < 3; i++) {
        ticket_init(&t, 0, (uint64_t)i + 1, 1);
        endpoint_admit(&f.run, &t, 1.0, &until, 0);
        struct endpoint_news n = endpoint_done(&f.run, &t, &NOT_FOUND, 1.0);
        CU_ASSERT(n.no_row);
        CU_ASSERT_EQUAL(run_stop_state(&f.run), i < 2 ? RUN_GOING : RUN_ABORT);
    }
    CU_ASSERT(atomic_load(&f.sh.page->fatal));
    CHECKF(strstr(f.sh.page->fatal_msg, "det: ") && strstr(f.sh.page->fatal_msg, "http://127.0.0.1:9/det") &&
               strstr(f.sh.page->fatal_msg, "check the stage's url"),
           "%s", f.sh.page->fatal_msg);
    atomic_store(&f.stop, RUN_GOING);
    ticket_init(&t, 1, 10, 1);
    endpoint_admit(&f.run, &t, 2.0, &until, 0);
    endpoint_done(&f.run, &t, &OK, 2.0);
    endpoint_admit(&f.run, &t, 2.0, &until, 0);
    CU_ASSERT(!endpoint_done(&f.run, &t, &NOT_FOUND, 2.0).no_row);
    CU_ASSERT_EQUAL(run_stop_state(&f.run), RUN_GOING);
    fixture_close(&f);
}

/* A set-up answer while other requests of the stage are on the wire is counted once per request
 * (the others will say whether the stage is wrong), and retried beyond its budget meanwhile;
 * once the stage has answered well, the next one is about the image. A request alone on the
 * wire (serial) counts each time: three stop the run. */
static void test_setup_breaker_waits(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", 0))
        return;
    struct ticket a, b;
    ticket_init(&a, 0, 1, 1);
    ticket_init(&b, 0, 2, 2);
    double until;
    endpoint_admit(&f.run, &b, 1.0, &until, 0); /* b is on the wire, slow */
    for (int i = 0; i < 2 * SETUP_FAILS; i++)
        CU_ASSERT(attempt(&f, &a, &NOT_FOUND, 1.0 + i).no_row);
    CU_ASSERT_EQUAL(atomic_load(&f.sh.page->stage[0].setup_fails), 1);
    CU_ASSERT_EQUAL(run_stop_state(&f.run), RUN_GOING);
    endpoint_done(&f.run, &b, &OK, 9.0);
    CU_ASSERT(!attempt(&f, &a, &NOT_FOUND, 10.0).no_row); /* about the image now */
    fixture_close(&f);
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", 0))
        return;
    ticket_init(&a, 0, 1, 1);
    for (int i = 0; i < SETUP_FAILS; i++) {
        CU_ASSERT_EQUAL(run_stop_state(&f.run), RUN_GOING);
        CU_ASSERT(attempt(&f, &a, &NOT_FOUND, 1.0 + i).no_row);
    }
    CU_ASSERT_EQUAL(run_stop_state(&f.run), RUN_ABORT);
    fixture_close(&f);
}

/* Replicas: the one with the fewest outstanding; a retry elsewhere; five down answers in a row
 * eject one; the last in rotation stays; cancel forgets the outstanding attempt. */
static void test_replicas(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": [\"http://h1/a\", \"http://h2/a\"]}]}", 0))
        return;
    struct shared_replica *r = &f.sh.page->replica[f.p->stages[0].replica_base];
    struct ticket a, b;
    ticket_init(&a, 0, 1, 1);
    ticket_init(&b, 0, 2, 2);
    double until;
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &a, 1.0, &until, 0), ADMIT_GO);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &b, 1.0, &until, 0), ADMIT_GO);
    CU_ASSERT_NOT_EQUAL(a.replica, b.replica); /* the one with fewer outstanding */
    endpoint_cancel(&f.run, &b);
    CU_ASSERT_EQUAL(atomic_load(&r[b.replica].outstanding), 0);
    int bad = a.replica;
    endpoint_done(&f.run, &a, &BAD_GATEWAY, 1.1);
    CU_ASSERT_EQUAL(a.failed_replica, bad);
    endpoint_admit(&f.run, &a, 1.2, &until, 0);
    CU_ASSERT_NOT_EQUAL(a.replica, bad); /* a retry goes elsewhere */
    endpoint_done(&f.run, &a, &OK, 1.3);
    for (int i = 0; i < REPLICA_EJECT_AFTER; i++) {
        struct ticket t;
        ticket_init(&t, 0, 10 + (uint64_t)i, (uint64_t)i);
        t.replica = bad;
        replica_pick(&f.run, &t, 2.0); /* (pick, then send it to the bad one by hand) */
        replica_forget(&f.run, &t);
        t.replica = bad;
        t.on_replica = 1;
        atomic_fetch_add(&r[bad].outstanding, 1);
        t.t_sent = 2.0;
        endpoint_done(&f.run, &t, &REFUSED, 2.0);
    }
    CU_ASSERT(atomic_load(&r[bad].ejected_until_ms) >= 2000 + 1000 * REPLICA_EJECT_BASE_S);
    CU_ASSERT_EQUAL(atomic_load(&r[bad].ejected_total), 1);
    for (int i = 0; i < 8; i++) { /* while it is out, everything goes to the other */
        struct ticket t;
        ticket_init(&t, 0, 100 + (uint64_t)i, (uint64_t)i);
        endpoint_admit(&f.run, &t, 3.0, &until, 0);
        CU_ASSERT_NOT_EQUAL(t.replica, bad);
        endpoint_done(&f.run, &t, &REFUSED, 3.0); /* the last one in rotation is never ejected */
    }
    CU_ASSERT_EQUAL(atomic_load(&r[1 - bad].ejected_until_ms), 0);
    CU_ASSERT_EQUAL(atomic_load(&r[0].outstanding) + atomic_load(&r[1].outstanding), 0);
    fixture_close(&f);
}

/* The replica of ticket t is forced to k for its next attempt (a pick, then moved by hand). */
static struct endpoint_news attempt_on(struct fixture *f, struct ticket *t, int k, const struct attempt_report *r,
                                       double now)
{
    struct shared_replica *rep = &f->sh.page->replica[f->p->stages[t->stage].replica_base];
    double until;
    CU_ASSERT_EQUAL(endpoint_admit(&f->run, t, now, &until, 0), ADMIT_GO);
    atomic_fetch_sub(&rep[t->replica].outstanding, 1);
    atomic_fetch_add(&rep[k].outstanding, 1);
    t->replica = k;
    return endpoint_done(&f->run, t, r, now);
}

/* A replica that answers wrongly (a garbled 200, a 404) while another answers well: the retry
 * goes elsewhere, it counts toward the replica's ejection, and a 404 from it is not a set-up
 * error of the stage; one from every replica is. */
static void test_replica_wrong_answers(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": [\"http://h1/a\", \"http://h2/a\"]},"
                         "{\"name\": \"b\", \"url\": [\"http://h1/b\", \"http://h2/b\"]}]}", 0))
        return;
    struct shared_replica *r = &f.sh.page->replica[f.p->stages[0].replica_base];
    struct ticket t;
    ticket_init(&t, 0, 1, 1);
    struct endpoint_news n = attempt_on(&f, &t, 1, &GARBLED, 1.0);
    CU_ASSERT_EQUAL(t.failed_replica, 1);
    double until;
    endpoint_admit(&f.run, &t, 1.1, &until, 0);
    CU_ASSERT_EQUAL(t.replica, 0); /* elsewhere */
    endpoint_done(&f.run, &t, &OK, 1.1);
    for (int i = 1; i < REPLICA_EJECT_AFTER; i++)
        attempt_on(&f, &t, 1, &GARBLED, 2.0);
    CU_ASSERT_EQUAL(atomic_load(&r[1].ejected_total), 1);
    /* Stage b, before it answered: a 404 from replica 0 while replica 1 has not said so goes
     * elsewhere, and is no set-up error. */
    ticket_init(&t, 1, 2, 2);
    n = attempt_on(&f, &t, 0, &NOT_FOUND, 3.0);
    CU_ASSERT(n.elsewhere && !n.no_row);
    CU_ASSERT_EQUAL(t.failed_replica, 0);
    CU_ASSERT_EQUAL(atomic_load(&f.sh.page->stage[1].setup_fails), 0);
    /* Replica 1 says it too: now the stage is not set up. */
    n = attempt_on(&f, &t, 1, &NOT_FOUND, 3.1);
    CU_ASSERT(!n.elsewhere && n.no_row);
    /* A good answer from replica 0 clears it: its next 404 is about the image, since replica 1
     * said 404 too and has not answered well since. */
    attempt_on(&f, &t, 0, &OK, 4.0);
    n = attempt_on(&f, &t, 1, &NOT_FOUND, 4.1);
    CU_ASSERT(n.elsewhere && !n.no_row); /* replica 0 answers well now */
    attempt_on(&f, &t, 0, &NOT_FOUND, 4.2);
    n = attempt_on(&f, &t, 1, &NOT_FOUND, 4.3);
    CU_ASSERT(!n.elsewhere && !n.no_row);
    /* Credentials are the stage's: a 401 from one replica is never that replica's fault. */
    ticket_init(&t, 0, 3, 3);
    attempt_on(&f, &t, 1, &OK, 5.0);
    n = attempt_on(&f, &t, 0, &UNAUTHORIZED, 5.1);
    CU_ASSERT(!n.elsewhere);
    CU_ASSERT_EQUAL(t.failed_replica, -1);
    fixture_close(&f);
}

/* A 401 from a stage that was answering, with its ${file:} header unchanged (the file lags the
 * server's rotation): retried, the attempt waiting in endpoint_admit, re-reading the file, until
 * it changes; after ENDPOINT_CRED_WAIT_MS without a good answer, a 401 stands. */
static void test_credentials_wait(void)
{
    char dir[] = "/tmp/annotate-cred-XXXXXX", path[300], text[600], err[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/token", dir);
    CU_ASSERT_FATAL(write_file(path, "old-t0ken\n", 10) == 0);
    snprintf(text, sizeof text,
             "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"headers\": {\"Authorization\": \"Bearer ${file:%s}\"}}]}",
             path);
    struct fixture f;
    if (fixture_open(&f, text, 0))
        return;
    CU_ASSERT_EQUAL_FATAL(pipeline_resolve(f.p, "http://h", err, sizeof err), 0);
    struct ticket t;
    ticket_init(&t, 0, 1, 1);
    pipeline_headers(&f.p->stages[0], &t.header_gen);
    attempt(&f, &t, &OK, 1.0); /* the stage answers */
    struct endpoint_news n = attempt(&f, &t, &UNAUTHORIZED, 2.0);
    CU_ASSERT(n.reauth);
    CU_ASSERT(t.cred_wait);
    double until = 0;
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t, 2.05, &until, 0), ADMIT_WAIT);
    CU_ASSERT(until > 2.05 && until <= 2.05 + ENDPOINT_CRED_POLL_MS / 1e3 + 1e-9);
    CU_ASSERT_FATAL(write_file(path, "new-t0ken\n", 10) == 0); /* the file catches up */
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t, 2.2, &until, 0), ADMIT_GO);
    CU_ASSERT(!t.cred_wait);
    unsigned gen;
    const struct curl_slist *h = pipeline_headers(&f.p->stages[0], &gen);
    CU_ASSERT(h && strstr(h->data, "new-t0ken"));
    t.header_gen = gen;
    endpoint_done(&f.run, &t, &OK, 2.3);
    /* A token revoked for good: the requests wait, then their 401s fail. */
    n = attempt(&f, &t, &UNAUTHORIZED, 3.0);
    CU_ASSERT(n.reauth && t.cred_wait);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t, 3.0 + ENDPOINT_CRED_WAIT_MS / 2e3, &until, 0), ADMIT_WAIT);
    CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t, 3.01 + ENDPOINT_CRED_WAIT_MS / 1e3, &until, 0), ADMIT_GO);
    n = endpoint_done(&f.run, &t, &UNAUTHORIZED, 3.01 + ENDPOINT_CRED_WAIT_MS / 1e3 + 0.1);
    CU_ASSERT(!n.reauth && !n.no_row); /* it answered before: a failure of the image's row */
    fixture_close(&f);
    unlink(path);
    rmdir(dir);
}

/* --max-rps: a token not yet valid makes the admission WAIT until when it is, holding it. */
static void test_rate_wait(void)
{
    struct fixture f;
    if (fixture_open(&f, "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"max_rps\": 1}]}", 0))
        return;
    f.run.rl = ratelimit_new_stages(0, f.p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.run.rl);
    double until = -1;
    int waited = 0;
    for (int i = 0; i < 4; i++) {
        struct ticket t;
        ticket_init(&t, 0, (uint64_t)i, (uint64_t)i);
        enum admit a = endpoint_admit(&f.run, &t, 0, &until, 0);
        if (a == ADMIT_WAIT) {
            waited++;
            CU_ASSERT(until > 0);
            CU_ASSERT_EQUAL(t.tokens, 1); /* the stage's, held while waiting: the next call goes */
            CU_ASSERT_EQUAL(endpoint_admit(&f.run, &t, until, &until, 0), ADMIT_GO);
        }
        endpoint_cancel(&f.run, &t);
    }
    CU_ASSERT(waited >= 2); /* a burst of 1 + rps/100 passes at once, the rest wait */
    ratelimit_free(f.run.rl);
    fixture_close(&f);
}

int register_endpoint(void)
{
    CU_pSuite s = CU_add_suite("endpoint", NULL, NULL);
    if (!s || !CU_add_test(s, "admission: a slot per attempt, behind those waiting, given back", test_admit_slots) ||
        !CU_add_test(s, "what each answer kind says to an auto limit", test_capacity_signal) ||
        !CU_add_test(s, "the outage breaker: down from two requests, up on an answer", test_outage_breaker) ||
        !CU_add_test(s, "the outage breaker: a lone request's failures open it", test_outage_lone_request) ||
        !CU_add_test(s, "the outage breaker: a 500 says the server is up", test_outage_not_for_500) ||
        !CU_add_test(s, "a replica answering wrongly: retried elsewhere, ejected, not a set-up error",
                     test_replica_wrong_answers) ||
        !CU_add_test(s, "a 401 with the token file unchanged waits for it, for a bounded time",
                     test_credentials_wait) ||
        !CU_add_test(s, "the set-up breaker: no row, then the run stops naming the stage", test_setup_breaker) ||
        !CU_add_test(s, "the set-up breaker: one request with others on the wire counts once", test_setup_breaker_waits) ||
        !CU_add_test(s, "replicas: fewest outstanding, retry elsewhere, ejection, the last stays", test_replicas) ||
        !CU_add_test(s, "a rate token not yet valid: wait, holding it", test_rate_wait))
        return -1;
    return 0;
}
