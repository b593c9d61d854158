/* Tests of src/sources/s3 without a server: s3:// URLs, S3's key encoding (round trips with odd
 * keys), the configuration's precedence (environment, credentials file, config file, missing),
 * the ListObjectsV2 page reader on AWS's documented answers and on broken XML, the
 * classification of ends, and that no message ever holds a secret.
 *
 * The configuration is read through a table of variables (s3_config_load's get), never the
 * process's environment, and from files in a temporary HOME. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CUnit/CUnit.h>

#include "check.h"
#include "sources/s3.h"
#include "sources/s3int.h"
#include "util.h"

#define KEY "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
#define TOKEN "FwoGZXIvYXdzEXAMPLETOKENSECRET0123456789"

/* ---- a table of variables ---- */

struct vars {
    const char *kv[40]; /* name, value, name, value, ..., NULL */
};

static const char *vars_get(void *arg, const char *name)
{
    const struct vars *v = arg;
    for (int i = 0; v->kv[i]; i += 2)
        if (!strcmp(v->kv[i], name))
            return v->kv[i + 1];
    return NULL;
}

static struct s3_config *load(struct vars *v, char *err, size_t errlen)
{
    err[0] = '\0';
    return s3_config_load(vars_get, v, err, errlen);
}

/* 1 when the text holds no secret of this file (nor a long piece of one). */
static int no_secret(const char *s)
{
    return !strstr(s, SECRET) && !strstr(s, "bPxRfiCYSECRET") && !strstr(s, TOKEN) && !strstr(s, "EXAMPLETOKEN") &&
           !strstr(s, "filesecret") && !strstr(s, "FILETOKEN");
}

