/* limit: how many requests each stage may have in flight, in one place.
 *
 * A stage's "concurrency" in the pipeline file is a fixed limit (N), or "auto": a limit this
 * module adapts, per endpoint, from what its answers say (--concurrency auto: every stage that
 * does not say otherwise). The table of limits lives in the run's shared page (shared.h), so
 * threads, curl-multi loops and worker processes all count against the same numbers.
 *
 * The endpoint (endpoint.h) takes a slot of a request's stage before an attempt goes on the wire
 * (limit_try_acquire; the blocking driver's wait for one is limit_wait, on a futex in the shared
 * page) and gives it back when the attempt has ended, with what the answer said of the server's
 * capacity (limit_release). A request holds its stage's slot only while it is on the wire: never
 * while it waits for a retry, a rate-limit token or another slot, so no request waits while
 * holding one and nothing can deadlock.
 *
 * The adaptive limit (limit_algo) is fed one sample per attempt: its round-trip time and how it
 * ended. It is, in that order of precedence:
 *   - AIMD on congestion: a 429, a 503 or a timeout (while the times show a queue: see
 *     LIMIT_TIMEOUT) of a request sent since the last decrease multiplies the limit by
 *     LIMIT_BACKOFF (at most once per round trip);
 *   - latency-following, as TCP Vegas and Netflix's Gradient2 do: per window of about one round
 *     trip (at least LIMIT_MIN_SAMPLES answers, more when the server's times vary, so that the
 *     window's mean is within LIMIT_MEAN_ERROR of the true one) it compares the window's mean RTT with the
 *     no-load RTT (the lowest window mean since the last probe, plus its drift, see below) and
 *     estimates the requests
 *     queued at the server, queue = limit x (1 - rtt_noload / rtt). It aims at a small queue
 *     (alpha = 1 + limit/20), and, as Gradient2's tolerance does, counts none while the RTT is
 *     under LIMIT_TOLERANCE times the no-load one: a busy client's own delays lengthen every
 *     RTT a little without the server having fewer requests to give (at 20 ms against nginx on
 *     the same two cores, without it the stages held at 50-100 each, 1,000 requests waited for
 *     their slots, and auto made 86 % of a fixed 256's requests/s; see docs/BENCHMARKS.md). No
 *     tolerance once a check has found the RTT rising by itself (below). With more queue than
 *     that, the limit moves towards limit x rtt_noload / rtt + alpha (Gradient2's update with
 *     a minimum as baseline, gradient kept within [0.5, 1], half smoothed: a decrease goes
 *     below the tolerance, so that a queue built within it drains); with less, it grows
 *     (doubling at first, "slow start"; then by a step that
 *     doubles while the server keeps having room) — unless the stage did not use its whole limit
 *     in the window (then the samples say nothing about a higher one);
 *   - checking that a queue is one: RTTs that rise are not always requests queued. A server
 *     that slows with time, not with load, reads the same to the rule above (the limit fell to
 *     1-4 against one while a fixed 64 went eight times faster). The first decrease of a run of
 *     them remembers its window; once they bring the limit to LIMIT_CHECK_SHARE of what was in
 *     flight then, the first window sent after in flight has come down to the limit checks
 *     them by Little's law (in flight = answers per second x RTT): a queue's answers per second
 *     stay when fewer are in flight, a server with room answers fewer. When they fell by more
 *     than half as much as in flight did, the decreases are undone, that window's mean is the
 *     no-load RTT, and the no-load RTT drifts up at the rate the check measured (set to 0 by a
 *     probe or by a check that found a queue);
 *   - probing: every LIMIT_PROBE_S (2 s after the start, then every 10 s, or less often when a
 *     probe takes long) the limit is halved for one window, sent once in flight has come down to
 *     it, to measure the no-load RTT afresh (as BBR's ProbeRTT does), so that a baseline taken
 *     when the server was queuing does not stay.
 * The algorithm reads no clock: callers pass the time, and the unit tests feed it a simulated
 * server. */
