/* util: see util.h. libc and src/common/fdio.c only, on purpose (bench/gen_images.c links it). */
#include "util.h"

#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- files ---- */

char *slurp(const char *path, size_t *len)
{
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return NULL;
    }
    /* The size is a hint: a file that grows while it is read (a run's results) is read whole. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(b);
            b = NULL;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!b)
        return NULL;
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = fd_write_all(fd, data, len);
    return close(fd) == 0 && rc == 0 ? 0 : -1;
}

int write_text(const char *path, const char *text)
{
    return write_file(path, text, strlen(text));
}

void file_tail(const char *path, char *out, size_t maxlen)
{
    if (maxlen == 0)
        return;
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)(maxlen - 1) ? size - (off_t)(maxlen - 1) : 0;
    ssize_t r = pread(fd, out, maxlen - 1, from);
    close(fd);
    out[r > 0 ? r : 0] = '\0';
}

int make_tmpdir(char *buf, size_t cap, const char *tag)
{
    const char *t = getenv("TMPDIR");
    int n = snprintf(buf, cap, "%s/annotate-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

const char *fixtures_dir(void)
{
    static char buf[1024];
    if (access("fixtures/pipeline.json", R_OK) == 0)
        return "fixtures";
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *slash = strrchr(buf, '/');
    if (slash)
        snprintf(slash, sizeof buf - (size_t)(slash - buf), "/../fixtures");
    else
        snprintf(buf, sizeof buf, "../fixtures");
    return buf;
}

const char *examples_dir(void)
{
    static char buf[1100];
    if (access("examples/kserve-v2.json", R_OK) == 0)
        return "examples";
    snprintf(buf, sizeof buf, "%s/../examples", fixtures_dir());
    return buf;
}

int in_path(const char *prog)
{
    const char *p = getenv("PATH");
    if (!p || !*prog || strchr(prog, '/'))
        return 0;
    char full[4096];
    for (const char *d = p;; d++) {
        size_t n = strcspn(d, ":");
        /* An empty entry is the working directory, as the shell has it. */
        int k = snprintf(full, sizeof full, "%.*s%s%s", (int)n, n ? d : ".", "/", prog);
        if (k > 0 && (size_t)k < sizeof full && access(full, X_OK) == 0) {
            struct stat st;
            if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
                return 1;
        }
        d += n;
        if (!*d)
            return 0;
    }
}

/* ---- time and processes ---- */

long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int wait_for(pid_t pid, long timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() >= deadline)
            return -2;
        sleep_ms(5);
    }
}

int san_factor(void)
{
#if defined(__SANITIZE_THREAD__)
    return 5;
#elif defined(__SANITIZE_ADDRESS__)
    return 3;
#else
    return 1;
#endif
}

int tmo(int s)
{
    const char *w = getenv("ANNOTATE_WRAP");
    return w && *w ? s * 20 : s * 3;
}

/* ---- failure messages ---- */

void show(const char *what, int rc, const char *out)
{
    fprintf(stderr, "\n  %s: exit %d; output:\n%s\n", what, rc, out ? out : "");
}

void show_log(const char *what, int rc, const char *log_path)
{
    char tail[3000];
    file_tail(log_path, tail, sizeof tail);
    show(what, rc, tail);
}

const char *printable(const char *s, size_t n)
{
    static char out[4][320];
    static int k;
    char *o = out[k++ % 4];
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < sizeof out[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            o[j++] = (char)c;
        else
            j += (size_t)snprintf(o + j, sizeof out[0] - j, "\\x%02x", c);
    }
    o[j] = '\0';
    return o;
}

int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void free_strs(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- pseudo-random numbers ---- */

uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

void fill_random(uint64_t *state, unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(xorshift64(state) >> 56);
}

/* ---- PNG ---- */

#define STORED_MAX 65535u /* the largest stored deflate block */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_fill(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes a chunk's length and type at p; its data is then at p + 8. */
static unsigned char *chunk_start(unsigned char *p, const char *type, size_t len)
{
    put32(p, (uint32_t)len);
    memcpy(p + 4, type, 4);
    return p + 8;
}

/* Ends the chunk whose data (len bytes) starts at p + 8 with its CRC; returns its whole size. */
static size_t chunk_end(unsigned char *p, size_t len)
{
    put32(p + 8 + len, crc32_of(p + 4, len + 4));
    return len + 12;
}

static size_t stored_blocks(size_t raw)
{
    return raw ? (raw + STORED_MAX - 1) / STORED_MAX : 1;
}

size_t png_gray8_size(uint32_t w, uint32_t h, int with_pad, size_t pad)
{
    size_t raw = (size_t)h * (1 + (size_t)w);
    size_t idat = 2 + 5 * stored_blocks(raw) + raw + 4; /* zlib header, blocks, adler32 */
    return 8 + (12 + 13) + (12 + idat) + (with_pad ? 12 + pad : 0) + 12;
}

size_t png_gray8(unsigned char *out, uint32_t w, uint32_t h, const unsigned char *scanlines,
                 const unsigned char *pad_data, size_t pad)
{
    pthread_once(&crc_once, crc_fill);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char *p = out;
    memcpy(p, sig, 8);
    p += 8;
    /* IHDR: depth 8, colour type 0 (grey), deflate, filter method 0, no interlace. */
    unsigned char *d = chunk_start(p, "IHDR", 13);
    put32(d, w);
    put32(d + 4, h);
    d[8] = 8;
    d[9] = 0;
    d[10] = d[11] = d[12] = 0;
    p += chunk_end(p, 13);

    size_t raw = (size_t)h * (1 + (size_t)w), blocks = stored_blocks(raw);
    size_t zlen = 2 + 5 * blocks + raw + 4;
    unsigned char *z = chunk_start(p, "IDAT", zlen);
    *z++ = 0x78; /* deflate, 32 KiB window; 0x7801 is a multiple of 31 as zlib requires */
    *z++ = 0x01;
    uint32_t a = 1, b = 0;
    size_t done = 0;
    do {
        size_t k = raw - done > STORED_MAX ? STORED_MAX : raw - done;
        *z++ = done + k == raw; /* BFINAL on the last block, BTYPE 00: stored */
        *z++ = (unsigned char)k;
        *z++ = (unsigned char)(k >> 8);
        *z++ = (unsigned char)~k;
        *z++ = (unsigned char)(~k >> 8);
        memcpy(z, scanlines + done, k);
        for (size_t j = 0; j < k; j++) {
            a = (a + z[j]) % 65521;
            b = (b + a) % 65521;
        }
        z += k;
        done += k;
    } while (done < raw);
    put32(z, (b << 16) | a);
    p += chunk_end(p, zlen);

    if (pad_data) {
        memcpy(chunk_start(p, "raNd", pad), pad_data, pad);
        p += chunk_end(p, pad);
    }
    chunk_start(p, "IEND", 0);
    p += chunk_end(p, 0);
    return (size_t)(p - out);
}
