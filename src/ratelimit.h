/* ratelimit: --max-rps, a token bucket shared by every worker of a run, threads and processes
 * alike. The bucket is one 64-bit "theoretical arrival time" (GCRA) in a shared memory page,
 * updated with compare-and-swap, so forked-and-exec'd worker processes can attach to it through
 * an inherited file descriptor. Bursts of up to 1 + rps/100 requests pass at once. */
#ifndef ANNOTATE_RATELIMIT_H
#define ANNOTATE_RATELIMIT_H

struct ratelimit;

/* A limiter for rps requests per second (> 0). NULL on error. */
struct ratelimit *ratelimit_new(double rps);

/* The limiter behind an inherited descriptor (from ratelimit_fd), for worker processes. The
 * limiter takes the descriptor: ratelimit_free closes it. */
struct ratelimit *ratelimit_attach(int fd, double rps);
int ratelimit_fd(const struct ratelimit *rl);

/* Takes one token; returns how many seconds the caller must wait before sending (0 if none). */
double ratelimit_take(struct ratelimit *rl);

void ratelimit_free(struct ratelimit *rl);

#endif
