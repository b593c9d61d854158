/* worker: see worker.h. The worker process of the processes strategy (processes.c is its
 * parent's side; ipc.h is everything that passes between the two). In steps: detach from the
 * terminal's signals and take a private descriptor for frames, read the configuration frame, set
 * up a run of its own on the parent's shared page, serve items until stdin closes, let go. */
#include "drivers/worker.h"
#include "flow/load.h"
#include "common/stats.h"
#include "endpoint/ratelimit.h"
#include "endpoint/shared.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "chain/memo.h"
#include "common/fdio.h"
#include "drivers/ipc.h"
#include "drivers/job.h"
#include "endpoint/limit.h"
#include "flow/budget.h"

static int worker_out_fd = -1;
static double worker_last_beat;

/* The heartbeat: an empty frame, at most once a second. */
static void worker_alive(const struct run *run)
{
    (void)run;
    double t = now_s();
    if (t - worker_last_beat < 1.0)
        return;
    worker_last_beat = t;
    uint32_t zero = 0;
    if (fd_write_all(worker_out_fd, &zero, 4)) {
        /* The parent is gone or not reading: PR_SET_PDEATHSIG ends us if it died. */
    }
}

/* What a worker process runs with: the parent's configuration and a run of its own over it. */
struct worker_run {
    struct ipc_worker_config wc;
    struct shared sh;
    atomic_int stop;
    struct run run;
    struct job_worker *jw;
};

/* The parent decides when we stop (it closes our stdin); a Ctrl-C on the terminal reaches the
 * whole process group and must not kill work in flight. Frames go to a private descriptor, so
 * that anything printed to stdout by accident goes to stderr instead of corrupting the stream.
 * Returns -1 when the parent is gone already. */
static int detach(void)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* If the parent dies (kill -9, or its drain deadline passed), what we are doing can no longer
     * be written anywhere: go at once rather than finish retries into a closed pipe. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return -1; /* it died before we got here */
    worker_out_fd = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    return 0;
}

/* The parent's first frame: the configuration. 0, or -1 with a message on stderr. */
static int read_config(struct ipc_buf *in, struct ipc_worker_config *wc)
{
    char err[512] = "";
    if (ipc_read_frame(STDIN_FILENO, in) == 0 && ipc_decode_config(in, wc, err, sizeof err) == 0)
        return 0;
    if (in->len)
        fprintf(stderr, "annotate worker: %s\n", err);
    else
        fprintf(stderr, "annotate worker: no configuration from the parent (this command is for annotate's own use)\n");
    return -1;
}

/* The worker's run: the memory budget, its stats, the parent's shared page (where its stage
 * slots are given back if it dies) and rate buckets, and a job worker. 0, or -1 with a message. */
static int set_up(struct worker_run *w)
{
    atomic_init(&w->stop, RUN_GOING);
    w->run = (struct run){.cfg = &w->wc.cfg, .p = w->wc.cfg.pipeline, .alive = worker_alive, .stop = &w->stop};
    struct run *run = &w->run;
    char why[300];
    if (load_start(&w->wc.cfg, why, sizeof why)) { /* it loads images, or cuts crops */
        fprintf(stderr, "annotate worker: %s\n", why);
        return -1;
    }
    run->stats = stats_new(run->p->n);
    if (shared_attach(&w->sh, w->wc.shared_fd) == 0) {
        run->shared = w->sh.page;
        run->holder = limit_holder_register(w->sh.page, (int)getpid());
        budget_use(&w->sh.page->budget, run->holder); /* the run's budget, set by the parent */
    }
    if (w->wc.shared_fd < 0 || !run->shared) /* no page shared with the parent: a budget of its own */
        budget_set(w->wc.cfg.max_memory, chain_answer_room(run));
    if (w->wc.ratelimit_fd >= 0)
        run->rl = ratelimit_attach_stages(w->wc.ratelimit_fd, w->wc.cfg.max_rps, run->p);
    if (run->stats && run->shared && (w->wc.jobs & JOB_QUERY)) {
        /* Its own handle on the answer store (chain/memo.h says why the lookups live here). The
         * parent has checked the file: a worker that cannot open it goes on without it. */
        char err[1200];
        if (!(run->memo = memo_open(run, 1, err, sizeof err)) && err[0])
            fprintf(stderr, "annotate worker: %s: going on without the cache\n", err);
    }
    if (run->stats && run->shared && (w->wc.ratelimit_fd < 0 || run->rl))
        w->jw = job_worker_new(run, w->wc.jobs);
    if (w->jw)
        return 0;
    fprintf(stderr, "annotate worker: cannot set up (out of memory, or the shared page is missing)\n");
    return -1;
}

/* Serves the items the parent sends, each answered with its frame, until stdin closes. Returns
 * the exit status: 0, or 3 when a frame cannot be read or written. */
static int serve(struct worker_run *w, struct ipc_buf *in)
{
    struct ipc_buf o = {0};
    int rc = 0;
    /* The payload goes back only when the parent still needs it (it runs the query itself). */
    int send_payload = !(w->wc.jobs & JOB_QUERY);
    while (ipc_read_frame(STDIN_FILENO, in) == 0) {
        struct item *it = ipc_decode_item(in, w->run.p->n);
        in->len = 0;
        ipc_buf_trim(in); /* the payload is the item's now */
        if (!it) {
            fprintf(stderr, "annotate worker: malformed item frame from the parent\n");
            rc = 3;
            break;
        }
        budget_force(item_charge(it)); /* the copy of a payload the parent sent (it keeps its own) */
        job_worker_run(w->jw, it);
        int bad = ipc_encode_item(&o, it, send_payload);
        if (send_payload && !bad)
            item_disown_charge(it); /* the parent takes its share over (budget_adopt) */
        item_free(it);
        if (bad) {
            fprintf(stderr, "annotate worker: out of memory for an answer frame\n");
            rc = 3;
            break;
        }
        if (fd_write_all(worker_out_fd, o.d, o.len)) {
            rc = 3;
            break;
        }
        o.len = 0;
        ipc_buf_trim(&o); /* a payload sent back is not kept here */
        worker_last_beat = now_s();
    }
    ipc_buf_free(&o);
    return rc;
}

static void tear_down(struct worker_run *w)
{
    job_worker_free(w->jw);
    memo_close(w->run.memo); /* what it put, committed */
    ratelimit_free(w->run.rl);
    if (w->run.shared) {
        budget_reap(w->run.shared, (int)getpid()); /* (nothing, unless an item leaked its share) */
        limit_holder_reap(w->run.shared, (int)getpid());
    }
    budget_use(NULL, 0);
    shared_close(&w->sh);
    stats_free(w->run.stats);
    load_stop();
}

int exec_proc_worker_main(void)
{
    if (detach())
        return 0;
    struct ipc_buf in = {0};
    struct worker_run w = {0};
    int rc = 2;
    if (read_config(&in, &w.wc) == 0) {
        rc = set_up(&w) ? 2 : serve(&w, &in);
        tear_down(&w);
        close(worker_out_fd);
    }
    ipc_worker_config_free(&w.wc);
    ipc_buf_free(&in);
    return rc;
}
