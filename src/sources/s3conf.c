/* s3conf: the configuration and credentials of s3.h, read as the AWS CLI and SDKs read them:
 * the environment, then the shared credentials file, then the config file. Files are INI text
 * read whole (at most S3_FILE_MAX bytes) into a buffer that is wiped when done; a value is
 * copied out of it only when it is used. */
#include "sources/s3.h"
#include "sources/s3int.h"
#include "common/secrets.h"
#include "common/url.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/parser.h>

#define S3_FILE_MAX (1024 * 1024)
#define S3_TOKEN_MAX (16 * 1024)

void s3_wipe_free(char *p)
{
    if (!p)
        return;
    explicit_bzero(p, strlen(p));
    free(p);
}

struct env {
    s3_getenv_fn get;
    void *arg;
};

/* A variable's value; "" counts as unset (NULL), as in the SDKs. */
static const char *env_get(const struct env *e, const char *name)
{
    const char *v = e->get ? e->get(e->arg, name) : getenv(name);
    return v && *v ? v : NULL;
}

/* ---- the shared files ---- */

struct ini {
    char path[512];
    char *text; /* NUL-terminated, wiped when freed; NULL when the file does not exist */
    size_t len;
};

static void ini_free(struct ini *f)
{
    if (f->text)
        explicit_bzero(f->text, f->len);
    free(f->text);
    f->text = NULL;
}

/* The path of a shared file: the variable's value (a leading ~/ is HOME's), else HOME/rel. An
 * empty path when neither is known. */
static void ini_path(const struct env *e, const char *var, const char *rel, char *out, size_t cap)
{
    const char *v = env_get(e, var), *home = env_get(e, "HOME");
    if (v && v[0] == '~' && v[1] == '/' && home)
        snprintf(out, cap, "%s/%s", home, v + 2);
    else if (v)
        snprintf(out, cap, "%s", v);
    else if (home)
        snprintf(out, cap, "%s/%s", home, rel);
    else
        out[0] = '\0';
}

/* Reads f->path whole. 0 (f->text NULL when the file does not exist), or -1 with a message. */
static int ini_read(struct ini *f, char *err, size_t errlen)
{
    f->text = NULL;
    f->len = 0;
    if (!f->path[0])
        return 0;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "cannot read %s: %s", f->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode)) { /* /dev/null: no file, as the SDKs read it */
        close(fd);
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > S3_FILE_MAX) {
        snprintf(err, errlen, "%s: not a regular file of at most %d bytes", f->path, S3_FILE_MAX);
        close(fd);
        return -1;
    }
    f->text = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (f->text && got < (size_t)st.st_size) {
        ssize_t k = read(fd, f->text + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (!f->text || got != (size_t)st.st_size) {
        f->len = got;
        ini_free(f);
        snprintf(err, errlen, "cannot read %s", f->path);
        return -1;
    }
    f->text[got] = '\0';
    f->len = got;
    return 0;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r'))
        (*n)--;
}

/* Whether a section header's name (between the brackets) names the profile. In the config file
 * a profile is "[profile NAME]", the default one also "[default]"; in the credentials file it is
 * "[NAME]". */
static int section_is(const char *s, size_t n, const char *profile, int config_file)
{
    trim(&s, &n);
    if (config_file) {
        if (n == 7 && !memcmp(s, "default", 7) && !strcmp(profile, "default"))
            return 1;
        if (n < 8 || memcmp(s, "profile", 7) != 0 || (s[7] != ' ' && s[7] != '\t'))
            return 0;
        s += 8, n -= 8;
        trim(&s, &n);
    }
    return n == strlen(profile) && !memcmp(s, profile, n);
}

/* Finds key (case-insensitive) in the profile's section of f. Returns 1 with *val (not
 * NUL-terminated, trimmed) and *vlen, else 0. With key NULL: 1 when the section exists.
 * Indented lines continue the previous value (nested settings): never a key here. */
static int ini_find(const struct ini *f, const char *profile, int config_file, const char *key, const char **val,
                    size_t *vlen)
{
    int in = 0;
    for (const char *p = f->text; p && *p;) {
        const char *eol = strchr(p, '\n'), *line = p;
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        p = eol ? eol + 1 : p + n;
        if (n == 0 || line[0] == ' ' || line[0] == '\t' || line[0] == '#' || line[0] == ';' || line[0] == '\r')
            continue;
        if (line[0] == '[') {
            const char *close = memchr(line, ']', n);
            in = close && section_is(line + 1, (size_t)(close - line - 1), profile, config_file);
            if (in && !key)
                return 1;
            continue;
        }
        size_t k = strcspn(line, "=:\n");
        if (!in || k >= n)
            continue;
        const char *name = line;
        size_t nlen = k;
        trim(&name, &nlen);
        if (nlen != strlen(key) || strncasecmp(name, key, nlen) != 0)
            continue;
        *val = line + k + 1;
        *vlen = n - k - 1;
        trim(val, vlen);
        return 1;
    }
    return 0;
}

/* ---- checks of values ---- */

/* 1 when every byte is printable ASCII other than space and the bytes of bad. */
static int plain_ascii(const char *s, size_t n, const char *bad)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || strchr(bad, s[i]))
            return 0;
    return 1;
}

