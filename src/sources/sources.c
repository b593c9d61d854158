/* sources: see sources.h. */
#include "sources/sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secrets.h"
#include "pipeline/headers.h"

/* --header's lines, expanded, as a list for image URLs (--image-auth). 0, or -1 with err. */
static int image_headers(struct sources *s, const struct config *cfg, char *err, size_t errlen)
{
    struct header_sources hs;
    if (header_sources_expand(cfg->pipeline, "the pipeline's \"defaults\"", &hs, err, errlen))
        return -1;
    int rc = 0;
    for (int i = 0; i < hs.n_cli && rc == 0; i++) {
        /* sent to hosts that are not the model servers: every value is kept out of messages */
        size_t nl = strcspn(hs.cli[i], ":");
        const char *v = hs.cli[i] + nl + (hs.cli[i][nl] ? 1 : 0);
        v += strspn(v, " \t");
        secrets_add(v, strlen(v));
        secrets_add_credential_header(hs.cli[i]);
        struct curl_slist *l = curl_slist_append(s->image_headers, hs.cli[i]);
        if (l)
            s->image_headers = l;
        else
            rc = -1;
    }
    header_sources_wipe(&hs);
    if (rc)
        snprintf(err, errlen, "out of memory");
    return rc;
}

struct sources *sources_new(const struct config *cfg, int need_s3, char *err, size_t errlen)
{
    struct sources *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->s3cfg = s3_config_load(NULL, NULL, s->s3_why, sizeof s->s3_why);
    if (!s->s3cfg && need_s3) {
        snprintf(err, errlen, "S3: %s", s->s3_why);
        sources_free(s);
        return NULL;
    }
    if (cfg->image_auth && image_headers(s, cfg, err, errlen)) {
        sources_free(s);
        return NULL;
    }
    return s;
}

const struct s3_client *sources_client(struct sources *s, const char *bucket, size_t len, int *setup, char *err,
                                       size_t errlen)
{
    *setup = 0;
    if (!s->s3cfg) {
        *setup = 1;
        snprintf(err, errlen, "S3 is not configured: %s", s->s3_why);
        return NULL;
    }
    const struct s3_client *found = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_clients && !found; i++)
        if (strlen(s->clients[i].bucket) == len && !memcmp(s->clients[i].bucket, bucket, len))
            found = s->clients[i].c;
    if (!found && s->n_clients == SOURCES_MAX_BUCKETS) {
        snprintf(err, errlen, "more than %d buckets in one run", SOURCES_MAX_BUCKETS);
    } else if (!found) {
        char *name = strndup(bucket, len);
        struct s3_client *c = name ? s3_client_new(s->s3cfg, name, err, errlen) : NULL;
        if (c) {
            s->clients[s->n_clients++] = (struct bucket_client){name, c};
            found = c;
        } else {
            if (!name)
                snprintf(err, errlen, "out of memory");
            free(name);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void sources_free(struct sources *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_clients; i++) {
        free(s->clients[i].bucket);
        s3_client_free(s->clients[i].c);
    }
    for (struct curl_slist *l = s->image_headers; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(s->image_headers);
    s3_config_free(s->s3cfg);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
