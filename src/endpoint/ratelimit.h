/* ratelimit: --max-rps and the stages' "max_rps", token buckets shared by every worker of a
 * run, threads and processes alike. A bucket is one 64-bit "theoretical arrival time" (GCRA) in
 * a shared memory page, updated with compare-and-swap, so forked-and-exec'd worker processes can
 * attach to it through an inherited file descriptor: the run's bucket first, then one per
 * stage. Bursts of up to 1 + rps/100 requests pass at once. */
#ifndef ANNOTATE_RATELIMIT_H
#define ANNOTATE_RATELIMIT_H

struct ratelimit;

/* A limiter for rps requests per second (> 0). NULL on error. */
struct ratelimit *ratelimit_new(double rps);

/* The limiter behind an inherited descriptor (from ratelimit_fd), for worker processes. The
 * limiter takes the descriptor: ratelimit_free closes it. */
struct ratelimit *ratelimit_attach(int fd, double rps);
int ratelimit_fd(const struct ratelimit *rl);

/* Takes one token of the run's bucket; returns how many seconds the caller must wait before
 * sending (0 if none, or when there is no run's rate). */
double ratelimit_take(struct ratelimit *rl);

/* The same with a bucket per stage too: the run's (rps, 0: none) and each stage's "max_rps" of p
 * (0: none). NULL on error, or when there is no rate at all (ratelimit_wanted says so first). */
struct pipeline;
int ratelimit_wanted(double rps, const struct pipeline *p);
struct ratelimit *ratelimit_new_stages(double rps, const struct pipeline *p);
struct ratelimit *ratelimit_attach_stages(int fd, double rps, const struct pipeline *p);

/* Takes a token of stage s's bucket: how many seconds the caller must wait (0 if the stage has
 * no rate). A request takes its stage's token first, waits for it, and only then takes the run's
 * (ratelimit_take), so that a request held back by its stage does not spend the run's rate
 * before it can go. */
double ratelimit_take_stage(struct ratelimit *rl, int s);

void ratelimit_free(struct ratelimit *rl);

#endif
