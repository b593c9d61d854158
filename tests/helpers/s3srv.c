/* s3srv: see s3srv.h. */
#include "s3srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "pyserver.h"
#include "sources/s3.h"
#include "tree.h"
#include "util.h"

const char *server_script(const char *name)
{
    static char buf[4][1024];
    static int turn;
    char *b = buf[turn++ % 4];
    snprintf(b, sizeof buf[0], "tests/servers/%s", name);
    if (access(b, R_OK) == 0)
        return b;
    snprintf(b, sizeof buf[0], "%s", __FILE__);
    char *slash = strrchr(b, '/');
    snprintf(slash ? slash + 1 : b, sizeof buf[0] - (size_t)(slash ? slash + 1 - b : 0), "../servers/%s", name);
    return b;
}

const char *s3srv_node_modules(void)
{
    const char *m = getenv("S3RVER_NODE_MODULES");
    return m && *m ? m : "build/node/node_modules";
}

int s3srv_start(struct s3srv *s, const char *const *buckets)
{
    memset(s, 0, sizeof *s);
    if (make_tmpdir(s->datadir, sizeof s->datadir, "s3rver") != 0)
        return -1;
    /* s3rver 3.7.1 makes continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider */
    const char *argv[16] = {"node", "--openssl-legacy-provider", server_script("s3rver.js"), s3srv_node_modules(),
                            s->datadir};
    int n = 5;
    for (int i = 0; buckets[i] && n < 15; i++)
        argv[n++] = buckets[i];
    argv[n] = NULL;
    if (listener_start(&s->s3rver, argv, 0) != 0) {
        fprintf(stderr, "s3srv: s3rver did not start (is it installed in %s? make s3rver)\n", s3srv_node_modules());
        s3srv_stop(s);
        return -1;
    }
    const char *pargv[] = {pyserver_python(), server_script("s3sig.py"), "--key", S3SRV_KEY, "--secret",
                           S3SRV_SECRET, "--upstream", s->s3rver.base_url, NULL};
    if (listener_start(&s->proxy, pargv, 0) != 0) {
        fprintf(stderr, "s3srv: tests/servers/s3sig.py did not start (python3-botocore?)\n");
        s3srv_stop(s);
        return -1;
    }
    return 0;
}

void s3srv_stop(struct s3srv *s)
{
    mock_stop(&s->proxy);
    mock_stop(&s->s3rver);
    if (s->datadir[0]) {
        tree_rm(s->datadir);
        s->datadir[0] = '\0';
    }
}

static int object_request(const struct s3srv *s, const char *method, const char *bucket, const char *key,
                          const void *body, size_t len)
{
    char url[4096], *enc = malloc(3 * strlen(key) + 1);
    if (!enc)
        return -1;
    s3_encode(key, strlen(key), 1, enc);
    snprintf(url, sizeof url, "%s/%s/%s", s->s3rver.base_url, bucket, enc);
    free(enc);
    struct http_opts o = {.method = method, .content_type = "application/octet-stream"};
    long status = 0;
    int rc = http_request(url, &o, body, len, &status, NULL, NULL);
    int ok = rc == 0 && (status == 200 || status == 204);
    if (!ok)
        fprintf(stderr, "s3srv: %s %s: curl %d, HTTP %ld\n", method, url, rc, status);
    return ok ? 0 : -1;
}

int s3srv_put(const struct s3srv *s, const char *bucket, const char *key, const void *body, size_t len)
{
    return object_request(s, "PUT", bucket, key, body ? body : "", len);
}

int s3srv_delete(const struct s3srv *s, const char *bucket, const char *key)
{
    return object_request(s, "DELETE", bucket, key, NULL, 0);
}

long s3srv_stat(const struct s3srv *s, const char *dotted)
{
    char url[160];
    snprintf(url, sizeof url, "%s/__stats", s->proxy.base_url);
    long status = 0, v = -1;
    char *body = NULL;
    if (http_request(url, NULL, NULL, 0, &status, &body, NULL) == 0 && status == 200) {
        cJSON *j = cJSON_Parse(body);
        v = mock_stat(j, dotted);
        cJSON_Delete(j);
    }
    free(body);
    return v;
}

int s3srv_slowdown(const struct s3srv *s, int n)
{
    char url[160];
    snprintf(url, sizeof url, "%s/__fault?slowdown=%d", s->proxy.base_url, n);
    long status = 0;
    http_post(url, "", 0, &status, NULL);
    return status == 200 ? 0 : -1;
}

void s3srv_env(const struct s3srv *s, const char *secret)
{
    s3srv_env_clear();
    setenv("AWS_ACCESS_KEY_ID", S3SRV_KEY, 1);
    setenv("AWS_SECRET_ACCESS_KEY", secret ? secret : S3SRV_SECRET, 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("AWS_ENDPOINT_URL", s->proxy.base_url, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
    setenv("AWS_CONFIG_FILE", "/dev/null", 1);
}

void s3srv_env_clear(void)
{
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                                       "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
                                       "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE", NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}
