/* load: the load job. Reads an image, within --max-image-bytes and the --max-memory budget
 * (budget.h), and makes what the pipeline's bodies need of it (pipeline_needs): its base64 in
 * it->b64, with slack around it for a body's head and tail (item.h), and/or its bytes in
 * it->raw, and its type in it->mime. With --cache, the BLAKE3 hash of the image's bytes in it->digest (hashed as
 * they are read or fetched: what stands for the image in the answer store's keys). An image that
 * cannot be read fails the item, with why.
 *
 * Where the bytes come from is the item's kind (item.h): a file is read from the disk (a file
 * a folder's walk found is never followed if it became a link since; one a list names is); an
 * S3 object or an http(s) URL is fetched (sources/fetch.h) on the load worker's own easy handle,
 * which no model request ever uses, so S3's signature and an image host's headers go nowhere
 * else.
 *
 * The budget: a file's share (its base64, plus its bytes when a body sends them) is taken before
 * it is read. A fetched image's bytes are held while its base64 is made, so its share counts
 * them too until they are let go; it is taken before the fetch when the source said the size
 * (an S3 listing), else once the bytes have arrived: then --max-memory may be passed by up to one
 * image per load worker. An image larger than the whole budget is still loaded, alone.
 *
 * When the pipeline prepares images (pipeline.h: pipeline_prepares), loading has one more step:
 * the file's header is read first (prepare.h: prep_probe), the budget is taken once for the file,
 * its base64 when a stage sends it as it is, and the estimate of every preparation and cut; then
 * the file is read and one prepared copy is made per distinct "image" spec (it->copies), and the
 * budget keeps only what the item then holds. A fetched image is prepared the same way once its
 * bytes have arrived (the header read from them). A file libvips cannot read, or one of more than
 * --max-pixels pixels, fails its row with the decoder's reason, before any request is sent. */
#ifndef ANNOTATE_LOAD_H
#define ANNOTATE_LOAD_H

#include "flow/item.h"
#include "run.h"

/* One load worker's own state (its fetches' handle and buffers). NULL when out of memory: then
 * images to fetch fail saying so, files are still read. */
struct loader *loader_new(const struct run *run);
void loader_free(struct loader *l); /* NULL is a no-op */

/* Loads the item, whatever its kind. Does nothing to an item already failed. */
void load_item(struct loader *l, const struct run *run, struct item *it);

/* What load_item does with bytes already in memory (a fetch's): takes data over (len bytes,
 * malloc'd; freed or kept as it->raw), makes the base64, the type and the prepared copies, and
 * sets the item's share of the budget: it->charged, when taken before, is kept if it is
 * load_bytes_charge's; a share of another size is given back and taken again, waiting as loading
 * waits. */
void load_bytes(const struct run *run, struct item *it, unsigned char *data, size_t len);

/* The share load_bytes keeps for these bytes; 0 with the item failed when a preparing pipeline's
 * decoder refuses them (or len is 0: load_bytes then fails it). */
uint64_t load_bytes_charge(const struct run *run, struct item *it, const unsigned char *data, size_t len);

/* The share of the budget a fetched image of size bytes takes before it has arrived: its base64
 * (with slack) when a body sends it, and its bytes. */
uint64_t load_charge(const struct run *run, uint64_t size);

/* For a loop that must not block (the curl-multi loader): adds charge bytes of the budget to
 * it->charged if they fit now (0), else takes nothing (-1). */
int load_try_charge(struct item *it, uint64_t charge);

/* load_item for a file, without waiting for the budget: 1 when its share does not fit now (the
 * item is as it was: call again later), else 0 (loaded, or failed with why). */
int load_file_nowait(const struct run *run, struct item *it);

/* Starts what loading needs before the first image, once per process (the main process and each
 * worker process): when the pipeline prepares images (pipeline_prepares), libvips with one
 * worker thread per preparation (a loader thread prepares one image at a time); and, for every
 * pipeline, glibc's malloc told:
 *   - to give large buffers straight back to the system (M_MMAP_THRESHOLD 1 MiB): decoded
 *     images, base64 and answers are large and short-lived, and freed memory that stays in
 *     per-thread arenas would make the process hold more than --max-memory says (measured with
 *     8000 x 6000 photos under a 200 MB budget: peak RSS 288 MB without it, 224 MB with it; 16
 *     endless answers under --strategy threads with --max-memory 40000000: 188 MB without it);
 *   - to keep at most one arena per processor (M_ARENA_MAX; two when preparing, as measured
 *     above), not glibc's eight. With an arena per loader thread, each arena's top was given
 *     back to the system after most images and faulted in again for the next one's base64:
 *     10,000 images of 40 KB through the seed chain (make bench-cache's folder, curl-multi 64,
 *     the project's two-processor machine) took 46,000 page faults and 2.91 s of CPU with
 *     glibc's arenas, 12,000 and 2.39 s with two; medians of 8 runs in turns: 3.09 against 2.63
 *     CPU s, 1,701 against 1,941 images/s, peak RSS 66 against 51 MB (threads, 64 and 512: the
 *     same direction). More than two arenas (a machine with more processors) was not measured.
 * Returns 0, or -1 with err. load_stop shuts libvips down again at exit, for leak checkers. */
int load_start(const struct config *cfg, char *err, size_t errlen);
void load_stop(void);

#endif
