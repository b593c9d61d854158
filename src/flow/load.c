/* load: see load.h. */
#include "flow/load.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/b64.h"
#include "common/hash.h"
#include "flow/budget.h"
#include "common/mime.h"
#include "common/prepstat.h"
#include "endpoint/shared.h"
#include "prepare/prepare.h"
#include "sources/fetch.h"

struct loader {
    struct fetch f;
    CURL *h; /* the worker's own handle for fetches: never a model request's */
};

/* A slow disk is not a stuck worker: the worker process's heartbeat (run.h). */
static void say_alive(const struct run *run)
{
    if (run->alive)
        run->alive(run);
}

static void budget_alive(const void *arg)
{
    say_alive(arg);
}

static int budget_stop(const void *arg)
{
    const struct run *run = arg;
    return run_stop_state(run) == RUN_ABORT;
}

/* Room left before and after the base64 (item.h: b64_slack), for a body's head and tail. */
#define B64_SLACK 1024

/* The base64 buffer of an image of size bytes, with the slack on either side. */
static int b64_alloc(struct item *it, size_t size)
{
    char *block = malloc(B64_SLACK + b64_encoded_len(size) + 1 + B64_SLACK);
    if (!block)
        return -1;
    it->b64 = block + B64_SLACK;
    it->b64_slack = B64_SLACK;
    return 0;
}

/* Opens the image's file and checks that it can be sent: a regular file, not empty, within
 * --max-image-bytes. Returns the descriptor and the file's size, or -1 with the item failed. */
static int open_image(const struct run *run, struct item *it, uint64_t *size)
{
    /* O_NONBLOCK|O_NOFOLLOW: if the file was swapped for a FIFO or a link since the scan, we
     * must not block on it or follow it. A list names its files itself: a link there is followed. */
    int fd = open(it->path, O_RDONLY | (it->kind == ITEM_LISTED_FILE ? 0 : O_NOFOLLOW) | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        item_fail(it, "cannot open the file: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st))
        item_fail(it, "cannot stat the file: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        item_fail_final(it, "not a regular file");
    else if (st.st_size == 0)
        item_fail_final(it, "empty file (0 bytes): not sent");
    else if ((uint64_t)st.st_size > run->cfg->max_image_bytes)
        item_fail_final(it, "file is %" PRIu64 " bytes, more than --max-image-bytes %" PRIu64 ": not sent",
                  (uint64_t)st.st_size, run->cfg->max_image_bytes);
    else {
        *size = (uint64_t)st.st_size;
        return fd;
    }
    close(fd);
    return -1;
}

/* The budget share of the base64 of an image of size bytes, with its slack (0 when no body sends
 * base64). */
static uint64_t b64_charge(unsigned needs, uint64_t size)
{
    return (needs & NEED_B64) ? b64_encoded_len((size_t)size) + 1 + 2 * B64_SLACK : 0;
}

uint64_t load_charge(const struct run *run, uint64_t size)
{
    return b64_charge(pipeline_needs(run->p), size) + size;
}

static int never_wait(const void *arg)
{
    (void)arg;
    return 1;
}

int load_try_charge(struct item *it, uint64_t charge)
{
    if (budget_take(charge, NULL, never_wait, NULL))
        return -1;
    it->charged += charge;
    return 0;
}

/* Takes the image's share of --max-memory before anything is read: loading waits while other
 * images hold the budget. 0, or -1 with the item failed (the run was stopped: no row). */
static int charge_budget(const struct run *run, struct item *it, uint64_t charge)
{
    if (budget_take(charge, budget_alive, budget_stop, run)) {
        item_fail(it, "not loaded: the run was stopped");
        it->no_row = 1; /* not the image's fault: --resume runs it */
        return -1;
    }
    it->charged = charge;
    return 0;
}

/* Reads the file's size bytes into buf, and checks that nothing follows them. Returns 0 with
 * the bytes read in *got (fewer when the file shrank), or -1 with the item failed. */
static int read_exact(const struct run *run, struct item *it, int fd, unsigned char *buf, size_t size, size_t *got)
{
    *got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + *got, size - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            item_fail(it, "cannot read the file: %s", strerror(errno));
            return -1;
        }
        if (r == 0)
            return 0;
        *got += (size_t)r;
        say_alive(run);
        if (*got == size) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                item_fail(it, "the file grew while it was read");
                return -1;
            }
            return 0;
        }
    }
}

