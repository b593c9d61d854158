/* s3int: what the s3 files share and callers do not see (the public interface is s3.h). */
#ifndef ANNOTATE_S3INT_H
#define ANNOTATE_S3INT_H

#include <stddef.h>
#include <curl/curl.h>
#include "sources/s3.h"

/* Credentials, region and endpoint, as s3_config_load found them. key_id, secret and token are
 * wiped when freed. */
struct s3_config {
    char *key_id, *secret, *token; /* token NULL when none */
    char region[64];
    char *endpoint;                /* NULL on AWS; else without a trailing '/' */
    char cred_source[400];         /* "the environment" or "profile "x" in PATH" */
    char region_source[64];        /* "AWS_REGION", "profile "x" in PATH" (cut), "the default" */
};

/* One bucket's addressing and signing material; read-only once made. */
struct s3_client {
    char *bucket;
    char *base;         /* scheme://host[:port][/path] of the bucket: an object is base/KEY, the
                           listing base?QUERY (virtual-hosted: base ends in the host, and a '/' is
                           added before the query) */
    int virtual_host;   /* base names the bucket in its host */
    char *sigv4;        /* "aws:amz:REGION:s3" */
    char *key_id;       /* wiped when freed */
    char *secret;       /* wiped when freed */
    char *token_header; /* "x-amz-security-token: TOKEN", or NULL; wiped when freed */
};

/* SHA-256 of the empty string: the payload hash of every request this module sends. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Wipes the string (strlen bytes) and frees it. NULL is a no-op. */
void s3_wipe_free(char *p);

/* 1 when s[0..n) is valid UTF-8 (no overlong forms, no surrogates). */
int s3_utf8_ok(const char *s, size_t n);

/* s[0..n) as one printable line into out (cap bytes, NUL-terminated): line breaks and tabs as
 * spaces, other control characters as '?', cut to fit without leaving half a UTF-8 character.
 * Every text S3 (or libcurl, for a request to S3) gives goes through it: before the cut, the
 * run's secrets (common/secrets.h) and every run of 64 or more hex digits (a signature, which
 * S3's SignatureDoesNotMatch echoes) are replaced with SECRETS_MARK. */
void s3_printable(char *out, size_t cap, const char *s, size_t n);

/* The bucket name rules of s3_url_parse; and whether a name can be a host name label (lower-case
 * letters, digits, '-': virtual-hosted addressing). */
int s3_bucket_name_ok(const char *b, size_t n);
int s3_bucket_is_dns(const char *b);

/* Puts a signed GET of url (taken over: freed by the request) on h, the 2xx body going to dst.
 * 0, or -1 with a message in err (url is freed then too). */
int s3_req_start(struct s3_req *r, const struct s3_client *c, CURL *h, char *url, struct s3_buf *dst, char *err,
                 size_t errlen);

#endif
