/* ipc: everything that passes between annotate processes, in one place.
 *
 * 1. Worker processes (the processes strategy, drivers/processes.c).
 *    The parent starts each worker as /proc/self/exe with argv {"annotate", IPC_WORKER_ARG},
 *    so a worker always runs the parent's own binary. main() recognises that argument and
 *    nothing else decides whether a process is a worker. A worker never reads the command line,
 *    the environment's options or the pipeline file: all it knows comes from its parent.
 *      stdin   frames from the parent: first one configuration frame, then item frames;
 *              end of file means "stop".
 *      stdout  frames to the parent: one item frame back for each item frame received, in
 *              order. (The worker moves its stdout to a private descriptor and points fd 1 at
 *              stderr, so a stray printf cannot corrupt the stream.)
 *      stderr  the parent's stderr: messages for the user.
 *    A frame is a u32 payload length (host byte order: both ends are the same binary on the same
 *    machine), then the payload; payloads are at most IPC_MAX_FRAME bytes.
 *    - Configuration frame: JSON text. {"args": the options a worker is sent (the rows of
 *      config.h's table marked for workers) as a command line, ["--timeout-ms", "30000", ...],
 *      written by config_args and read back by the same parser as the parent's command line (the
 *      other fields of the worker's struct config keep their defaults), "dir": the folder,
 *      "pipeline": {"text": the pipeline file's JSON as the parent parsed it, "source": its name,
 *      "cli_headers": the --header lines as given, "stages": [{"url": the resolved URL,
 *      "shown_url", "replicas": [[URL, shown], ...], "headers": ["Name: value", ...]}, ...]},
 *      "jobs": JOB_* bits, "shared_fd": N, "ratelimit_fd": N or -1}. Header values are the
 *      parent's expanded ones (they may hold tokens: the buffers are wiped after use).
 *    - Item frame: see ipc_encode_item. The stage count must equal the pipeline's: a worker
 *      refuses a frame that disagrees, so the two ends can never walk different stage tables.
 *    The descriptors named in the configuration frame are inherited across exec:
 *      shared_fd     the run's shared page (shared.h): requests in flight;
 *      ratelimit_fd  the --max-rps bucket (ratelimit.h).
 *
 * 2. The benchmark's sample channel (bench/sampler.c writes it, bench/point.c reads it).
 *    `annotate bench` runs each point as a child annotate run with IPC_BENCH_FD_ENV naming an
 *    inherited pipe and IPC_BENCH_INTERVAL_ENV the interval in seconds; the child writes one
 *    JSON object a line per interval, and one more with "final": true once every row is
 *    written: {"t": seconds since the run started, "ok", "failed", "requests", "retries":
 *    counts of the rows written, "request_ms": {"p50", "p90", "p99", "max"}, "image_ms":
 *    {"p50", "p99"}, "errors": [{"stage", "reason", "count"}] (the three most common failures,
 *    errtally.h)}. Each line is under PIPE_BUF, so it arrives whole. */
#ifndef ANNOTATE_IPC_H
#define ANNOTATE_IPC_H

#include <stddef.h>
#include <stdint.h>
#include "options.h"
#include "flow/item.h"

#define IPC_WORKER_ARG "--worker-process"
#define IPC_BENCH_FD_ENV "ANNOTATE_BENCH_FD"
#define IPC_BENCH_INTERVAL_ENV "ANNOTATE_BENCH_INTERVAL"
#define IPC_MAX_FRAME (1u << 30)

/* A growing frame buffer. Everything is checked: an encoder that runs out of memory marks the
 * buffer failed (oom), and the caller treats the frame as not made. */
struct ipc_buf {
    unsigned char *d;
    size_t len, cap, pos;
    int oom;
};

void ipc_buf_free(struct ipc_buf *b);

/* Lets an empty buffer's memory go when it is larger than IPC_BUF_KEEP: a frame that carried an
 * image must not stay held by its buffer, outside --max-memory, until the next one. */
#define IPC_BUF_KEEP (1u << 20)
void ipc_buf_trim(struct ipc_buf *b);

/* Reads one frame into b (payload only, b->pos reset). 0, or -1 on end of file or error. */
int ipc_read_frame(int fd, struct ipc_buf *b);

/* The whole frame (length prefix included) of an item: everything a stage may have changed.
 * with_payload: include the base64 text, the bytes, the prepared copies, and their shares of
 * --max-memory (item_charge): the item decoded on the other side holds those shares, which its
 * process counts (budget_force) or takes over from the sender (budget_adopt). Returns 0, or -1
 * when out of memory. */
int ipc_encode_item(struct ipc_buf *b, const struct item *it, int with_payload);

/* The item in a frame's payload, or NULL when the frame is malformed, its stage count is not
 * n_stages, or memory ran out. */
struct item *ipc_decode_item(struct ipc_buf *b, int n_stages);

/* The configuration frame (length prefix included): the options, the pipeline as resolved, and
 * the secrets this process holds (common/secrets.h), which the worker adds to its own. Returns
 * 0, or -1 when out of memory. */
int ipc_encode_config(struct ipc_buf *b, const struct config *cfg, unsigned jobs, int shared_fd,
                      int ratelimit_fd);

/* A worker's configuration, decoded from its first frame. Owns everything it points to. A worker
 * has the options its parent was given, for every row marked for workers; the rest are the
 * defaults. */
struct ipc_worker_config {
    struct config cfg;      /* cfg.pipeline is owned here */
    unsigned jobs;
    int shared_fd, ratelimit_fd;
    void *storage;          /* what cfg's strings point into */
};

/* Returns 0, or -1 with err. */
int ipc_decode_config(struct ipc_buf *b, struct ipc_worker_config *out, char *err, size_t errlen);
void ipc_worker_config_free(struct ipc_worker_config *w);

#endif