/* The bytes themselves are sent: kept whole in it->raw, and the base64 made from them if a body
 * also wants it. On a failure the item is failed (and its payload dropped once read). */
static void read_whole(const struct run *run, struct item *it, int fd, uint64_t size, unsigned needs)
{
    if (!(it->raw = malloc((size_t)size))) {
        item_fail(it, "out of memory for a %" PRIu64 "-byte image", size);
        return;
    }
    size_t got;
    if (read_exact(run, it, fd, it->raw, (size_t)size, &got)) {
        item_drop_payload(it);
        return;
    }
    if (got != size) {
        item_fail(it, "the file shrank while it was read (%zu of %" PRIu64 " bytes)", got, size);
        item_drop_payload(it);
        return;
    }
    it->raw_len = got;
    it->mime = mime_of(it->raw, got < MIME_HEAD ? got : MIME_HEAD, it->path);
    if (run->cfg->cache)
        it->has_digest = hash_bytes(it->raw, got, it->digest) == 0;
    if (needs & NEED_B64) {
        if (b64_alloc(it, got)) {
            item_fail(it, "out of memory for a %" PRIu64 "-byte image", size);
            item_drop_payload(it);
            return;
        }
        it->b64_len = b64_encode_with(run->cfg->encoder, it->raw, got, it->b64);
    }
}

enum { CHUNK = 3 * 21846 }; /* 64 KiB, a multiple of 3 */

/* Fills chunk from fd: CHUNK bytes, or fewer at the end of the file. Returns the bytes read, or
 * -1 with errno. */
static ssize_t fill_chunk(int fd, unsigned char *chunk)
{
    size_t fill = 0;
    while (fill < CHUNK) {
        ssize_t r = read(fd, chunk + fill, CHUNK - fill);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        fill += (size_t)r;
    }
    return (ssize_t)fill;
}

/* Only the base64 is sent (or nothing of the image): the file is read in chunks of a multiple of
 * 3 bytes, each encoded straight into the item's base64 buffer, so the image is never held raw
 * in full, and never encoded twice. On a failure the item is failed (and its payload dropped
 * once read). */
static void read_encoding(const struct run *run, struct item *it, int fd, uint64_t size, unsigned needs)
{
    size_t cap = (needs & NEED_B64) ? b64_encoded_len((size_t)size) : 0;
    if (cap && b64_alloc(it, (size_t)size)) {
        item_fail(it, "out of memory for a %" PRIu64 "-byte image", size);
        return;
    }
    static _Thread_local unsigned char chunk[CHUNK];
    size_t out = 0;
    uint64_t got = 0;
    struct hash_ctx h; /* with --cache: the file's digest, chunk by chunk (item.h) */
    int hashing = run->cfg->cache && hash_init(&h) == 0;
    for (;;) {
        ssize_t fill = fill_chunk(fd, chunk);
        if (fill < 0) {
            item_fail(it, "cannot read the file: %s", strerror(errno));
            item_drop_payload(it);
            if (hashing)
                hash_discard(&h);
            return;
        }
        if (hashing)
            hash_update(&h, chunk, (size_t)fill);
        if (got == 0)
            it->mime = mime_of(chunk, (size_t)fill < MIME_HEAD ? (size_t)fill : MIME_HEAD, it->path);
        got += (uint64_t)fill;
        say_alive(run);
        if (got > size) {
            item_fail(it, "the file grew while it was read");
            item_drop_payload(it);
            if (hashing)
                hash_discard(&h);
            return;
        }
        if (cap)
            out += b64_encode_with(run->cfg->encoder, chunk, (size_t)fill, it->b64 + out);
        if (fill < CHUNK)
            break;
    }
    if (hashing)
        it->has_digest = hash_final(&h, it->digest) == 0;
    if (got != size) {
        item_fail(it, "the file shrank while it was read (%" PRIu64 " of %" PRIu64 " bytes)", got, size);
        item_drop_payload(it);
        return;
    }
    it->b64_len = out;
}

