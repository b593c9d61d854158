/* prepstat: is preparing images (prepare.h, the stages' "image") what limits a run? The figures,
 * kept cheaply while the run goes, and the one rule that reads them; the progress line and the
 * summary (text and --stats-json) both ask prepstat_judge, so they never disagree.
 *
 * The figures (struct prepstat, in the run's shared page: worker processes that load add theirs
 * there, whatever the strategy):
 *   - prep_us: the time the loaders spent preparing images (the prepared copies made, their
 *     base64 included), summed over loaders, wall clock; images and copies: how many. Wall, not
 *     CPU: libvips decodes and encodes on its own worker threads, so the CPU of one preparation
 *     cannot be told apart from another's; and a loader whose preparation waits for a core is
 *     still a loader not loading.
 *     Crops cut from a detector's boxes are not counted: they are cut where the crop stage is
 *     queried (chain.h: chain_cut_run), not by the loaders.
 *   - starved_us: the time the query side had room to send (a blocking worker waiting for an
 *     image, an event loop or the process manager under its cap finding the queue between load
 *     and query empty; in a strategy where one worker both loads and queries, the time it spends
 *     loading) and no loaded image was waiting. Counted by the queue (queue.h:
 *     queue_watch_starved) and by the job workers that do both (job.c).
 *   - threads and lanes, set by the runner: how many loaders there are (threads, processes, or
 *     the worker processes that load their own images), and how many query sides the starved
 *     time is summed over (1 for the queue, whose starved time is wall time; the workers' count
 *     when each worker loads its own).
 *
 * The rule. Over a window (the last few seconds for the progress line; for the summary, the
 * whole run from its first image, the set-up left out): busy = prep_us / (threads x window), the share of the loaders' time spent preparing;
 * starved = starved_us / (lanes x window), the share of the time the query side waited for an
 * image. Preparation is the bottleneck when both are over one half: the servers could have been
 * sent more (they waited for images more than half the time), and what kept the images from
 * coming was mostly preparing them, not reading files, a full --max-memory or idle loaders.
 * Either alone says nothing: a slow server leaves the loaders idle (busy low, starved low once
 * the queue is full); a handful of images leaves the query side waiting but the loaders idle
 * too; heavy preparation behind a slower server keeps the loaders busy but the queue full. The
 * progress line judges no window shorter than PREPSTAT_MIN_S (the first second of a run, the
 * first image still being prepared, says little); the summary judges the whole run, however
 * short. */
#ifndef ANNOTATE_PREPSTAT_H
#define ANNOTATE_PREPSTAT_H

#include <stdatomic.h>
#include <stdint.h>

#define PREPSTAT_MIN_S 1.0  /* the shortest window the progress line judges */
#define PREPSTAT_SHARE 0.5  /* both shares must be over this */

struct prepstat {
    _Atomic uint64_t images, copies, prep_us;
    _Atomic uint64_t starved_us;
    _Atomic int64_t starved_since_us; /* the queue's current starved stretch began (0: none) */
    _Atomic int threads, lanes;
};

/* Monotonic microseconds (never 0). */
int64_t prepstat_now_us(void);

/* A loader spent us microseconds preparing an image: copies copies made (0: it failed, and is
 * not counted among the images, but its time is). */
void prepstat_add_prep(struct prepstat *ps, int copies, uint64_t us);

/* Starved time: the queue's stretch, from begin to end (one queue at a time: the one between
 * load and query), or us of a worker's own loading (the workers that load and query). */
void prepstat_starve_begin(struct prepstat *ps);
void prepstat_starve_end(struct prepstat *ps);
void prepstat_add_starved(struct prepstat *ps, uint64_t us);

/* The figures at one moment, the queue's starved stretch under way included. */
struct prep_sample {
    int64_t t_us;
    uint64_t images, prep_us, starved_us;
};
void prepstat_sample(const struct prepstat *ps, struct prep_sample *s);

/* The rule (above) over the window from a to b. */
struct prep_verdict {
    double window_s;
    double busy, starved; /* 0..1 */
    int bottleneck;
};
void prepstat_judge(const struct prepstat *ps, const struct prep_sample *a, const struct prep_sample *b,
                    struct prep_verdict *v);

#endif
