/* load: see load.h. */
#include "flow/load.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/b64.h"
#include "common/hash.h"
#include "flow/budget.h"
#include "common/mime.h"

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
     * must not block on it or follow it. */
    int fd = open(it->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
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

/* Takes the image's share of --max-memory before anything is read: loading waits while other
 * images hold the budget. 0, or -1 with the item failed (the run was stopped: no row). */
static int charge_budget(const struct run *run, struct item *it, unsigned needs, uint64_t size)
{
    uint64_t charge = ((needs & NEED_B64) ? b64_encoded_len((size_t)size) + 1 + 2 * B64_SLACK : 0) +
                      ((needs & NEED_BYTES) ? size : 0);
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

void load_image(const struct run *run, struct item *it)
{
    if (it->status == ITEM_FAILED)
        return;
    uint64_t size;
    int fd = open_image(run, it, &size);
    if (fd < 0)
        return;
    unsigned needs = pipeline_needs(run->p);
    if (charge_budget(run, it, needs, size) == 0) {
        if (needs & NEED_BYTES)
            read_whole(run, it, fd, size, needs);
        else
            read_encoding(run, it, fd, size, needs);
    }
    close(fd);
}