#ifndef ANNOTATE_LIMIT_H
#define ANNOTATE_LIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define LIMIT_MIN_SAMPLES 8     /* answers per window, at least */
#define LIMIT_MAX_SAMPLES 400   /* answers per window, at most (a server whose times vary a lot) */
#define LIMIT_MEAN_ERROR 0.05   /* a window is long enough when its mean is about this close */
#define LIMIT_BACKOFF 0.7       /* multiplicative decrease on a 429, 503 or timeout */
#define LIMIT_AUTO_INITIAL 4    /* where an adaptive limit starts */
#define LIMIT_AUTO_TOTAL 1024   /* --concurrency auto: the total in flight (curl-multi) */
#define LIMIT_PROBE_FIRST_S 2.0 /* the first probe of the no-load RTT */
#define LIMIT_PROBE_S 10.0      /* and then every */
#define LIMIT_QUEUE_MIN_S 0.002 /* a window less than this above the no-load RTT has no queue */
#define LIMIT_TOLERANCE 1.5     /* an RTT up to this times the no-load one counts no queue */
#define LIMIT_CHECK_SHARE 0.9   /* a decrease to at most this share of what was in flight is checked */

enum limit_mode { LIMIT_NONE = 0, LIMIT_FIXED = 1, LIMIT_AUTO = 2 };

/* What an attempt's end says about the endpoint's capacity. */
enum limit_signal {
    LIMIT_OK = 0,     /* an answer came: its time is a latency sample */
    LIMIT_DROP = 1,   /* 429, 503 or a timeout (ANSWER_BUSY): the endpoint is over its capacity */
    LIMIT_IGNORE = 2, /* no answer for other reasons (refused, reset): says nothing */
    LIMIT_TIMEOUT = 3 /* no answer within the timeout: a drop when the stage's times show a queue
                       * (its last window, as the latency rule reads it, or none measured yet),
                       * else nothing: a request that hangs while the others
                       * answer at their no-load speed is a server's fault, not its load (with
                       * 2 % of requests hanging at random, reading each as a drop made a run
                       * 7.5 times slower than a fixed 64) */
};

/* The adaptive limit's state: plain data, so that it can live in shared memory. */
struct limit_algo {
    double limit;          /* the estimate; the limit in force is its integer part */
    double lo, hi;         /* bounds */
    double rtt_noload;     /* lowest window mean since the last probe (s), at t_noload; 0: none */
    double t_noload;
    double drift;          /* how fast the no-load RTT rises by itself (s per s): measured by a
                            * check that undid decreases; 0 after a probe or a queue */
    double rtt_last;       /* the last window's mean (s) */
    int slow_start;        /* doubling until the first sign of a queue or a drop */
    double step;           /* additive increase, doubled while there is room */
    double last_decrease;  /* when the last multiplicative decrease was made */
    double w_start;        /* the window: start, answers measured, sum of RTTs, most in flight
                            * seen; answers (those not measured too) */
    int w_n, w_answers;
    double w_sum, w_sq;
    int w_max_inflight;
    uint64_t drops;        /* drops seen (all of them) */
    int probing;           /* the limit is halved to measure the no-load RTT: 1 while in flight
                            * comes down to it, 2 while the probe's window is measured */
    double probe_start, next_probe, saved_limit;
    double check_t;        /* when the window that began the decreases ended */
    int checking;          /* decreases for a queue are checked: did the RTT come down? 1: they
                            * have begun; 2: they bind, in flight comes down to the limit; 3:
                            * the window sent since then is measured */
    double check_start;    /* when in flight came down: answers sent since then are measured */
    double check_mean, check_rate; /* the mean RTT and answers per second of the window that
                            * began them */
    double check_used;     /* in flight then (at most the limit) */
    double check_limit, check_step; /* the limit and step before them */
    uint64_t undone;       /* decreases undone: the RTT rose with time, not with load */
};

/* A limit starting at initial, kept within [lo, hi]. */
void limit_algo_init(struct limit_algo *a, int initial, int lo, int hi, double now);

/* One attempt's end: sent at t_sent, ended at now; inflight is the stage's requests in flight
 * when it ended (itself included). Returns the limit in force after it. */
int limit_algo_sample(struct limit_algo *a, double now, double t_sent, int inflight, enum limit_signal sig);

/* The limit in force. */
int limit_algo_get(const struct limit_algo *a);

