/* exec_load_multi: the load stage on curl-multi (--strategy load=curl-multi; the default load of
 * a bucket when the query stage is curl-multi). One thread and one multi handle
 * (curl_multi_poll), with up to --concurrency fetches in flight, each on an easy handle of the
 * loop's own: the model requests' handles are others, and fetch_finish resets a handle after each
 * attempt, so S3's signature and an image host's headers reach no model server. This file only
 * decides when: what a fetch's end means is fetch.h's, and the bytes become a payload through
 * load_bytes, as in a blocking worker.
 *
 * The loop never blocks but in curl_multi_poll:
 *   - the budget (--max-memory) is taken without waiting: an image whose listed size does not
 *     fit yet is held (no other image is taken meanwhile, so images start in order), and one
 *     whose size is known only once it has arrived keeps its bytes until its share fits;
 *   - an image is passed on with queue_try_push: when the next stage's queue is full, the loop
 *     keeps it (at most one per fetch slot) and takes no new image;
 *   - a retry waits in its slot until its time.
 * A list's local files are read in the loop itself (load_file_nowait), one at a time. Once the run
 * stops, images not yet taken are let go as every executor lets them go (exec.h); on an abort, the
 * fetches in flight end without a row. */
#include "drivers/backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow/load.h"
#include "sources/fetch.h"

struct slot {
    CURL *h;
    struct fetch f;
    struct item *it;      /* NULL: free */
    int in_curl;
    double retry_at;      /* > 0: its next attempt's time */
    unsigned char *data;  /* fetched bytes waiting for their share of the budget */
    size_t len;
};

struct lmulti {
    struct exec base;
    const struct run *run;
    queue *in, *out;
    pthread_t tid;
    CURLM *m;
    int qfd;
    int cap;
    struct slot *slots;
    int busy;             /* slots holding an item */
    struct item *held;    /* taken, waiting for its share of the budget before its fetch starts */
    struct item **ready;  /* loaded (or failed), waiting for room in out: a ring of cap + 1 */
    int ready_head, n_ready;
    int input_done;
};

/* ---- passing items on ---- */

static void ready_add(struct lmulti *x, struct item *it)
{
    x->ready[(x->ready_head + x->n_ready++) % (x->cap + 1)] = it;
}

/* Pushes what is ready while the next queue has room. */
static void flush(struct lmulti *x)
{
    while (x->n_ready) {
        struct item *it = x->ready[x->ready_head];
        int r = queue_try_push(x->out, it);
        if (r == 1)
            return;
        if (r < 0)
            item_free(it); /* the run is being torn down */
        x->ready_head = (x->ready_head + 1) % (x->cap + 1);
        x->n_ready--;
    }
}

static void slot_done(struct lmulti *x, struct slot *s)
{
    ready_add(x, s->it);
    s->it = NULL;
    s->retry_at = 0;
    x->busy--;
}

/* ---- fetches ---- */

/* The slot's next attempt on the wire; a fetch that cannot be made is done (failed). */
static void attempt(struct lmulti *x, struct slot *s)
{
    s->retry_at = 0;
    if (fetch_prepare(&s->f, x->run, s->it, s->h) == 0) {
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        if (curl_multi_add_handle(x->m, s->h) == CURLM_OK) {
            s->in_curl = 1;
            return;
        }
        curl_easy_reset(s->h); /* nothing of the attempt stays on the handle */
        item_fail(s->it, "cannot start the fetch (curl-multi)");
    }
    item_drop_payload(s->it);
    slot_done(x, s);
}

/* Fetched bytes into the item's payload, once their share fits: 0, or 1 to try again later. A
 * share of another size (the size was not known, or the object changed since it was listed) is
 * given back first, so that an image larger than the whole budget still goes once nothing else
 * holds any. */