/* A temporary HOME with .aws/credentials and .aws/config of these texts (NULL: no file). */
static int make_home(char *home, size_t cap, const char *cred, const char *conf)
{
    char p[700];
    if (make_tmpdir(home, cap, "s3home") != 0)
        return -1;
    snprintf(p, sizeof p, "%s/.aws", home);
    if (mkdir(p, 0700) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/.aws/credentials", home);
    if (cred && write_file(p, cred, strlen(cred)) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/.aws/config", home);
    if (conf && write_file(p, conf, strlen(conf)) != 0)
        return -1;
    return 0;
}

static void rm_home(const char *home)
{
    char p[700];
    snprintf(p, sizeof p, "%s/.aws/credentials", home);
    remove(p);
    snprintf(p, sizeof p, "%s/.aws/config", home);
    remove(p);
    snprintf(p, sizeof p, "%s/other", home);
    remove(p);
    snprintf(p, sizeof p, "%s/.aws", home);
    rmdir(p);
    rmdir(home);
}

/* ---- s3:// URLs ---- */

static void test_url_parse(void)
{
    static const struct {
        const char *url, *bucket, *prefix;
    } ok[] = {
        {"s3://photos", "photos", ""},
        {"s3://photos/", "photos", ""},
        {"s3://my.bucket-01/2024/06/", "my.bucket-01", "2024/06/"},
        {"s3://Legacy_Bucket/a b/é 日本/", "Legacy_Bucket", "a b/é 日本/"},
        {"s3://abc/%41+b", "abc", "%41+b"}, /* taken as written */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct s3_location l;
        char err[300] = "";
        int rc = s3_url_parse(ok[i].url, &l, err, sizeof err);
        CHECKF(rc == 0 && !strcmp(l.bucket, ok[i].bucket) && !strcmp(l.prefix, ok[i].prefix),
               "%s: rc %d bucket %s prefix %s (%s)", ok[i].url, rc, rc ? "-" : l.bucket, rc ? "-" : l.prefix, err);
        if (rc == 0)
            s3_location_free(&l);
    }
    static const char *const bad[] = {
        "s3://", "s3:///photos", "s3:/photos", "http://photos/x", "S3://photos", "photos", "s3://ab", "s3://-abc",
        "s3://abc-", "s3://a?b/c", "s3://ab#c", "s3://a b/c", "s3://user@bucket/x", "s3://photos/a\x01z",
        "s3://photos/\xff\xfe", "s3://photos/\xc3", "s3://" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct s3_location l;
        char err[300] = "";
        int rc = s3_url_parse(bad[i], &l, err, sizeof err);
        CHECKF(rc == -1 && strlen(err) > 10 && !strchr(err, '\x01') && !strchr(err, '\n'),
               "%s: rc %d, message \"%s\"", printable(bad[i], strlen(bad[i])), rc, printable(err, strlen(err)));
        if (rc == 0)
            s3_location_free(&l);
    }
    /* a prefix of S3_KEY_MAX bytes is fine, one more is not */
    char url[S3_KEY_MAX + 32];
    int n = snprintf(url, sizeof url, "s3://photos/");
    memset(url + n, 'k', S3_KEY_MAX);
    url[n + S3_KEY_MAX] = '\0';
    struct s3_location l;
    char err[300];
    CHECKF(s3_url_parse(url, &l, err, sizeof err) == 0, "1024-byte prefix: %s", err);
    s3_location_free(&l);
    strcat(url, "k");
    CHECKF(s3_url_parse(url, &l, err, sizeof err) == -1, "1025-byte prefix accepted");
}

/* ---- encoding ---- */

static void test_encode_vectors(void)
{
    static const struct {
        const char *in, *slash, *noslash;
    } v[] = {
        {"photos/a.jpg", "photos/a.jpg", "photos%2Fa.jpg"},
        {"a b+c%d,e\"f'g", "a%20b%2Bc%25d%2Ce%22f%27g", "a%20b%2Bc%25d%2Ce%22f%27g"},
        {"é/日本", "%C3%A9/%E6%97%A5%E6%9C%AC", "%C3%A9%2F%E6%97%A5%E6%9C%AC"},
        {"~_-.AZaz09", "~_-.AZaz09", "~_-.AZaz09"},
        {"!*()=&?#[]@$;:", "%21%2A%28%29%3D%26%3F%23%5B%5D%40%24%3B%3A", "%21%2A%28%29%3D%26%3F%23%5B%5D%40%24%3B%3A"},
        {"a/../b/./c//d", "a/../b/./c//d", "a%2F..%2Fb%2F.%2Fc%2F%2Fd"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[200];
        size_t n = s3_encode(v[i].in, strlen(v[i].in), 1, out);
        CHECKF(n == strlen(out) && !strcmp(out, v[i].slash), "encode(%s, keep /) = %s, want %s", v[i].in, out,
               v[i].slash);
        s3_encode(v[i].in, strlen(v[i].in), 0, out);
        CHECKF(!strcmp(out, v[i].noslash), "encode(%s) = %s, want %s", v[i].in, out, v[i].noslash);
    }
    char ctl[4] = {'\x00', '\x7f', '\xff', 'a'}, out[16];
    s3_encode(ctl, 4, 1, out);
    CHECKF(!strcmp(out, "%00%7F%FFa"), "control bytes: %s", out);
}

static void test_decode(void)
{
    char out[64];
    size_t n;
    CU_ASSERT(s3_decode("%41%2b+%2F", 10, 1, out, &n) == 0 && n == 4 && !memcmp(out, "A+ /", 4));
    CU_ASSERT(s3_decode("a+b", 3, 0, out, &n) == 0 && !strcmp(out, "a+b"));
    CU_ASSERT(s3_decode("%00x", 4, 0, out, &n) == 0 && n == 2 && out[0] == 0 && out[1] == 'x');
    static const char *const bad[] = {"%", "%4", "a%", "%zz", "%4g", "x%g1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(s3_decode(bad[i], strlen(bad[i]), 1, out, &n) == -1, "decode accepted %s", bad[i]);
}

static void test_encode_round_trip(void)
{
    static const char *const odd[] = {
        "a b.jpg", "c+d.jpg", "e%f.jpg", "g,h\"i'.jpg", "日本/ü.jpg", "a/../b.jpg", "%2F", "+", " ", "~", "x//y",
        "trailing/", "tab\there", "new\nline",
    };
    char enc[3 * 300 + 1], dec[300 + 1];
    size_t n;
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        for (int slash = 0; slash <= 1; slash++) {
            size_t e = s3_encode(odd[i], strlen(odd[i]), slash, enc);
            int ok = s3_decode(enc, e, 0, dec, &n) == 0 && n == strlen(odd[i]) && !memcmp(dec, odd[i], n);
            int plus = s3_decode(enc, e, 1, dec, &n) == 0 && n == strlen(odd[i]) && !memcmp(dec, odd[i], n);
            CHECKF(ok && plus && !strchr(enc, ' ') && !strchr(enc, '+'), "%s -> %s does not come back",
                   printable(odd[i], strlen(odd[i])), enc);
        }
    }
    uint64_t rng = 0x5eed5eed12345ull;
    for (int t = 0; t < 2000; t++) {
        unsigned char raw[300];
        size_t len = 1 + xorshift64(&rng) % 299;
        fill_random(&rng, raw, len);
        size_t e = s3_encode((const char *)raw, len, t & 1, enc);
        int ok = s3_decode(enc, e, 1, dec, &n) == 0 && n == len && !memcmp(dec, raw, len);
        for (size_t i = 0; ok && i < e; i++)
            ok = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%/", enc[i]) != NULL;
        CHECKF(ok, "random key %d (%zu bytes) does not come back from %s", t, len, enc);
    }
}

/* ---- configuration ---- */

static void test_config_env(void)
{
    struct vars v = {{"AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_SESSION_TOKEN", TOKEN,
                      "AWS_REGION", "eu-west-1", "AWS_DEFAULT_REGION", "us-west-2", "HOME", "/nonexistent", NULL}};
    char err[400], d[400];
    struct s3_config *c = load(&v, err, sizeof err);
    CHECKF(c != NULL, "env: %s", err);
    if (!c)
        return;
    CU_ASSERT(!strcmp(c->key_id, KEY) && !strcmp(c->secret, SECRET) && c->token && !strcmp(c->token, TOKEN));
    CU_ASSERT_STRING_EQUAL(s3_config_region(c), "eu-west-1");
    CU_ASSERT(s3_config_endpoint(c) == NULL && s3_config_has_token(c));
    s3_config_describe(c, d, sizeof d);
    CHECKF(strstr(d, "****MPLE") && strstr(d, "AWS_REGION") && strstr(d, "session token") && no_secret(d) &&
               !strstr(d, KEY),
           "describe: %s", d);
    s3_config_free(c);
    /* AWS_DEFAULT_REGION when AWS_REGION is unset, or empty (empty counts as unset) */
    v.kv[6] = "AWS_REGION";
    v.kv[7] = "";
    c = load(&v, err, sizeof err);
    CHECKF(c && !strcmp(s3_config_region(c), "us-west-2"), "AWS_DEFAULT_REGION: %s", c ? c->region : err);
    s3_config_free(c);
    /* no region anywhere: us-east-1 */
    v.kv[8] = "X";
    c = load(&v, err, sizeof err);
    CHECKF(c && !strcmp(s3_config_region(c), "us-east-1"), "default region: %s", c ? c->region : err);
    s3_config_free(c);
}

static void test_config_profiles(void)
{
    char home[600], err[400];
    const char *cred = "# comment\n[default]\naws_access_key_id = AKIADEFAULTKEY00001\n"
                       "aws_secret_access_key = filesecret-default\n\n"
                       "[work]\r\naws_access_key_id=AKIAWORKKEY00000002\r\naws_secret_access_key: filesecret-work\r\n"
                       "aws_session_token = FILETOKEN-work\r\n";
    const char *conf = "[default]\nregion = ap-south-1\n"
                       "[profile work]\nregion=eu-central-1\ns3 =\n  endpoint_url = http://nested.example\n"
                       "[profile cfgonly]\naws_access_key_id = AKIACONFIGKEY000003\n"
                       "aws_secret_access_key = filesecret-config\nendpoint_url = http://127.0.0.1:9000/\n";
    if (make_home(home, sizeof home, cred, conf) != 0) {
        CU_FAIL("temporary HOME");
        return;
    }
    struct vars v = {{"HOME", home, NULL}};
    struct s3_config *c = load(&v, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, "AKIADEFAULTKEY00001") && !strcmp(c->secret, "filesecret-default") && !c->token &&
               !strcmp(c->region, "ap-south-1") && !c->endpoint,
           "default profile: %s", c ? c->key_id : err);
    s3_config_free(c);
    /* AWS_PROFILE: the credentials file's [work], the config file's [profile work]; nested values
     * (s3 = / endpoint_url) are not the profile's endpoint */
    struct vars w = {{"HOME", home, "AWS_PROFILE", "work", NULL}};
    c = load(&w, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, "AKIAWORKKEY00000002") && !strcmp(c->secret, "filesecret-work") && c->token &&
               !strcmp(c->token, "FILETOKEN-work") && !strcmp(c->region, "eu-central-1") && !c->endpoint,
           "profile work: %s", c ? c->key_id : err);
    s3_config_free(c);
    /* credentials only in the config file; its endpoint_url, without its trailing '/' */
    struct vars g = {{"HOME", home, "AWS_PROFILE", "cfgonly", NULL}};
    c = load(&g, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, "AKIACONFIGKEY000003") && c->endpoint &&
               !strcmp(c->endpoint, "http://127.0.0.1:9000") && !strcmp(c->region, "us-east-1"),
           "config-file credentials: %s", c ? c->key_id : err);
    s3_config_free(c);
    /* the environment's keys win over the profile's, AWS_PROFILE or not */
    struct vars e = {{"HOME", home, "AWS_PROFILE", "work", "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET,
                      NULL}};
    c = load(&e, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, KEY) && !c->token && !strcmp(c->region, "eu-central-1"), "env over profile: %s",
           c ? c->key_id : err);
    s3_config_free(c);
    rm_home(home);
}

