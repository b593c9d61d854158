/* failalloc: a counting allocator that fails the Nth allocation, linked into build/annotate-failalloc
 * (see the Makefile) with -Wl,--wrap for malloc, calloc, realloc, strdup, strndup and fdopendir, so
 * that every allocation site of annotate's own code can be made to fail, under ASan too (the
 * real allocator stays the sanitizer's). cJSON's and libcurl's allocations are routed through it
 * as well (cJSON_InitHooks, curl_global_init_mem, before main), so a failure inside them reaches
 * our code as the NULL or the error those libraries return. Allocations inside other libraries
 * (libc's own, libcsv, OpenSSL) are not counted.
 *
 * Environment:
 *   ANNOTATE_FAILALLOC=N          fail the Nth counted allocation (1 is the first), once; 0 or
 *                                 unset: fail none, only count
 *   ANNOTATE_FAILALLOC_FROM=1     fail the Nth and every one after it (memory gone for good)
 *   ANNOTATE_FAILALLOC_COUNT=FILE at exit, write the number of allocations counted into FILE
 * Each failure is reported on stderr ("failalloc: failing allocation #N ..."), with the caller's
 * object and offset, for addr2line. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
DIR *__real_fdopendir(int fd);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
DIR *__wrap_fdopendir(int fd);

static atomic_long counted;
static long fail_at;  /* 0: never */
static int fail_from; /* every allocation from fail_at on */
static int armed;     /* counting starts once the constructor is done */

static void say(const char *what, long n, size_t size, const void *caller)
{
    char buf[512];
    Dl_info di;
    int len;
    if (dladdr(caller, &di) && di.dli_fname)
        len = snprintf(buf, sizeof buf, "failalloc: failing allocation #%ld (%s of %zu bytes) from %s+%#lx\n", n, what,
                       size, di.dli_fname, (unsigned long)((const char *)caller - (const char *)di.dli_fbase));
    else
        len = snprintf(buf, sizeof buf, "failalloc: failing allocation #%ld (%s of %zu bytes) from %p\n", n, what,
                       size, caller);
    if (len > 0 && write(2, buf, (size_t)len) < 0) {
        /* nothing to do */
    }
}

/* 1 when this allocation is to fail. */
static int fail_now(const char *what, size_t size, const void *caller)
{
    if (!armed)
        return 0;
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (fail_at <= 0 || n < fail_at || (n > fail_at && !fail_from))
        return 0;
    if (n == fail_at)
        say(what, n, size, caller);
    errno = ENOMEM;
    return 1;
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *__wrap_malloc(size_t n)
{
    return fail_now("malloc", n, CALLER) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return fail_now("calloc", k * n, CALLER) ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now("realloc", n, CALLER) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now("strdup", strlen(s) + 1, CALLER) ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now("strndup", strnlen(s, n) + 1, CALLER) ? NULL : __real_strndup(s, n);
}

DIR *__wrap_fdopendir(int fd)
{
    /* Its stream buffer is an allocation of ours to check (readdir's 32 KiB). */
    return fail_now("fdopendir", 32768, CALLER) ? NULL : __real_fdopendir(fd);
}

/* libcurl's hooks: the same counting. */
static void *c_malloc(size_t n)
{
    return fail_now("curl malloc", n, CALLER) ? NULL : __real_malloc(n);
}

static void *c_calloc(size_t k, size_t n)
{
    return fail_now("curl calloc", k * n, CALLER) ? NULL : __real_calloc(k, n);
}

static void *c_realloc(void *p, size_t n)
{
    return fail_now("curl realloc", n, CALLER) ? NULL : __real_realloc(p, n);
}

static char *c_strdup(const char *s)
{
    return fail_now("curl strdup", strlen(s) + 1, CALLER) ? NULL : __real_strdup(s);
}

static void *j_malloc(size_t n)
{
    return fail_now("cJSON malloc", n, CALLER) ? NULL : __real_malloc(n);
}

static void report_count(void)
{
    const char *path = getenv("ANNOTATE_FAILALLOC_COUNT");
    if (!path || !*path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", atomic_load(&counted));
    if (len > 0 && write(fd, buf, (size_t)len) < 0) {
        /* nothing to do */
    }
    close(fd);
}

__attribute__((constructor)) static void failalloc_init(void)
{
    const char *n = getenv("ANNOTATE_FAILALLOC");
    fail_at = n ? atol(n) : 0;
    const char *from = getenv("ANNOTATE_FAILALLOC_FROM");
    fail_from = from && *from && strcmp(from, "0");
    cJSON_Hooks h = {j_malloc, free};
    cJSON_InitHooks(&h);
    /* main's curl_global_init then only counts one more user of these. */
    curl_global_init_mem(CURL_GLOBAL_ALL, c_malloc, free, c_realloc, c_strdup, c_calloc);
    atexit(report_count);
    armed = 1;
}
