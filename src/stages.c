/* stages: the load and query stages as the executors see them. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "http.h"

/* Reads the file in chunks of a multiple of 3 bytes and encodes each straight into the item's
 * base64 buffer: the image is never held raw in full, and never encoded twice. */
void stage_load(const struct run *run, struct item *it)
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
    size_t cap = b64_encoded_len((size_t)size);
    it->b64 = malloc(cap + 1);
    if (!it->b64) {
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
        got += fill;
        if (got > size) {
            item_fail(it, "the file grew while it was read");
            goto fail;
        }
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

static void load_run(void *w, const struct run *run, struct item *it)
{
    (void)w;
    stage_load(run, it);
}

const struct stage_fn STAGE_LOAD = {"load", NULL, NULL, load_run};

static void *query_new(const struct run *run)
{
    return http_worker_new(run);
}

static void query_free(void *w)
{
    http_worker_free(w);
}

static void query_run(void *w, const struct run *run, struct item *it)
{
    (void)run;
    http_worker_query(w, it);
    item_drop_payload(it); /* the writer does not need it */
}

const struct stage_fn STAGE_QUERY = {"query", query_new, query_free, query_run};

struct exec *exec_start(enum strategy s, const struct run *run, const struct stage_fn *const *fns,
                        int nfns, int workers, queue *in, queue *out, char *err, size_t errlen)
{
    switch (s) {
    case STRAT_SERIAL:
        return exec_threads_start(run, fns, nfns, 1, in, out, err, errlen);
    case STRAT_THREADS:
        return exec_threads_start(run, fns, nfns, workers, in, out, err, errlen);
    case STRAT_PROCESSES:
        return exec_proc_start(run, fns, nfns, workers, in, out, err, errlen);
    case STRAT_CURL_MULTI:
        return exec_multi_start(run, in, out, err, errlen);
    default:
        return NULL;
    }
}

void exec_join(struct exec *e)
{
    if (e)
        e->join(e);
}
