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
#include "flow/budget.h"
#include "common/mime.h"

static void budget_alive(const void *arg)
{
    const struct run *run = arg;
    if (run->alive)
        run->alive(run);
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

static int budget_stop(const void *arg)
{
    const struct run *run = arg;
    return run_stop_state(run) == RUN_ABORT;
}

/* Reads the file in chunks of a multiple of 3 bytes and encodes each straight into the item's
 * base64 buffer: the image is never held raw in full, and never encoded twice. */
void load_image(const struct run *run, struct item *it)
{
    if (it->status == ITEM_FAILED)
        return;
    /* O_NONBLOCK|O_NOFOLLOW: if the file was swapped for a FIFO or a link since the scan, we
     * must not block on it or follow it. */
    int fd = open(it->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        item_fail(it, "cannot open the file: %s", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        item_fail(it, "cannot stat the file: %s", strerror(errno));
        close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        item_fail(it, "not a regular file");
        close(fd);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0) {
        item_fail(it, "empty file (0 bytes): not sent");
        close(fd);
        return;
    }
    if (size > run->cfg->max_image_bytes) {
        item_fail(it, "file is %" PRIu64 " bytes, more than --max-image-bytes %" PRIu64 ": not sent", size,
                  run->cfg->max_image_bytes);
        close(fd);
        return;
    }
    unsigned needs = pipeline_needs(run->p);
    /* The image's share of --max-memory, taken before anything is read: loading waits while
     * other images hold the budget. */
    uint64_t charge = ((needs & NEED_B64) ? b64_encoded_len((size_t)size) + 1 + 2 * B64_SLACK : 0) + ((needs & NEED_BYTES) ? size : 0);
    if (budget_take(charge, budget_alive, budget_stop, run)) {
        item_fail(it, "not loaded: the run was stopped");
        it->no_row = 1; /* not the image's fault: --resume runs it */
        close(fd);
        return;
    }
    it->charged = charge;
    if (needs & NEED_BYTES) {
        /* The bytes themselves are sent: kept whole, and base64 made from them if a body also
         * wants that. */
        if (!(it->raw = malloc((size_t)size))) {
            item_fail(it, "out of memory for a %" PRIu64 "-byte image", size);
            close(fd);
            return;
        }
        size_t got = 0;
        for (;;) {
            ssize_t r = read(fd, it->raw + got, (size_t)size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                item_fail(it, "cannot read the file: %s", strerror(errno));
                goto fail;
            }
            if (r == 0)
                break;
            got += (size_t)r;
            if (run->alive)
                run->alive(run);
            if (got == (size_t)size) {
                char extra;
                if (read(fd, &extra, 1) > 0) {
                    item_fail(it, "the file grew while it was read");
                    goto fail;
                }
                break;
            }
        }
        close(fd);
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
        return;
    }
    size_t cap = (needs & NEED_B64) ? b64_encoded_len((size_t)size) : 0;
    if (cap && b64_alloc(it, (size_t)size)) {
        item_fail(it, "out of memory for a %" PRIu64 "-byte image", size);
        close(fd);
        return;
    }
    enum { CHUNK = 3 * 21846 }; /* 64 KiB, a multiple of 3 */
    static _Thread_local unsigned char chunk[CHUNK];
    size_t out = 0;
    uint64_t got = 0;
    for (;;) {
        size_t fill = 0;
        while (fill < CHUNK) {
            ssize_t r = read(fd, chunk + fill, CHUNK - fill);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                item_fail(it, "cannot read the file: %s", strerror(errno));
                goto fail;
            }
            if (r == 0)
                break;
            fill += (size_t)r;
        }
        if (got == 0)
            it->mime = mime_of(chunk, fill < MIME_HEAD ? fill : MIME_HEAD, it->path);
        got += fill;
        if (run->alive)
            run->alive(run); /* a slow disk is not a stuck worker */
        if (got > size) {
            item_fail(it, "the file grew while it was read");
            goto fail;
        }
        if (cap)
            out += b64_encode_with(run->cfg->encoder, chunk, fill, it->b64 + out);
        if (fill < CHUNK)
            break;
    }
    close(fd);
    if (got != size) {
        item_fail(it, "the file shrank while it was read (%" PRIu64 " of %" PRIu64 " bytes)", got, size);
        item_drop_payload(it);
        return;
    }
    it->b64_len = out;
    return;
fail:
    close(fd);
    item_drop_payload(it);
}