/* The limit the algorithm holds: the one in force, but during a probe the one the probe will
 * give back (a probe measures for one window, it is not where the limit is). */
int limit_algo_held(const struct limit_algo *a);

/* ---- the total of --concurrency auto in one event loop ----
 *
 * The stages' limits follow each server's latency. What they add up to is bounded by a total
 * (curl-multi: the requests one event loop keeps in libcurl), and with --concurrency auto that
 * total follows the loop's throughput, since latency cannot tell it: when the client's own CPU
 * (or one server that every stage shares) is what is saturated, each request in flight waits a
 * little longer and more of them only cost more CPU per request (against nginx without latency,
 * a fixed 160 in flight made 84 % of a fixed 64's requests/s), while against a server far away
 * the throughput rises with the total until the client saturates (at 20 ms, 384 in flight made
 * 131 % of 256's). So the total is tried, a window at a time (at least LIMIT_TOTAL_WINDOW_S and
 * LIMIT_TOTAL_MIN_ANSWERS answers, counting only requests sent since the window began, the
 * rate taken between its first and last answer):
 *   - up (x LIMIT_TOTAL_RAMP until a try first fails, then x LIMIT_TOTAL_UP): kept when the
 *     answers per second rose by at least LIMIT_TOTAL_GAIN of the total's rise, and tried again
 *     at once. A try that did not have its total in flight yet (the stages' limits grow into it
 *     only as they fill theirs) gets up to LIMIT_TOTAL_TRY_WINDOWS windows. Not kept, the total
 *     goes back and the next try up waits (LIMIT_TOTAL_HOLD_S, doubling while tries fail, up to
 *     LIMIT_TOTAL_HOLD_MAX_S);
 *   - down (x LIMIT_TOTAL_DOWN), after a try up that gained less than LIMIT_TOTAL_FLAT (the
 *     loop is saturated): kept when the answers per second stayed within LIMIT_TOTAL_KEEP of
 *     what they were (fewer in flight did as well), then tried again; not kept, the total goes
 *     back and the next try down waits as tries up do.
 * A measuring window in which the loop did not have its total in flight (the stages' limits or
 * the images coming in bound it) says nothing of the total. It starts at 64 in flight, what a
 * fixed --concurrency defaulted to before auto did (LIMIT_TOTAL_INITIAL, the loop's share of
 * it), and stays within [LIMIT_TOTAL_LO, the loop's
 * share of LIMIT_AUTO_TOTAL]. Like limit_algo it reads no clock. */
#define LIMIT_TOTAL_INITIAL 64
#define LIMIT_TOTAL_LO 16
#define LIMIT_TOTAL_WINDOW_S 0.2
#define LIMIT_TOTAL_MIN_ANSWERS 64
#define LIMIT_TOTAL_RAMP 2.0
#define LIMIT_TOTAL_UP 1.5
#define LIMIT_TOTAL_DOWN 0.75
#define LIMIT_TOTAL_GAIN 0.3
#define LIMIT_TOTAL_FLAT 0.05
#define LIMIT_TOTAL_KEEP 0.95
#define LIMIT_TOTAL_TRY_WINDOWS 3
#define LIMIT_TOTAL_HOLD_S 0.5
#define LIMIT_TOTAL_HOLD_MAX_S 8.0

enum limit_total_phase { TOTAL_MEASURE = 0, TOTAL_TRY_UP = 1, TOTAL_TRY_DOWN = 2 };

struct limit_total {
    int total;             /* in force */
    int lo, hi;
    enum limit_total_phase phase;
    int from;              /* the total a try started from */
    int extended;          /* windows a try up has had beyond its first */
    int ramp;              /* no try up has failed yet */
    double rate;           /* answers per second at `total`, from its last window; 0: not known */
    double hold_up, next_up;     /* the next try up waits until next_up */
    double hold_down, next_down; /* and the next try down until next_down */
    int down_due;          /* a try up gained nothing: a try down is next */
    double w_start;        /* the window: requests sent before it are not counted */
    double w_first, w_last;/* its first and last counted answer */
    long w_answers;        /* answers counted */
    long w_tops, w_full;   /* times the loop sent what it could; of them, with its total in flight */
    uint64_t ups, downs;   /* tries kept */
};