static void test_config_files_named(void)
{
    char home[600], err[400], p[700];
    if (make_home(home, sizeof home, "[default]\naws_access_key_id=AKIAHOMEKEY00000001\n"
                                     "aws_secret_access_key=filesecret-home\n", NULL) != 0) {
        CU_FAIL("temporary HOME");
        return;
    }
    snprintf(p, sizeof p, "%s/other", home);
    const char *other = "[default]\naws_access_key_id=AKIAOTHERKEY0000001\naws_secret_access_key=filesecret-other\n"
                        "region=sa-east-1\n";
    write_file(p, other, strlen(other));
    /* AWS_SHARED_CREDENTIALS_FILE replaces ~/.aws/credentials; "~/" is HOME */
    struct vars v = {{"HOME", home, "AWS_SHARED_CREDENTIALS_FILE", "~/other", NULL}};
    struct s3_config *c = load(&v, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, "AKIAOTHERKEY0000001"), "AWS_SHARED_CREDENTIALS_FILE: %s", c ? c->key_id : err);
    s3_config_free(c);
    /* AWS_CONFIG_FILE: [default] region; the credentials file still wins for the keys */
    struct vars w = {{"HOME", home, "AWS_CONFIG_FILE", p, NULL}};
    c = load(&w, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, "AKIAHOMEKEY00000001") && !strcmp(c->region, "sa-east-1"), "AWS_CONFIG_FILE: %s",
           c ? c->region : err);
    s3_config_free(c);
    /* /dev/null for both: no files at all (the environment's keys, the default region) */
    struct vars z = {{"HOME", home, "AWS_SHARED_CREDENTIALS_FILE", "/dev/null", "AWS_CONFIG_FILE", "/dev/null",
                      "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, NULL}};
    c = load(&z, err, sizeof err);
    CHECKF(c && !strcmp(c->key_id, KEY) && !strcmp(c->region, "us-east-1"), "/dev/null: %s", c ? c->key_id : err);
    s3_config_free(c);
    z.kv[6] = z.kv[8] = "X"; /* without the environment's keys: none anywhere */
    c = load(&z, err, sizeof err);
    CHECKF(!c && strstr(err, "no AWS credentials"), "/dev/null, no keys: %s", c ? "accepted" : err);
    s3_config_free(c);
    rm_home(home);
}

static void test_config_endpoint(void)
{
    static const struct {
        const char *s3, *global, *ignore, *want;
    } t[] = {
        {"http://s3.local:9000/", "http://global:1", NULL, "http://s3.local:9000"},
        {NULL, "https://r2.example.com//", NULL, "https://r2.example.com"},
        {NULL, "http://127.0.0.1:4568/base/path", NULL, "http://127.0.0.1:4568/base/path"},
        {"http://s3.local:9000", "http://global:1", "true", NULL},
        {"", "http://global:1", "false", "http://global:1"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct vars v = {{"AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "HOME", "/nonexistent",
                          "AWS_ENDPOINT_URL_S3", t[i].s3, "AWS_ENDPOINT_URL", t[i].global,
                          "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", t[i].ignore, NULL}};
        char err[400];
        struct s3_config *c = load(&v, err, sizeof err);
        const char *got = c ? s3_config_endpoint(c) : "(error)";
        CHECKF(c && (t[i].want ? got && !strcmp(got, t[i].want) : !got), "case %zu: endpoint %s, want %s (%s)", i,
               got ? got : "none", t[i].want ? t[i].want : "none", c ? "" : err);
        s3_config_free(c);
    }
}

/* Each: the variables, and a word the error must hold. */
static void test_config_errors(void)
{
    char home[600];
    if (make_home(home, sizeof home, "[half]\naws_access_key_id=AKIAHALF000000000001\n[default]\n",
                  "[profile sso]\nsso_session = corp\nregion=us-east-1\n[profile role]\nrole_arn=arn:aws:iam::1:role/x\n"
                  "source_profile=default\n") != 0) {
        CU_FAIL("temporary HOME");
        return;
    }
    static struct {
        const char *kv[16];
        const char *want;
    } t[] = {
        {{"HOME", NULL, NULL}, "no AWS credentials"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, NULL}, "AWS_SECRET_ACCESS_KEY"},
        {{"HOME", NULL, "AWS_SECRET_ACCESS_KEY", SECRET, NULL}, "AWS_ACCESS_KEY_ID"},
        {{"HOME", NULL, "AWS_PROFILE", "nope", "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, NULL},
         "nope"},
        {{"HOME", NULL, "AWS_PROFILE", "half", NULL}, "aws_secret_access_key"},
        {{"HOME", NULL, "AWS_PROFILE", "sso", NULL}, "sso_session"},
        {{"HOME", NULL, "AWS_PROFILE", "role", NULL}, "role_arn"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_REGION", "EU_WEST", NULL},
         "AWS_REGION"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_ENDPOINT_URL", "ftp://x", NULL},
         "AWS_ENDPOINT_URL"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_ENDPOINT_URL", "http://", NULL},
         "AWS_ENDPOINT_URL"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_ENDPOINT_URL_S3",
          "http://h/p?x=1", NULL},
         "AWS_ENDPOINT_URL_S3"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET "\nX-Injected: 1", NULL},
         "secret access key"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_SESSION_TOKEN",
          TOKEN "\r\nX-Injected: 1", NULL},
         "session token"},
        {{"HOME", NULL, "AWS_ACCESS_KEY_ID", "AKIA/SLASH", "AWS_SECRET_ACCESS_KEY", SECRET, NULL}, "access key ID"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct vars v = {{0}};
        for (int k = 0; k < 16 && (k % 2 || t[i].kv[k]); k++)
            v.kv[k] = t[i].kv[k];
        v.kv[1] = home;
        char err[600];
        struct s3_config *c = load(&v, err, sizeof err);
        CHECKF(!c && strstr(err, t[i].want) && no_secret(err) && !strchr(err, '\n'), "case %zu: %s (want \"%s\")", i,
               c ? "accepted" : err, t[i].want);
        s3_config_free(c);
    }
    rm_home(home);
}

