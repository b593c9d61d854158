/* load: the load job. Reads an image's file, within --max-image-bytes and the --max-memory
 * budget (budget.h), and makes what the pipeline's bodies need of it (pipeline_needs): its
 * base64 in it->b64, with slack around it for a body's head and tail (item.h), and/or its bytes
 * in it->raw, and its type in it->mime; with --cache, the SHA-256 of the file's bytes in
 * it->digest (hashed as they are read: what stands for the image in the answer store's keys). A
 * file that cannot be read fails the item, with why.
 *
 * When the pipeline prepares images (pipeline.h: pipeline_prepares), loading has one more step:
 * the file's header is read first (prepare.h: prep_probe), the budget is taken once for the file,
 * its base64 when a stage sends it as it is, and the estimate of every preparation and cut; then
 * the file is read and one prepared copy is made per distinct "image" spec (it->copies), and the
 * budget keeps only what the item then holds. A file libvips cannot read, or one of more than
 * --max-pixels pixels, fails its row with the decoder's reason, before any request is sent. */
#ifndef ANNOTATE_LOAD_H
#define ANNOTATE_LOAD_H

#include "flow/item.h"
#include "run.h"

void load_image(const struct run *run, struct item *it);

/* Starts what loading needs before the first image, once per process (the main process and each
 * worker process): when the pipeline prepares images (pipeline_prepares), libvips with one
 * worker thread per preparation (a loader thread prepares one image at a time), and glibc's
 * malloc told to keep two arenas and to give large buffers straight back to the system
 * (M_MMAP_THRESHOLD 1 MiB): decoded images are large and short-lived, and freed memory that stays
 * in per-thread arenas would make the process hold more than --max-memory says (measured with
 * 8000 x 6000 photos under a 200 MB budget: peak RSS 288 MB without it, 224 MB with it).
 * Returns 0, or -1 with err. load_stop shuts libvips down again at exit, for leak checkers. */
int load_start(const struct config *cfg, char *err, size_t errlen);
void load_stop(void);

#endif