static int settle_bytes(struct lmulti *x, struct slot *s)
{
    uint64_t need = load_bytes_charge(x->run, s->it, s->data, s->len);
    if (need && s->it->charged != need) {
        item_drop_payload(s->it);
        if (load_try_charge(s->it, need))
            return 1;
    }
    load_bytes(x->run, s->it, s->data, s->len); /* (need 0: it fails the item, and frees the bytes) */
    s->data = NULL;
    slot_done(x, s);
    return 0;
}

static void on_done(struct lmulti *x, CURL *h, CURLcode cc)
{
    struct slot *s;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&s);
    curl_multi_remove_handle(x->m, h);
    s->in_curl = 0;
    double at;
    switch (fetch_finish(&s->f, x->run, s->it, h, cc, now_s(), &at)) {
    case FETCH_DONE:
        s->data = fetch_take(&s->f, &s->len);
        if (!s->data) {
            item_fail(s->it, "out of memory for the image");
            item_drop_payload(s->it);
            slot_done(x, s);
        } else {
            settle_bytes(x, s);
        }
        break;
    case FETCH_RETRY:
        s->retry_at = at > 0 ? at : 1e-9;
        break;
    case FETCH_FAIL:
        item_drop_payload(s->it);
        slot_done(x, s);
        break;
    }
}

/* ---- taking images ---- */

static struct slot *free_slot(struct lmulti *x)
{
    for (int i = 0; i < x->cap; i++)
        if (!x->slots[i].it) {
            struct slot *s = &x->slots[i];
            if (!s->h && !(s->h = curl_easy_init()))
                return NULL;
            return s;
        }
    return NULL;
}

/* Starts the item: a fetch in a free slot, or a file read here. 0, or 1 when its share of the
 * budget does not fit yet (it is not started). */
static int start_item(struct lmulti *x, struct item *it)
{
    if (it->status == ITEM_FAILED || (it->kind != ITEM_S3 && it->kind != ITEM_HTTP)) {
        if (load_file_nowait(x->run, it))
            return 1;
        ready_add(x, it);
        return 0;
    }
    if (it->size_known && (it->size == 0 || it->size > x->run->cfg->max_image_bytes)) {
        load_item(NULL, x->run, it); /* a listed size that cannot be sent: failed without a fetch */
        ready_add(x, it);
        return 0;
    }
    if (it->size_known && load_try_charge(it, load_charge(x->run, it->size)))
        return 1;
    struct slot *s = free_slot(x);
    if (!s) {
        item_fail(it, "out of memory for a curl handle to fetch the image");
        item_drop_payload(it);
        ready_add(x, it);
        return 0;
    }
    s->it = it;
    x->busy++;
    fetch_begin(&s->f, it);
    attempt(x, s);
    return 0;
}

/* Takes new images while a slot and a place among the ready ones are free. */
static void take_images(struct lmulti *x)
{
    if (run_stop_state(x->run) != RUN_GOING && !x->input_done) {
        /* Stopping: what was never started gets no row (--resume runs it). */
        void *q;
        int got;
        while ((got = queue_try_pop(x->in, &q)) > 0)
            exec_let_go(x->run, q);
        if (got < 0)
            x->input_done = 1;
        if (x->held) {
            exec_let_go(x->run, x->held);
            x->held = NULL;
        }
        return;
    }
    while (x->busy < x->cap && x->n_ready + x->busy < x->cap) {
        if (!x->held) {
            void *p;
            int got = x->input_done ? -1 : queue_try_pop(x->in, &p);
            if (got < 0)
                x->input_done = 1;
            if (got <= 0)
                return;
            x->held = p;
        }
        if (start_item(x, x->held))
            return; /* its share does not fit yet */
        x->held = NULL;
    }
}

/* Retries whose time has come, and bytes waiting for their share. */
static void tend_slots(struct lmulti *x, double now, double *next)
{
    for (int i = 0; i < x->cap; i++) {
        struct slot *s = &x->slots[i];
        if (!s->it || s->in_curl)
            continue;
        if (s->data) {
            settle_bytes(x, s);
        } else if (s->retry_at > 0 && s->retry_at <= now) {
            attempt(x, s);
        } else if (s->retry_at > 0 && (*next < 0 || s->retry_at < *next)) {
            *next = s->retry_at;
        }
    }
}

