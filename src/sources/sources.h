/* sources: what a run needs to read images that are not local files, made once at set-up and
 * shared by every load worker: the S3 configuration and a client per bucket, the headers an
 * http(s) image URL is sent with (--image-auth), and how fetches from each kind of store have
 * gone lately (the outage and set-up rules of fetch.h).
 *
 * What callers may rely on:
 *
 *  - sources_new reads the S3 configuration as the AWS CLI does (s3.h). With need_s3 (a bucket
 *    is the run's source, or the list names s3:// objects) a configuration that cannot be read
 *    is an error (exit 2 before anything is sent); without it the reason is kept, and the first
 *    s3:// image meets it as a set-up error (sources_client).
 *
 *  - sources_client gives the client of a bucket, made on first use and kept for the run; any
 *    thread may ask (a lock guards the table). Clients are read-only once made (s3.h), so the
 *    pointer may be used without the lock. At most SOURCES_MAX_BUCKETS buckets per run.
 *
 *  - The image headers are --header's lines expanded (${VAR}, ${file:...}), only with
 *    --image-auth: a model server's token never goes to an image host otherwise. Their memory
 *    is wiped when the sources are freed.
 *
 *  - Nothing here is sent to a worker process: with S3 or a list, images are fetched in the
 *    main process (runner.c), so credentials never leave it. */
#ifndef ANNOTATE_SOURCES_H
#define ANNOTATE_SOURCES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

#include "config.h"
#include "sources/s3.h"

#define SOURCES_MAX_BUCKETS 256

/* How fetches from one kind of store (S3, or http(s) image hosts) have gone: fetch.c's outage
 * and set-up rules read and feed it. */
struct fetch_health {
    atomic_int answered;      /* a fetch has succeeded: later refusals are about their object */
    atomic_int setup_fails;   /* set-up refusals before any success */
    atomic_int fails_in_row;  /* fetches that failed the way an outage does, since the last success */
    _Atomic int64_t down_since_ms; /* monotonic ms since the store counts as down; 0: up */
};

enum { HEALTH_S3 = 0, HEALTH_HTTP = 1 };

struct sources {
    struct s3_config *s3cfg;   /* NULL when it could not be read: s3_why says why */
    char s3_why[400];
    pthread_mutex_t mu;        /* the client table */
    struct bucket_client {
        char *bucket;
        struct s3_client *c;
    } clients[SOURCES_MAX_BUCKETS];
    int n_clients;
    struct curl_slist *image_headers; /* --image-auth: --header's lines, expanded; else NULL */
    struct fetch_health health[2];
};

/* NULL with err (exit 2): with need_s3, an S3 configuration that cannot be read; a --header
 * that cannot be expanded (--image-auth); out of memory. */
struct sources *sources_new(const struct config *cfg, int need_s3, char *err, size_t errlen);

/* The client of bucket[0..len). NULL with err: *setup 1 when S3 is not configured (the run
 * must stop), 0 for a name that is not a bucket's or too many buckets (the image fails). */
const struct s3_client *sources_client(struct sources *s, const char *bucket, size_t len, int *setup, char *err,
                                       size_t errlen);

void sources_free(struct sources *s); /* NULL is a no-op */

#endif