/* ---- preparation: the prepared copies (item.h), made once per distinct spec ---- */

/* The most bytes of a file's head its header is read from before the budget is taken. */
#define HEAD_BYTES (1u << 20)

/* Reads the header from the file's head. 1 with *info, 0 when the head is not enough (the whole
 * file is read first), -1 with the item failed: the decoder's reason, not retried. */
static int probe_head(const struct run *run, struct item *it, int fd, uint64_t size, struct prep_info *info)
{
    size_t n = size < HEAD_BYTES ? (size_t)size : HEAD_BYTES, got = 0;
    unsigned char *head = calloc(1, n); /* (zeroed: gcc cannot see that only what was read is probed) */
    if (!head) {
        item_fail(it, "out of memory for the image's header");
        return -1;
    }
    while (got < n) {
        ssize_t r = pread(fd, head + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    char why[768];
    int rc = prep_probe(head, got, run->cfg->max_pixels, info, why, sizeof why);
    free(head);
    if (rc == 0)
        return 1;
    if (got < size && strncmp(why, "image too large", 15))
        return 0;
    item_fail_final(it, "%s", why); /* the file does not decode, or is too large */
    return -1;
}

/* Bytes to hold for an image while it is prepared: every copy's peak (prep_peak_bytes, its
 * output included) and, with crops, a source and one crop of the whole image (the most a cut
 * needs), in *cut. Without a header (info NULL), as for the largest image --max-pixels lets
 * through: the image then goes alone. */
static uint64_t prep_estimate(const struct pipeline *p, uint64_t max_pixels, const struct prep_info *known,
                              uint64_t *cut)
{
    struct prep_info worst = {0};
    const struct prep_info *info = known;
    if (!info) {
        int side = (int)sqrt((double)max_pixels);
        worst = (struct prep_info){.width = side, .height = side, .stored_w = side, .stored_h = side,
                                   .orientation = 1, .bands = 4, .sample_bytes = 2, .streams = 0};
        info = &worst;
    }
    uint64_t est = 0;
    for (int k = 0; k < p->n_specs; k++)
        est += prep_peak_bytes(info, &p->specs[k]);
    *cut = 0;
    struct prep_rect all = {0, 0, info->width, info->height};
    for (int i = 0; i < p->n; i++) {
        const struct stage *st = &p->stages[i];
        uint64_t c = st->crop ? prep_source_bytes(info) + prep_crop_peak_bytes(info, all, st->has_image ? &st->image : NULL) : 0;
        if (c > *cut)
            *cut = c;
    }
    return est;
}

/* Copy k of the image: p->specs[k] made from the file's bytes, and its base64 when a body sends
 * it. 0, or -1 with the item failed (the decoder's reason). */
static int make_copy(const struct run *run, struct item *it, int k)
{
    struct item_copy *c = &it->copies[k];
    struct prep_result res;
    char why[768];
    if (prep_image(it->raw, it->raw_len, &run->p->specs[k], run->cfg->max_pixels, &res, why, sizeof why)) {
        item_fail_final(it, "%s", why);
        return -1;
    }
    const unsigned char *bytes = res.unchanged ? it->raw : res.data;
    c->raw_len = res.unchanged ? it->raw_len : res.len;
    c->mime = res.mime;
    c->width = res.width;
    c->height = res.height;
    c->frame = res.frame;
    int b64 = (pipeline_spec_needs(run->p, k) & NEED_B64) != 0;
    if ((c->raw = malloc(c->raw_len ? c->raw_len : 1)))
        memcpy(c->raw, bytes, c->raw_len);
    if (c->raw && b64 && (c->b64 = malloc(b64_encoded_len(c->raw_len) + 1)))
        c->b64_len = b64_encode_with(run->cfg->encoder, c->raw, c->raw_len, c->b64);
    prep_result_free(&res);
    if (!c->raw || (b64 && !c->b64)) {
        item_fail(it, "out of memory for a prepared image");
        return -1;
    }
    c->charged = c->raw_len + c->b64_len;
    return 0;
}

/* Makes every copy, then keeps of the budget taken (held) only what the item now holds: the
 * copies' bytes, the file's bytes and base64 while a stage sends them or cuts crops from them,
 * and the cut's share. 0, or -1 with the item failed. */
static int make_copies(const struct run *run, struct item *it, unsigned needs, uint64_t held, uint64_t cut)
{
    const struct pipeline *p = run->p;
    if (p->n_specs && !(it->copies = calloc((size_t)p->n_specs, sizeof *it->copies))) {
        item_fail(it, "out of memory for a prepared image");
        return -1;
    }
    it->n_copies = p->n_specs;
    it->charged = 0; /* what the item holds is counted below, piece by piece */
    for (int k = 0; k < p->n_specs; k++)
        if (make_copy(run, it, k))
            break;
    uint64_t kept = 0;
    for (int k = 0; k < it->n_copies; k++)
        kept += it->copies[k].charged;
    uint64_t b64 = it->b64 ? b64_encoded_len(it->raw_len) + 1 + 2 * B64_SLACK : 0;
    if (it->status != ITEM_FAILED && !(needs & NEED_BYTES) && !pipeline_crops(p)) {
        free(it->raw); /* no stage sends the file's bytes or cuts from them */
        it->raw = NULL;
        it->raw_len = 0;
    }
    it->charged = it->raw_len + b64;
    it->cut_charged = it->status != ITEM_FAILED ? cut : 0;
    kept += it->charged + it->cut_charged;
    if (held >= kept)
        budget_give(held - kept);
    for (int k = 0; k < it->n_copies && kept > held; k++) {
        /* A copy larger than its estimate: the budget stays what was taken (no second wait). */
        uint64_t less = it->copies[k].charged < kept - held ? it->copies[k].charged : kept - held;
        it->copies[k].charged -= less;
        kept -= less;
    }
    return it->status == ITEM_FAILED ? -1 : 0;
}

/* The share of the budget an image of size bytes takes while it is prepared: the file, its
 * base64 when a stage sends it as it is, every copy's estimate and the cut's (*cut). */
static uint64_t prepared_charge(const struct run *run, unsigned needs, uint64_t size, const struct prep_info *info,
                                uint64_t *cut)
{
    uint64_t est = prep_estimate(run->p, run->cfg->max_pixels, info, cut);
    return size + b64_charge(needs, size) + est + *cut;
}

/* The copies, from the file's bytes in it->raw (held: the share taken for them): the header read
 * from the bytes when the head was not enough (probed 0), then each copy. */
static void prepare_copies(const struct run *run, struct item *it, unsigned needs, int probed, struct prep_info *info,
                           uint64_t held, uint64_t cut)
{
    char why[768];
    if (!probed && prep_probe(it->raw, it->raw_len, run->cfg->max_pixels, info, why, sizeof why)) {
        item_fail_final(it, "%s", why);
        item_drop_payload(it);
        return;
    }
    it->stored_w = info->stored_w;
    it->stored_h = info->stored_h;
    it->orientation = info->orientation;
    int64_t t0 = prepstat_now_us();
    int failed = make_copies(run, it, needs, held, cut);
    if (run->shared) /* the loaders' time preparing (prepstat.h) */
        prepstat_add_prep(&run->shared->prep, failed ? 0 : it->n_copies, (uint64_t)(prepstat_now_us() - t0));
    if (failed)
        item_drop_payload(it);
}

/* A pipeline that prepares images: the header is read first, so that the budget is taken once,
 * for the file, its base64 when a stage sends it as it is, and every estimate (a thread that
 * holds a share never waits for another); then the file is read and each copy made. A file
 * libvips cannot read fails its row with the decoder's reason, before any request. With nowait,
 * a share that does not fit now is not waited for: 1, the item as it was. Else 0. */
static int load_prepared(const struct run *run, struct item *it, int fd, uint64_t size, unsigned needs, int nowait)
{
    struct prep_info info;
    int probed = probe_head(run, it, fd, size, &info);
    if (probed < 0)
        return 0;
    uint64_t cut, charge = prepared_charge(run, needs, size, probed ? &info : NULL, &cut);
    if (nowait && load_try_charge(it, charge))
        return 1;
    if (!nowait && charge_budget(run, it, charge))
        return 0;
    read_whole(run, it, fd, size, needs | NEED_BYTES);
    if (it->status != ITEM_FAILED)
        prepare_copies(run, it, needs, probed, &info, charge, cut);
    return 0;
}

/* A file: opened, checked, its share taken, then read whole or in chunks (or prepared). With
 * nowait, a share that does not fit now is not waited for: 1, the item as it was. Else 0. */
static int load_file(const struct run *run, struct item *it, int nowait)
{
    uint64_t size;
    int fd = open_image(run, it, &size);
    if (fd < 0)
        return 0;
    unsigned needs = pipeline_needs(run->p);
    uint64_t charge = b64_charge(needs, size) + ((needs & NEED_BYTES) ? size : 0);
    int later = 0;
    if (pipeline_prepares(run->p))
        later = load_prepared(run, it, fd, size, needs, nowait);
    else if (nowait && load_try_charge(it, charge))
        later = 1;
    else if (nowait || charge_budget(run, it, charge) == 0) {
        if (needs & NEED_BYTES)
            read_whole(run, it, fd, size, needs);
        else
            read_encoding(run, it, fd, size, needs);
    }
    close(fd);
    return later;
}

int load_file_nowait(const struct run *run, struct item *it)
{
    return it->status == ITEM_FAILED ? 0 : load_file(run, it, 1);
}

/* ---- images in memory: a fetch's bytes ---- */

/* What bytes in memory need: their share of the budget and, when the pipeline prepares images,
 * their header and the cut's share. 0, or -1 with the item failed (the decoder's reason). */
struct bytes_plan {
    uint64_t charge, cut;
    struct prep_info info;
};

static int plan_bytes(const struct run *run, struct item *it, const unsigned char *data, size_t len,
                      struct bytes_plan *pl)
{
    unsigned needs = pipeline_needs(run->p);
    pl->cut = 0;
    if (!pipeline_prepares(run->p)) {
        pl->charge = b64_charge(needs, len) + len;
        return 0;
    }
    char why[768];
    if (prep_probe(data, len, run->cfg->max_pixels, &pl->info, why, sizeof why)) {
        item_fail_final(it, "%s", why);
        return -1;
    }
    pl->charge = prepared_charge(run, needs, len, &pl->info, &pl->cut);
    return 0;
}

uint64_t load_bytes_charge(const struct run *run, struct item *it, const unsigned char *data, size_t len)
{
    struct bytes_plan pl;
    return len && plan_bytes(run, it, data, len, &pl) == 0 ? pl.charge : 0;
}

void load_bytes(const struct run *run, struct item *it, unsigned char *data, size_t len)
{
    struct bytes_plan pl;
    if (len == 0)
        item_fail_final(it, "empty %s (0 bytes): not sent", it->kind == ITEM_S3 ? "object" : "image");
    if (len == 0 || plan_bytes(run, it, data, len, &pl)) {
        free(data);
        item_drop_payload(it);
        return;
    }
    if (it->charged != pl.charge) { /* the size was not known before, or the object changed since it was listed */
        item_drop_payload(it);
        if (charge_budget(run, it, pl.charge)) {
            free(data);
            return;
        }
    }
    unsigned needs = pipeline_needs(run->p);
    it->raw = data;
    it->raw_len = len;
    it->mime = mime_of(data, len < MIME_HEAD ? len : MIME_HEAD, it->path);
    if (run->cfg->cache) /* a fetched image stands in the answer store's keys as its digest too */
        it->has_digest = hash_bytes(data, len, it->digest) == 0;
    if ((needs & NEED_B64) && b64_alloc(it, len)) {
        item_fail(it, "out of memory for a %zu-byte image", len);
        item_drop_payload(it);
        return;
    }
    if (needs & NEED_B64)
        it->b64_len = b64_encode_with(run->cfg->encoder, data, len, it->b64);
    if (pipeline_prepares(run->p)) {
        prepare_copies(run, it, needs, 1, &pl.info, pl.charge, pl.cut);
    } else if (!(needs & NEED_BYTES)) { /* only the base64 is sent: the bytes' share goes back */
        free(it->raw);
        it->raw = NULL;
        it->raw_len = 0;
        budget_give(len);
        it->charged -= len;
    }
}

/* An S3 object or an image URL: its share taken first when its size is known, then fetched on
 * the worker's handle. */
static void load_fetched(struct loader *l, const struct run *run, struct item *it)
{
    const char *what = it->kind == ITEM_S3 ? "object" : "image";
    if (it->size_known && it->size == 0) {
        item_fail_final(it, "empty %s (0 bytes): not sent", what);
        return;
    }
    if (it->size_known && it->size > run->cfg->max_image_bytes) {
        item_fail_final(it, "%s is %" PRIu64 " bytes, more than --max-image-bytes %" PRIu64 ": not sent", what, it->size,
                  run->cfg->max_image_bytes);
        return;
    }
    if (it->size_known && charge_budget(run, it, load_charge(run, it->size)))
        return;
    if (!run->sources) { /* (a worker process is never given one: runner.c) */
        item_fail(it, "this process cannot fetch images");
        item_drop_payload(it);
        return;
    }
    if (!l) {
        item_fail(it, "out of memory for a curl handle to fetch the image");
        item_drop_payload(it);
        return;
    }
    size_t len;
    unsigned char *data = fetch_blocking(&l->f, run, it, l->h, &len);
    if (!data) {
        item_drop_payload(it);
        return;
    }
    load_bytes(run, it, data, len);
}

void load_item(struct loader *l, const struct run *run, struct item *it)
{
    if (it->status == ITEM_FAILED)
        return;
    if (it->kind == ITEM_S3 || it->kind == ITEM_HTTP)
        load_fetched(l, run, it);
    else
        load_file(run, it, 0);
}

struct loader *loader_new(const struct run *run)
{
    (void)run;
    struct loader *l = calloc(1, sizeof *l);
    if (l && !(l->h = curl_easy_init())) {
        free(l);
        l = NULL;
    }
    return l;
}

void loader_free(struct loader *l)
{
    if (!l)
        return;
    fetch_free(&l->f);
    curl_easy_cleanup(l->h);
    free(l);
}

static int vips_started;

int load_start(const struct config *cfg, char *err, size_t errlen)
{
    /* (fixed, so that glibc does not raise it after each large free, as it does by default) */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    int prepares = cfg->pipeline && pipeline_prepares(cfg->pipeline);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, prepares || cpus < 2 ? 2 : (int)(cpus > 64 ? 64 : cpus));
    if (!prepares)
        return 0;
    if (prep_init(1, err, errlen))
        return -1;
    vips_started = 1;
    return 0;
}

void load_stop(void)
{
    if (vips_started)
        prep_shutdown();
    vips_started = 0;
}