/* Copies the three credentials in, after checking them; where names their source for messages. */
static int set_creds(struct s3_config *c, const char *key, size_t klen, const char *sec, size_t slen,
                     const char *tok, size_t tlen, const char *where, char *err, size_t errlen)
{
    if (klen == 0 || klen > 128 || !plain_ascii(key, klen, "/,:;=")) {
        snprintf(err, errlen, "the access key ID from %s is not 1 to 128 letters, digits or punctuation", where);
        return -1;
    }
    if (slen == 0 || slen > 256 || !plain_ascii(sec, slen, "")) {
        snprintf(err, errlen, "the secret access key from %s is not 1 to 256 printable ASCII characters", where);
        return -1;
    }
    if (tok && (tlen > S3_TOKEN_MAX || !plain_ascii(tok, tlen, ""))) {
        snprintf(err, errlen, "the session token from %s is not at most %d printable ASCII characters", where,
                 S3_TOKEN_MAX);
        return -1;
    }
    c->key_id = strndup(key, klen);
    c->secret = strndup(sec, slen);
    c->token = tok && tlen ? strndup(tok, tlen) : NULL;
    if (!c->key_id || !c->secret || (tok && tlen && !c->token)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    secrets_add(c->secret, slen); /* never in a message, nor the session token */
    if (c->token)
        secrets_add(c->token, tlen);
    snprintf(c->cred_source, sizeof c->cred_source, "%s", where);
    return 0;
}

static int creds_from_env(struct s3_config *c, const struct env *e, char *err, size_t errlen)
{
    const char *k = env_get(e, "AWS_ACCESS_KEY_ID"), *s = env_get(e, "AWS_SECRET_ACCESS_KEY");
    const char *t = env_get(e, "AWS_SESSION_TOKEN");
    if (!t)
        t = env_get(e, "AWS_SECURITY_TOKEN");
    if (!k && !s)
        return 1;
    if (!k || !s) {
        snprintf(err, errlen, "%s is set but %s is not: set both, or neither to use a profile",
                 k ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY", k ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    return set_creds(c, k, strlen(k), s, strlen(s), t, t ? strlen(t) : 0, "the environment",
                     err, errlen);
}

/* Credentials from the profile's section of f: 0, 1 when it has none, -1 on an error. */
static int creds_from_file(struct s3_config *c, const struct ini *f, const char *profile, int config_file, char *err,
                           size_t errlen)
{
    const char *k = NULL, *s = NULL, *t = NULL;
    size_t kl = 0, sl = 0, tl = 0;
    int hk = f->text && ini_find(f, profile, config_file, "aws_access_key_id", &k, &kl) && kl;
    int hs = f->text && ini_find(f, profile, config_file, "aws_secret_access_key", &s, &sl) && sl;
    if (!hk && !hs)
        return 1;
    char where[sizeof c->cred_source];
    snprintf(where, sizeof where, "profile \"%.64s\" in %.300s", profile, f->path);
    if (!hk || !hs) {
        snprintf(err, errlen, "%s has aws_%s but not aws_%s", where, hk ? "access_key_id" : "secret_access_key",
                 hk ? "secret_access_key" : "access_key_id");
        return -1;
    }
    if (!(ini_find(f, profile, config_file, "aws_session_token", &t, &tl) && tl))
        if (!(ini_find(f, profile, config_file, "aws_security_token", &t, &tl) && tl))
            t = NULL;
    return set_creds(c, k, kl, s, sl, t, tl, where, err, errlen);
}

/* No credentials anywhere: says what the profile needs that this module does not do, if so. */
static void no_creds(const struct ini *conf, const char *profile, char *err, size_t errlen)
{
    static const char *const unsupported[] = {"role_arn", "sso_session", "sso_start_url", "credential_process",
                                              "web_identity_token_file", NULL};
    const char *v;
    size_t vl;
    for (int i = 0; unsupported[i]; i++)
        if (conf->text && ini_find(conf, profile, 1, unsupported[i], &v, &vl)) {
            snprintf(err, errlen,
                     "profile \"%.64s\" in %.300s gets its credentials through %s, which annotate does not do: "
                     "export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (aws configure "
                     "export-credentials --format env prints them)", profile, conf->path, unsupported[i]);
            return;
        }
    snprintf(err, errlen,
             "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile \"%.64s\" "
             "aws_access_key_id and aws_secret_access_key in the shared credentials file (AWS_PROFILE chooses the "
             "profile, AWS_SHARED_CREDENTIALS_FILE the file)", profile);
}

/* ---- region and endpoint ---- */

static int region_ok(const char *r, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return 0;
    return 1;
}

static int take_region(struct s3_config *c, const struct env *e, const struct ini *conf, const char *profile,
                       char *err, size_t errlen)
{
    char src[sizeof c->region_source];
    const char *v = env_get(e, "AWS_REGION");
    size_t n = 0;
    snprintf(src, sizeof src, "AWS_REGION");
    if (!v && (v = env_get(e, "AWS_DEFAULT_REGION")))
        snprintf(src, sizeof src, "AWS_DEFAULT_REGION");
    if (v)
        n = strlen(v);
    else if (conf->text && ini_find(conf, profile, 1, "region", &v, &n) && n)
        snprintf(src, sizeof src, "the config file");
    else
        v = S3_DEFAULT_REGION, n = strlen(v), snprintf(src, sizeof src, "the default");
    if (!region_ok(v, n)) {
        if (!strcmp(src, "the config file"))
            snprintf(err, errlen, "the region of profile \"%.64s\" in %.300s is not a region name (lower-case "
                     "letters, digits, '-')", profile, conf->path);
        else
            snprintf(err, errlen, "%s is not a region name (lower-case letters, digits, '-')", src);
        return -1;
    }
    memcpy(c->region, v, n);
    c->region[n] = '\0';
    memcpy(c->region_source, src, sizeof src);
    return 0;
}

/* Checks an endpoint URL: http:// or https://, a host, no user, query, fragment, space or
 * control character, and what url_check checks (an empty port, say). Returns the copy without trailing slashes, or NULL with a message. */
static char *endpoint_copy(const char *v, size_t n, const char *src, char *err, size_t errlen)
{
    char shown[160];
    s3_printable(shown, sizeof shown, v, n);
    size_t skip = n >= 7 && !strncmp(v, "http://", 7) ? 7 : n >= 8 && !strncmp(v, "https://", 8) ? 8 : 0;
    int bad = skip == 0 || skip == n || v[skip] == '/' || v[skip] == ':';
    for (size_t i = 0; i < n && !bad; i++)
        bad = (unsigned char)v[i] <= 0x20 || v[i] == 0x7f || v[i] == '?' || v[i] == '#' || v[i] == '@' ||
              (unsigned char)v[i] >= 0x80;
    if (bad) {
        snprintf(err, errlen, "the endpoint from %s (%s) is not an http:// or https:// URL with a host and no query",
                 src, shown);
        return NULL;
    }
    while (n > skip && v[n - 1] == '/')
        n--;
    char *copy = strndup(v, n), why[160];
    if (!copy)
        snprintf(err, errlen, "out of memory");
    else if (url_check(copy, why, sizeof why)) {
        snprintf(err, errlen, "the endpoint from %s (%s) %s", src, shown, why);
        free(copy);
        copy = NULL;
    }
    return copy;
}

static int take_endpoint(struct s3_config *c, const struct env *e, const struct ini *conf, const char *profile,
                         char *err, size_t errlen)
{
    const char *ign = env_get(e, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), *v, *src;
    size_t n = 0;
    if (ign && !strcasecmp(ign, "true"))
        return 0;
    if ((v = env_get(e, "AWS_ENDPOINT_URL_S3")))
        src = "AWS_ENDPOINT_URL_S3", n = strlen(v);
    else if ((v = env_get(e, "AWS_ENDPOINT_URL")))
        src = "AWS_ENDPOINT_URL", n = strlen(v);
    else if (conf->text && ini_find(conf, profile, 1, "endpoint_url", &v, &n) && n)
        src = conf->path;
    else
        return 0;
    c->endpoint = endpoint_copy(v, n, src, err, errlen);
    return c->endpoint ? 0 : -1;
}

/* ---- the whole ---- */

static int take_creds(struct s3_config *c, const struct env *e, const struct ini *cred, const struct ini *conf,
                      const char *profile, char *err, size_t errlen)
{
    int r = creds_from_env(c, e, err, errlen);
    if (r == 1)
        r = creds_from_file(c, cred, profile, 0, err, errlen);
    if (r == 1)
        r = creds_from_file(c, conf, profile, 1, err, errlen);
    if (r == 1) {
        no_creds(conf, profile, err, errlen);
        r = -1;
    }
    return r;
}

struct s3_config *s3_config_load(s3_getenv_fn get, void *arg, char *err, size_t errlen)
{
    xmlInitParser(); /* here, in the thread that sets up, before any other thread parses */
    struct env e = {get, arg};
    struct ini cred = {{0}, NULL, 0}, conf = {{0}, NULL, 0};
    struct s3_config *c = calloc(1, sizeof *c);
    const char *named = env_get(&e, "AWS_PROFILE"), *profile = named ? named : "default";
    int ok = 0;
    ini_path(&e, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", cred.path, sizeof cred.path);
    ini_path(&e, "AWS_CONFIG_FILE", ".aws/config", conf.path, sizeof conf.path);
    if (!c) {
        snprintf(err, errlen, "out of memory");
    } else if (ini_read(&cred, err, errlen) == 0 && ini_read(&conf, err, errlen) == 0) {
        int seen = (cred.text && ini_find(&cred, profile, 0, NULL, NULL, NULL)) ||
                   (conf.text && ini_find(&conf, profile, 1, NULL, NULL, NULL));
        if (named && !seen)
            snprintf(err, errlen, "AWS_PROFILE names profile \"%.64s\", which neither %.200s nor %.200s has", profile,
                     cred.path[0] ? cred.path : "~/.aws/credentials", conf.path[0] ? conf.path : "~/.aws/config");
        else
            ok = take_creds(c, &e, &cred, &conf, profile, err, errlen) == 0 &&
                 take_region(c, &e, &conf, profile, err, errlen) == 0 &&
                 take_endpoint(c, &e, &conf, profile, err, errlen) == 0;
    }
    ini_free(&cred);
    ini_free(&conf);
    if (!ok) {
        s3_config_free(c);
        return NULL;
    }
    return c;
}

void s3_config_free(struct s3_config *c)
{
    if (!c)
        return;
    s3_wipe_free(c->key_id);
    s3_wipe_free(c->secret);
    s3_wipe_free(c->token);
    free(c->endpoint);
    free(c);
}

const char *s3_config_region(const struct s3_config *c)
{
    return c->region;
}

const char *s3_config_endpoint(const struct s3_config *c)
{
    return c->endpoint;
}

int s3_config_has_token(const struct s3_config *c)
{
    return c->token != NULL;
}

void s3_config_describe(const struct s3_config *c, char *buf, size_t len)
{
    size_t kl = strlen(c->key_id);
    const char *tail = kl > 8 ? c->key_id + kl - 4 : "";
    snprintf(buf, len, "credentials from %s (access key ****%s%s), region %s (%s), %s%s", c->cred_source, tail,
             c->token ? ", with a session token" : "", c->region, c->region_source,
             c->endpoint ? "endpoint " : "AWS's endpoint", c->endpoint ? c->endpoint : "");
}
