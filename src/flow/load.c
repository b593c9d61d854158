/* load: see load.h. */
#include "flow/load.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/b64.h"
#include "flow/budget.h"
#include "common/mime.h"
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
        item_fail(it, "not a regular file");
    else if (st.st_size == 0)
        item_fail(it, "empty file (0 bytes): not sent");
    else if ((uint64_t)st.st_size > run->cfg->max_image_bytes)
        item_fail(it, "file is %" PRIu64 " bytes, more than --max-image-bytes %" PRIu64 ": not sent",
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
    for (;;) {
        ssize_t fill = fill_chunk(fd, chunk);
        if (fill < 0) {
            item_fail(it, "cannot read the file: %s", strerror(errno));
            item_drop_payload(it);
            return;
        }
        if (got == 0)
            it->mime = mime_of(chunk, (size_t)fill < MIME_HEAD ? (size_t)fill : MIME_HEAD, it->path);
        got += (uint64_t)fill;
        say_alive(run);
        if (got > size) {
            item_fail(it, "the file grew while it was read");
            item_drop_payload(it);
            return;
        }
        if (cap)
            out += b64_encode_with(run->cfg->encoder, chunk, (size_t)fill, it->b64 + out);
        if (fill < CHUNK)
            break;
    }
    if (got != size) {
        item_fail(it, "the file shrank while it was read (%" PRIu64 " of %" PRIu64 " bytes)", got, size);
        item_drop_payload(it);
        return;
    }
    it->b64_len = out;
}

/* A file: opened, checked, its share taken, then read whole or in chunks. With nowait, a share
 * that does not fit now is not waited for: 1, the item as it was. Else 0. */
static int load_file(const struct run *run, struct item *it, int nowait)
{
    uint64_t size;
    int fd = open_image(run, it, &size);
    if (fd < 0)
        return 0;
    unsigned needs = pipeline_needs(run->p);
    uint64_t charge = b64_charge(needs, size) + ((needs & NEED_BYTES) ? size : 0);
    if (nowait && load_try_charge(it, charge)) {
        close(fd);
        return 1;
    }
    if (nowait || charge_budget(run, it, charge) == 0) {
        if (needs & NEED_BYTES)
            read_whole(run, it, fd, size, needs);
        else
            read_encoding(run, it, fd, size, needs);
    }
    close(fd);
    return 0;
}

int load_file_nowait(const struct run *run, struct item *it)
{
    return it->status == ITEM_FAILED ? 0 : load_file(run, it, 1);
}

void load_bytes(const struct run *run, struct item *it, unsigned char *data, size_t len)
{
    unsigned needs = pipeline_needs(run->p);
    if (len == 0) {
        free(data);
        item_fail(it, "empty %s (0 bytes): not sent", it->kind == ITEM_S3 ? "object" : "image");
        item_drop_payload(it);
        return;
    }
    uint64_t charge = load_charge(run, len);
    if (it->charged != charge) { /* the size was not known before, or the object changed since it was listed */
        item_drop_payload(it);
        if (charge_budget(run, it, charge)) {
            free(data);
            return;
        }
    }
    it->mime = mime_of(data, len < MIME_HEAD ? len : MIME_HEAD, it->path);
    if ((needs & NEED_B64) && b64_alloc(it, len)) {
        free(data);
        item_fail(it, "out of memory for a %zu-byte image", len);
        item_drop_payload(it);
        return;
    }
    if (needs & NEED_B64)
        it->b64_len = b64_encode_with(run->cfg->encoder, data, len, it->b64);
    if (needs & NEED_BYTES) {
        it->raw = data;
        it->raw_len = len;
        return;
    }
    free(data); /* only the base64 is sent: the bytes' share goes back */
    budget_give(len);
    it->charged -= len;
}

/* An S3 object or an image URL: its share taken first when its size is known, then fetched on
 * the worker's handle. */
static void load_fetched(struct loader *l, const struct run *run, struct item *it)
{
    const char *what = it->kind == ITEM_S3 ? "object" : "image";
    if (it->size_known && it->size == 0) {
        item_fail(it, "empty %s (0 bytes): not sent", what);
        return;
    }
    if (it->size_known && it->size > run->cfg->max_image_bytes) {
        item_fail(it, "%s is %" PRIu64 " bytes, more than --max-image-bytes %" PRIu64 ": not sent", what, it->size,
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