/* A total starting at initial, kept within [lo, hi]. */
void limit_total_init(struct limit_total *t, int initial, int lo, int hi, double now);

/* One request's end: sent at t_sent, ended at now. Returns the total in force after it. */
int limit_total_sample(struct limit_total *t, double now, double t_sent);

/* The loop has sent what it could: full when it has its total in flight. */
void limit_total_filled(struct limit_total *t, int full);

/* ---- the run's table, in the shared page ---- */

#define LIMIT_HIST_HEAD 32 /* the first changes of a stage's limit are kept */
#define LIMIT_HIST_TAIL 96 /* and the latest */
#define LIMIT_MAX_HOLDERS 4096 /* worker processes (--workers' maximum) */

struct limit_change {
    float t;       /* seconds since the run started */
    int32_t limit;
};

struct limit_stage {
    int mode;               /* enum limit_mode; set before the first request, then constant */
    _Atomic int limit;      /* the limit in force */
    _Atomic int in_flight;  /* the stage's requests holding a slot */
    _Atomic int peak;       /* the most in flight at once */
    _Atomic uint32_t gen;   /* futex word: bumped on every release */
    _Atomic int waiters;    /* blocking drivers asleep on gen */
    pthread_mutex_t mu;     /* process-shared and robust: guards what follows */
    struct limit_algo algo;
    uint64_t changes;
    struct limit_change head[LIMIT_HIST_HEAD], tail[LIMIT_HIST_TAIL];
};

/* Which stage's slot a worker process holds, so that its parent can give the slot back when
 * the worker dies with it (a crash, the watchdog's kill). */
struct limit_holder {
    _Atomic int pid;   /* 0: free */
    _Atomic int stage; /* stage + 1 while it holds a slot, else 0 */
};

struct shared_page;
struct config;

/* Fills the shared page's table from the pipeline's "concurrency" (and --concurrency auto):
 * call once in the parent, before any request. A run that sends one request at a time (serial,
 * or one worker) gives no stage an adaptive limit: it has nothing to adapt, and a 429 or 503 is
 * then the server's answer to that one request, charged to the image's retries (chain.h's
 * CHAIN_BUSY_FREE is for adaptive limits). now: the run's start. 0, or -1 with err. */
int limit_setup(struct shared_page *sh, const struct config *cfg, double now, char *err, size_t errlen);
void limit_teardown(struct shared_page *sh, int n_stages);

/* 1 when stage s has a limit. */
int limit_on(const struct shared_page *sh, int s);

/* Takes a slot of stage s when one is free: 1 (also when the stage has no limit), else 0.
 * holder: the calling worker process's entry + 1 in the holder table (run->holder), 0 for none. */
int limit_try_acquire(struct shared_page *sh, int holder, int s);

/* The same, waiting (on a futex, across processes) for a release when none is free, at most
 * max_s seconds; 1 with the slot, else 0 (the caller decides whether to wait again). */
int limit_wait(struct shared_page *sh, int holder, int s, double max_s);

/* Gives back a slot taken by either of the above, with what the attempt (sent at t_sent, ended
 * now) said. No-op on a stage without a limit. Returns 1 when the stage's limit changed. */
int limit_release(struct shared_page *sh, int holder, int s, double t_sent, double now, enum limit_signal sig);

/* A worker process: claims its entry of the holder table (run->holder = the return value, 0
 * when the table is full: its slots are then not given back if it dies). */
int limit_holder_register(struct shared_page *sh, int pid);
/* The parent, when worker pid has died: gives back the slot it held, frees its entry. */
void limit_holder_reap(struct shared_page *sh, int pid);

/* A stage's limit as the summary shows it: for an adaptive one, what it held (limit_algo_held)
 * at the end and each time that changed; a probe's halving for one window is not shown. */
struct limit_view {
    int mode;
    int limit, lo, hi, peak;
    double rtt_noload_ms;
    uint64_t drops, changes;
    uint64_t undone;       /* decreases undone: the RTT rose with time, not with load */
    int n_hist;            /* entries of hist, in time order */
    struct limit_change hist[LIMIT_HIST_HEAD + LIMIT_HIST_TAIL];
};
void limit_read(struct shared_page *sh, int s, struct limit_view *v);

#endif
