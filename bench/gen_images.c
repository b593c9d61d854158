/* gen-images: writes N small, valid, distinct PNG files into a sharded tree, quickly, for
 * benchmarks (make bench-data N=1000000 SIZE=2048).
 *
 *   gen-images [--size BYTES] [--seed S] N DIR
 *
 * Each file is an 8-bit greyscale PNG of about BYTES bytes whose pixels come from a PRNG seeded
 * with the file's index, so no two files are alike (and the mock's answers vary). The pixel data
 * sits in stored (uncompressed) deflate blocks: valid for every decoder, and free to produce.
 * Files go 1000 to a folder: DIR/0000/img0000000.png ... */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Appends a chunk (length, type, data, CRC) at out; returns bytes written. */
static size_t chunk(unsigned char *out, const char *type, const unsigned char *data, size_t n)
{
    be32(out, (uint32_t)n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    be32(out + 8 + n, crc(out + 4, n + 4));
    return n + 12;
}

int main(int argc, char **argv)
{
    size_t size = 2048;
    unsigned seed = 1;
    int a = 1;
    for (; a < argc && argv[a][0] == '-' && argv[a][1] == '-'; a += 2) {
        if (a + 1 >= argc)
            break;
        if (!strcmp(argv[a], "--size"))
            size = strtoul(argv[a + 1], NULL, 10);
        else if (!strcmp(argv[a], "--seed"))
            seed = (unsigned)strtoul(argv[a + 1], NULL, 10);
        else {
            fprintf(stderr, "gen-images: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (argc - a != 2 || size < 100) {
        fprintf(stderr, "usage: gen-images [--size BYTES (>= 100)] [--seed S] N DIR\n");
        return 2;
    }
    size_t n = strtoul(argv[a], NULL, 10);
    const char *dir = argv[a + 1];
    crc_init();
    const uint32_t W = 64;
    uint32_t H = (uint32_t)((size > 120 ? size - 120 : 1) / (W + 1));
    if (H < 1)
        H = 1;
    size_t raw = (size_t)H * (W + 1);
    size_t blocks = raw / 65535 + 1;
    unsigned char *idat = malloc(2 + raw + blocks * 5 + 4);
    unsigned char *file = malloc(raw + blocks * 5 + 200);
    unsigned char *pix = malloc(raw);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "gen-images: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char path[4096];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) {
            snprintf(path, sizeof path, "%s/%04zu", dir, i / 1000);
            if (mkdir(path, 0755) && errno != EEXIST) {
                fprintf(stderr, "gen-images: cannot create %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
        uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ull ^ (i + 1) * 0xD1B54A32D192ED03ull;
        for (size_t p = 0; p < raw; p += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t k = raw - p < 8 ? raw - p : 8;
            memcpy(pix + p, &x, k);
        }
        for (uint32_t r = 0; r < H; r++)
            pix[(size_t)r * (W + 1)] = 0; /* filter type: none */
        /* zlib stream of stored blocks */
        size_t o = 0;
        idat[o++] = 0x78;
        idat[o++] = 0x01;
        uint32_t s1 = 1, s2 = 0;
        for (size_t p = 0; p < raw;) {
            size_t k = raw - p > 65535 ? 65535 : raw - p;
            idat[o++] = p + k == raw;
            idat[o++] = (unsigned char)k;
            idat[o++] = (unsigned char)(k >> 8);
            idat[o++] = (unsigned char)~k;
            idat[o++] = (unsigned char)(~k >> 8);
            memcpy(idat + o, pix + p, k);
            for (size_t q = 0; q < k; q++) {
                s1 = (s1 + pix[p + q]) % 65521;
                s2 = (s2 + s1) % 65521;
            }
            o += k;
            p += k;
        }
        be32(idat + o, (s2 << 16) | s1);
        o += 4;
        size_t f = 0;
        memcpy(file, "\x89PNG\r\n\x1a\n", 8);
        f = 8;
        unsigned char ihdr[13];
        be32(ihdr, W);
        be32(ihdr + 4, H);
        ihdr[8] = 8;  /* bit depth */
        ihdr[9] = 0;  /* greyscale */
        ihdr[10] = ihdr[11] = ihdr[12] = 0;
        f += chunk(file + f, "IHDR", ihdr, 13);
        f += chunk(file + f, "IDAT", idat, o);
        f += chunk(file + f, "IEND", NULL, 0);
        snprintf(path, sizeof path, "%s/%04zu/img%07zu.png", dir, i / 1000, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, file, f) != (ssize_t)f || close(fd)) {
            fprintf(stderr, "gen-images: cannot write %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "gen-images: %zu PNG files of %zu bytes in %s (%.1f s, %.0f files/s)\n", n,
            raw + blocks * 5 + 6 + 8 + 25 + 12 + 12, dir, el, el > 0 ? (double)n / el : 0.0);
    free(idat);
    free(file);
    free(pix);
    return 0;
}