/* ---- the client's URLs ---- */

static struct s3_client *client_for(const char *region, const char *endpoint, const char *bucket)
{
    struct vars v = {{"AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "AWS_REGION", region,
                      "AWS_ENDPOINT_URL", endpoint, "HOME", "/nonexistent", NULL}};
    char err[400];
    struct s3_config *cfg = load(&v, err, sizeof err);
    struct s3_client *c = cfg ? s3_client_new(cfg, bucket, err, sizeof err) : NULL;
    s3_config_free(cfg);
    return c;
}

static void test_object_urls(void)
{
    static const struct {
        const char *region, *endpoint, *bucket, *key, *url;
    } t[] = {
        {"eu-west-1", NULL, "photos", "a b/c+d.jpg", "https://photos.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd.jpg"},
        {"eu-west-1", NULL, "my.photos", "x.jpg", "https://s3.eu-west-1.amazonaws.com/my.photos/x.jpg"},
        {"us-east-1", NULL, "Legacy_Bucket", "日.jpg", "https://s3.us-east-1.amazonaws.com/Legacy_Bucket/%E6%97%A5.jpg"},
        {"cn-north-1", NULL, "photos", "k", "https://photos.s3.cn-north-1.amazonaws.com.cn/k"},
        {"us-east-1", "http://127.0.0.1:9000/", "photos", "a/../b/./c", "http://127.0.0.1:9000/photos/a/../b/./c"},
        {"auto", "https://acc.r2.example.com/base", "photos", "%", "https://acc.r2.example.com/base/photos/%25"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct s3_client *c = client_for(t[i].region, t[i].endpoint, t[i].bucket);
        char *u = c ? s3_client_object_url(c, t[i].key, strlen(t[i].key)) : NULL;
        CHECKF(u && !strcmp(u, t[i].url), "case %zu: %s, want %s", i, u ? u : "(none)", t[i].url);
        free(u);
        if (c && i == 0) {
            char *row = s3_client_row_path(c, "a b/c.jpg", 9);
            CHECKF(row && !strcmp(row, "s3://photos/a b/c.jpg"), "row path %s", row ? row : "(none)");
            free(row);
        }
        s3_client_free(c);
    }
    char err[200];
    struct vars v = {{"AWS_ACCESS_KEY_ID", KEY, "AWS_SECRET_ACCESS_KEY", SECRET, "HOME", "/nonexistent", NULL}};
    struct s3_config *cfg = load(&v, err, sizeof err);
    CU_ASSERT(cfg && s3_client_new(cfg, "a", err, sizeof err) == NULL && strstr(err, "bucket"));
    s3_config_free(cfg);
}

/* ---- the page reader ---- */

/* AWS's documented answers (Amazon S3 API Reference, ListObjectsV2 and Error responses). */
static const char aws_example1[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "    <Name>bucket</Name>\n    <Prefix/>\n    <KeyCount>205</KeyCount>\n    <MaxKeys>1000</MaxKeys>\n"
    "    <IsTruncated>false</IsTruncated>\n    <Contents>\n        <Key>my-image.jpg</Key>\n"
    "        <LastModified>2009-10-12T17:50:30.000Z</LastModified>\n"
    "        <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>\n        <Size>434234</Size>\n"
    "        <StorageClass>STANDARD</StorageClass>\n    </Contents>\n</ListBucketResult>\n";

static const char aws_example2[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "    <Name>quotes</Name>\n    <Prefix>E</Prefix>\n    <StartAfter>ExampleGuide.pdf</StartAfter>\n"
    "    <KeyCount>1</KeyCount>\n    <MaxKeys>3</MaxKeys>\n    <IsTruncated>false</IsTruncated>\n"
    "    <Contents>\n        <Key>ExampleObject.txt</Key>\n        <LastModified>2013-09-17T18:07:53.000Z</LastModified>\n"
    "        <ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag>\n        <Size>857</Size>\n"
    "        <StorageClass>REDUCED_REDUNDANCY</StorageClass>\n    </Contents>\n</ListBucketResult>\n";

static const char aws_example3[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <Name>example-bucket</Name>\n  <Prefix>photos/2006/</Prefix>\n  <KeyCount>3</KeyCount>\n"
    "  <MaxKeys>1000</MaxKeys>\n  <Delimiter>/</Delimiter>\n  <IsTruncated>false</IsTruncated>\n"
    "  <Contents>\n    <Key>photos/2006/</Key>\n    <LastModified>2016-04-30T23:51:29.000Z</LastModified>\n"
    "    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>\n    <Size>0</Size>\n"
    "    <StorageClass>STANDARD</StorageClass>\n  </Contents>\n\n"
    "  <CommonPrefixes>\n    <Prefix>photos/2006/February/</Prefix>\n  </CommonPrefixes>\n"
    "  <CommonPrefixes>\n    <Prefix>photos/2006/January/</Prefix>\n  </CommonPrefixes>\n</ListBucketResult>\n";

static const char aws_example4[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <Name>bucket</Name>\n  <Prefix></Prefix>\n"
    "  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
    "  <KeyCount>1000</KeyCount>\n  <MaxKeys>1000</MaxKeys>\n  <IsTruncated>true</IsTruncated>\n"
    "  <Contents>\n    <Key>happyface.jpg</Key>\n    <LastModified>2014-11-21T19:40:05.000Z</LastModified>\n"
    "    <ETag>&quot;70ee1738b6b21e2c8a43f3a5ab0eee71&quot;</ETag>\n    <Size>11</Size>\n"
    "    <StorageClass>STANDARD</StorageClass>\n  </Contents>\n</ListBucketResult>\n";

static const char aws_error[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>NoSuchKey</Code>\n"
                                "  <Message>The resource you requested does not exist</Message>\n"
                                "  <Resource>/mybucket/myfoto.jpg</Resource> \n"
                                "  <RequestId>4442587FB7D0A2F9</RequestId>\n</Error>\n";

static int parse(struct s3_page *p, const char *xml, char *err, size_t errlen)
{
    err[0] = '\0';
    return s3_page_parse(p, xml, strlen(xml), err, errlen);
}

static void test_page_aws_examples(void)
{
    struct s3_page p = {0};
    char err[300];
    CHECKF(parse(&p, aws_example1, err, sizeof err) == 0, "example 1: %s", err);
    CU_ASSERT(p.n == 1 && !strcmp(p.obj[0].key, "my-image.jpg") && p.obj[0].key_len == 12 &&
              p.obj[0].size == 434234 && !p.truncated);
    CHECKF(parse(&p, aws_example2, err, sizeof err) == 0, "example 2: %s", err);
    CU_ASSERT(p.n == 1 && !strcmp(p.obj[0].key, "ExampleObject.txt") && p.obj[0].size == 857 && !p.truncated);
    CHECKF(parse(&p, aws_example3, err, sizeof err) == 0, "example 3: %s", err);
    CU_ASSERT(p.n == 1 && !strcmp(p.obj[0].key, "photos/2006/") && p.obj[0].size == 0); /* not the CommonPrefixes */
    CHECKF(parse(&p, aws_example4, err, sizeof err) == 0, "example 4: %s", err);
    CU_ASSERT(p.n == 1 && !strcmp(p.obj[0].key, "happyface.jpg") && p.obj[0].size == 11 && p.truncated &&
              p.next_token && !strcmp(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
    CHECKF(parse(&p, aws_error, err, sizeof err) == 1, "error document: %s", err);
    CU_ASSERT(p.n == 0 && p.is_error && !strcmp(p.code, "NoSuchKey") &&
              !strcmp(p.message, "The resource you requested does not exist"));
    s3_page_free(&p);
}

static void test_page_encoded_keys(void)
{
    struct s3_page p = {0};
    char err[300];
    const char *enc = "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
                      "<Contents><Key>photos/a+b%2Bc%25d%2C%22q%27.jpg</Key><Size>1</Size></Contents>"
                      "<Contents><Key>%E6%97%A5%E6%9C%AC/%C3%BC.jpg</Key><Size>2</Size></Contents>"
                      "<Contents><Key>%01ctl</Key><Size>3</Size></Contents></ListBucketResult>";
    CHECKF(parse(&p, enc, err, sizeof err) == 0, "encoded: %s", err);
    CU_ASSERT(p.n == 3 && !strcmp(p.obj[0].key, "photos/a b+c%d,\"q'.jpg") && p.obj[0].key_len == 22);
    CU_ASSERT(p.n == 3 && !strcmp(p.obj[1].key, "日本/ü.jpg") && p.obj[1].size == 2);
    CU_ASSERT(p.n == 3 && !strcmp(p.obj[2].key, "\x01" "ctl") && p.obj[2].size == 3);
    /* EncodingType after the keys: still decoded */
    const char *late = "<ListBucketResult><Contents><Key>a+b</Key><Size>1</Size></Contents>"
                       "<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated></ListBucketResult>";
    CHECKF(parse(&p, late, err, sizeof err) == 0 && p.n == 1 && !strcmp(p.obj[0].key, "a b"), "late: %s", err);
    /* no EncodingType: keys as they are (XML escapes, CDATA, character references decoded) */
    const char *raw = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                      "<Contents><Key>a+b%2B &amp; &#x65E5;</Key><Size>5</Size></Contents>"
                      "<Contents><Key><![CDATA[c<d>&e]]></Key><Size>6</Size></Contents>"
                      "<Contents><Key> lead and trail </Key><Size>7</Size></Contents></ListBucketResult>";
    CHECKF(parse(&p, raw, err, sizeof err) == 0, "raw: %s", err);
    CU_ASSERT(p.n == 3 && !strcmp(p.obj[0].key, "a+b%2B & 日"));
    CU_ASSERT(p.n == 3 && !strcmp(p.obj[1].key, "c<d>&e") && !strcmp(p.obj[2].key, " lead and trail "));
    s3_page_free(&p);
}

static void test_page_large_and_reused(void)
{
    size_t cap = 1000 * 120 + 200, len = 0;
    char *xml = malloc(cap);
    len += (size_t)snprintf(xml + len, cap - len, "<ListBucketResult><IsTruncated>true</IsTruncated>"
                                                  "<NextContinuationToken>t+/=</NextContinuationToken>");
    for (int i = 0; i < 1000; i++)
        len += (size_t)snprintf(xml + len, cap - len, "<Contents><Key>k/%06d.jpg</Key><Size>%d</Size></Contents>", i,
                                i * 7);
    len += (size_t)snprintf(xml + len, cap - len, "</ListBucketResult>");
    struct s3_page p = {0};
    char err[300] = "";
    CHECKF(s3_page_parse(&p, xml, len, err, sizeof err) == 0 && p.n == 1000, "1000 keys: %s", err);
    int ok = p.n == 1000;
    for (size_t i = 0; ok && i < p.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "k/%06zu.jpg", i);
        ok = !strcmp(p.obj[i].key, want) && p.obj[i].size == (int64_t)i * 7;
    }
    CU_ASSERT(ok && p.truncated && !strcmp(p.next_token, "t+/="));
    size_t arena = p.arena_cap, objs = p.obj_cap;
    /* the next page reuses the storage: a smaller one fits, nothing grows */
    CU_ASSERT(parse(&p, aws_example1, err, sizeof err) == 0 && p.n == 1 && !p.truncated);
    CU_ASSERT(p.arena_cap == arena && p.obj_cap == objs);
    CU_ASSERT(s3_page_parse(&p, xml, len, err, sizeof err) == 0 && p.n == 1000);
    CU_ASSERT(p.arena_cap == arena && p.obj_cap == objs);
    s3_page_free(&p);
    free(xml);
}

static void test_page_broken(void)
{
    char longkey[4000] = "<ListBucketResult><Contents><Key>";
    size_t n = strlen(longkey);
    memset(longkey + n, 'k', S3_KEY_MAX + 1);
    strcpy(longkey + n + S3_KEY_MAX + 1, "</Key><Size>1</Size></Contents></ListBucketResult>");
    const char *const broken[] = {
        "",
        "not xml at all",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Si",
        "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a</Key><Size>1</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
        "<ListBucketResult><Contents/></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>12a</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size> 1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Key>b</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key/><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%zz</Key><Size>1</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%00b</Key><Size>1</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><Contents><Key>a<b/>c</Key><Size>1</Size></Contents></ListBucketResult>",
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
        "<ListBucketResult><Contents><Key>&lol2;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
        "<ListBucketResult><Contents><Key>&xxe;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>&undefined;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<Foo><Contents><Key>a</Key><Size>1</Size></Contents></Foo>",
        "<ListBucketResult></ListBucketResult><ListBucketResult></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>trailing",
        "<?xml version=\"1.0\"?>",
        longkey,
    };
    struct s3_page p = {0};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        char err[300] = "";
        /* a good page first, so that a failure must leave the page empty, not half-filled */
        parse(&p, aws_example4, err, sizeof err);
        int rc = parse(&p, broken[i], err, sizeof err);
        CHECKF(rc == -1 && err[0] && p.n == 0 && !p.truncated && !strchr(err, '\n'), "case %zu: rc %d n %zu err %s", i,
               rc, p.n, err);
    }
    s3_page_free(&p);
}

/* ---- classification ---- */

static void test_classify(void)
{
    static const struct {
        CURLcode cc;
        long status;
        const char *code;
        enum s3_outcome want;
    } t[] = {
        {CURLE_OK, 200, NULL, S3_OK},
        {CURLE_OK, 206, "", S3_OK},
        {CURLE_OK, 404, "NoSuchKey", S3_MISSING},
        {CURLE_OK, 404, "NoSuchBucket", S3_SETUP},
        {CURLE_OK, 404, NULL, S3_MISSING},
        {CURLE_OK, 403, "AccessDenied", S3_SETUP},
        {CURLE_OK, 403, "SignatureDoesNotMatch", S3_SETUP},
        {CURLE_OK, 403, "InvalidAccessKeyId", S3_SETUP},
        {CURLE_OK, 400, "ExpiredToken", S3_SETUP},
        {CURLE_OK, 403, "RequestTimeTooSkewed", S3_SETUP},
        {CURLE_OK, 301, "PermanentRedirect", S3_SETUP},
        {CURLE_OK, 400, "AuthorizationHeaderMalformed", S3_SETUP},
        {CURLE_OK, 403, NULL, S3_SETUP},
        {CURLE_OK, 503, "SlowDown", S3_RETRY},
        {CURLE_OK, 500, "InternalError", S3_RETRY},
        {CURLE_OK, 503, NULL, S3_RETRY},
        {CURLE_OK, 502, "", S3_RETRY},
        {CURLE_OK, 429, NULL, S3_RETRY},
        {CURLE_OK, 400, "RequestTimeout", S3_RETRY},
        {CURLE_OK, 403, "InvalidObjectState", S3_FAILED},
        {CURLE_OK, 416, "InvalidRange", S3_FAILED},
        {CURLE_OK, 400, NULL, S3_FAILED},
        {CURLE_OK, 500, "SomethingNew", S3_RETRY},
        {CURLE_COULDNT_CONNECT, 0, NULL, S3_RETRY},
        {CURLE_OPERATION_TIMEDOUT, 0, NULL, S3_RETRY},
        {CURLE_RECV_ERROR, 200, NULL, S3_RETRY},
        {CURLE_PARTIAL_FILE, 200, NULL, S3_RETRY},
        {CURLE_GOT_NOTHING, 0, NULL, S3_RETRY},
        {CURLE_COULDNT_RESOLVE_HOST, 0, NULL, S3_RETRY},
        {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, S3_SETUP},
        {CURLE_SSL_CACERT_BADFILE, 0, NULL, S3_SETUP},
        {CURLE_URL_MALFORMAT, 0, NULL, S3_SETUP},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum s3_outcome o = s3_classify(t[i].cc, t[i].status, t[i].code);
        CHECKF(o == t[i].want, "case %zu (curl %d, HTTP %ld, %s): %s, want %s", i, (int)t[i].cc, t[i].status,
               t[i].code ? t[i].code : "no code", s3_outcome_name(o), s3_outcome_name(t[i].want));
    }
}

int register_s3(void)
{
    CU_pSuite u = CU_add_suite("s3 url", NULL, NULL);
    CU_pSuite c = CU_add_suite("s3 config", NULL, NULL);
    CU_pSuite x = CU_add_suite("s3 xml", NULL, NULL);
    if (!u || !c || !x)
        return -1;
    if (!CU_add_test(u, "s3:// URLs, good and malformed", test_url_parse) ||
        !CU_add_test(u, "key encoding vectors", test_encode_vectors) ||
        !CU_add_test(u, "decoding, and bad escapes", test_decode) ||
        !CU_add_test(u, "odd and random keys round trip", test_encode_round_trip) ||
        !CU_add_test(u, "object URLs: virtual-hosted, path style, endpoint", test_object_urls) ||
        !CU_add_test(u, "classification of ends", test_classify) ||
        !CU_add_test(c, "environment variables", test_config_env) ||
        !CU_add_test(c, "profiles in the shared files", test_config_profiles) ||
        !CU_add_test(c, "AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE", test_config_files_named) ||
        !CU_add_test(c, "endpoint precedence", test_config_endpoint) ||
        !CU_add_test(c, "errors name the cause, never a secret", test_config_errors) ||
        !CU_add_test(x, "AWS's documented answers", test_page_aws_examples) ||
        !CU_add_test(x, "encoding-type=url keys, raw keys", test_page_encoded_keys) ||
        !CU_add_test(x, "1000 keys, storage reused", test_page_large_and_reused) ||
        !CU_add_test(x, "broken and hostile XML", test_page_broken))
        return -1;
    return 0;
}
