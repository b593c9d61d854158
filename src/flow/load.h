/* load: the load job. Reads an image's file, within --max-image-bytes and the --max-memory
 * budget (budget.h), and makes what the pipeline's bodies need of it (pipeline_needs): its
 * base64 in it->b64, with slack around it for a body's head and tail (item.h), and/or its bytes
 * in it->raw, and its type in it->mime; with --cache, the SHA-256 of the bytes read in it->digest
 * (hashed as they are read: what stands for the image in the answer store's keys). A file that
 * cannot be read fails the item, with why. */
#ifndef ANNOTATE_LOAD_H
#define ANNOTATE_LOAD_H

#include "flow/item.h"
#include "run.h"

void load_image(const struct run *run, struct item *it);

#endif
