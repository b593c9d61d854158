/* s3srv: an S3-compatible store for the end-to-end tests of sources (suite "sources"): s3rver
 * (npm, tests/servers/s3rver.js) holding the objects, behind tests/servers/s3sig.py --upstream,
 * which checks each request's SigV4 signature with botocore before it forwards it (s3rver
 * itself checks none). Both bind 127.0.0.1 on a free port; s3srv_stop stops them by PID and
 * removes the data folder. Objects are put straight into s3rver (it takes unsigned requests).
 *
 * Also the scripts under tests/servers, found from the working directory (the repository root,
 * where make check runs the tests) or next to this file. */
#ifndef ANNOTATE_TESTS_S3SRV_H
#define ANNOTATE_TESTS_S3SRV_H

#include <stddef.h>
#include "proc.h"

#define S3SRV_KEY "AKIAIOSFODNN7EXAMPLE"
#define S3SRV_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

struct s3srv {
    struct mock_proc s3rver, proxy; /* requests go to proxy.base_url */
    char datadir[512];
};

/* tests/servers/NAME. One of 4 static buffers used in turn. */
const char *server_script(const char *name);

/* $S3RVER_NODE_MODULES, or build/node/node_modules (make s3rver installs it there). */
const char *s3srv_node_modules(void);

/* Starts s3rver with the buckets (NULL-terminated) and the checking proxy (S3SRV_KEY,
 * S3SRV_SECRET, region us-east-1). 0, or -1 with nothing left running. */
int s3srv_start(struct s3srv *s, const char *const *buckets);
void s3srv_stop(struct s3srv *s);

/* PUT or DELETE an object (the key encoded as S3 expects), straight into s3rver. 0 or -1. */
int s3srv_put(const struct s3srv *s, const char *bucket, const char *key, const void *body, size_t len);
int s3srv_delete(const struct s3srv *s, const char *bucket, const char *key);

/* The proxy's counters (GET /__stats): "requests", "verified", "rejected.CODE"; -1 when missing. */
long s3srv_stat(const struct s3srv *s, const char *dotted);

/* The proxy's next n signed requests get 503 SlowDown. 0 or -1. */
int s3srv_slowdown(const struct s3srv *s, int n);

/* Sets (or with value NULL, unsets) the AWS_* variables a run reads to reach the proxy: the
 * key, secret (secret NULL: the right one), region and endpoint; HOME's ~/.aws is not read. */
void s3srv_env(const struct s3srv *s, const char *secret);
void s3srv_env_clear(void);

#endif