/* The run is being torn down: nothing in flight is waited for; those images get no row. */
static void settle_all(struct lmulti *x)
{
    for (int i = 0; i < x->cap; i++) {
        struct slot *s = &x->slots[i];
        if (!s->it)
            continue;
        if (s->in_curl) {
            curl_multi_remove_handle(x->m, s->h);
            curl_easy_reset(s->h);
            s->in_curl = 0;
        }
        free(s->data);
        s->data = NULL;
        s->it->no_row = 1;
        item_fail(s->it, "not loaded: the run was stopped");
        item_drop_payload(s->it);
        slot_done(x, s);
    }
}

static void *loop(void *arg)
{
    struct lmulti *x = arg;
    for (;;) {
        flush(x);
        if (run_stop_state(x->run) == RUN_ABORT)
            settle_all(x);
        take_images(x);
        double now = now_s(), next = -1;
        tend_slots(x, now, &next);
        flush(x);
        if (x->input_done && !x->busy && !x->held && !x->n_ready)
            break;
        int running;
        curl_multi_perform(x->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(x->m, &left)))
            if (msg->msg == CURLMSG_DONE)
                on_done(x, msg->easy_handle, msg->data.result);
        /* Held work (a full queue, a budget that does not fit yet) is looked at again soon. */
        int waiting = x->n_ready || x->held;
        for (int i = 0; i < x->cap && !waiting; i++)
            waiting = x->slots[i].data != NULL;
        double ms = waiting ? 5 : next >= 0 ? (next - now_s()) * 1e3 + 0.999 : 1000;
        int timeout = ms > 1000 ? 1000 : ms < 0 ? 0 : (int)ms;
        struct curl_waitfd w = {.fd = x->qfd, .events = CURL_WAIT_POLLIN};
        curl_multi_poll(x->m, &w, x->input_done || x->held ? 0 : 1, timeout, NULL);
        if (w.revents) {
            uint64_t v;
            ssize_t rr = read(x->qfd, &v, sizeof v);
            (void)rr;
        }
    }
    queue_producer_done(x->out);
    return NULL;
}

static void lmulti_free(struct lmulti *x)
{
    for (int i = 0; x->slots && i < x->cap; i++) {
        fetch_free(&x->slots[i].f);
        if (x->slots[i].h)
            curl_easy_cleanup(x->slots[i].h);
    }
    if (x->m)
        curl_multi_cleanup(x->m);
    free(x->slots);
    free(x->ready);
    free(x);
}

static void join(struct exec *base)
{
    struct lmulti *x = (struct lmulti *)base;
    pthread_join(x->tid, NULL);
    lmulti_free(x);
}

struct exec *exec_load_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen)
{
    struct lmulti *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->base.join = join;
    x->run = run;
    x->in = in;
    x->out = out;
    x->cap = run->cfg->concurrency > 0 ? run->cfg->concurrency : 64;
    if (x->cap > 1024)
        x->cap = 1024; /* --concurrency auto: the model requests' total, not the fetches' */
    x->slots = calloc((size_t)x->cap, sizeof *x->slots);
    x->ready = calloc((size_t)x->cap + 1, sizeof *x->ready);
    x->m = curl_multi_init();
    x->qfd = queue_add_notify_fd(in);
    if (!x->slots || !x->ready || !x->m || x->qfd < 0) {
        snprintf(err, errlen, "cannot set up the curl-multi loader: %s", strerror(errno));
        lmulti_free(x);
        return NULL;
    }
    curl_multi_setopt(x->m, CURLMOPT_MAXCONNECTS, (long)x->cap + 8);
    int rc = pthread_create(&x->tid, NULL, loop, x);
    if (rc) {
        snprintf(err, errlen, "cannot start the curl-multi loader's thread: %s", strerror(rc));
        lmulti_free(x);
        return NULL;
    }
    return &x->base;
}
