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

#include "common/fdio.h"
#include "util.h" /* the PNG writer and the PRNG, shared with the tests' generated trees */

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
    const uint32_t W = 64;
    uint32_t H = (uint32_t)((size > 120 ? size - 120 : 1) / (W + 1));
    if (H < 1)
        H = 1;
    size_t raw = (size_t)H * (W + 1), file_size = png_gray8_size(W, H, 0, 0);
    unsigned char *file = malloc(file_size);
    unsigned char *pix = malloc(raw + 8); /* filled 8 bytes at a time */
    if (!file || !pix) {
        fprintf(stderr, "gen-images: out of memory\n");
        return 1;
    }
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
            uint64_t r = xorshift64(&x);
            memcpy(pix + p, &r, 8);
        }
        for (uint32_t r = 0; r < H; r++)
            pix[(size_t)r * (W + 1)] = 0; /* filter type: none */
        size_t f = png_gray8(file, W, H, pix, NULL, 0);
        snprintf(path, sizeof path, "%s/%04zu/img%07zu.png", dir, i / 1000, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || fd_write_all(fd, file, f) || close(fd)) {
            fprintf(stderr, "gen-images: cannot write %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "gen-images: %zu PNG files of %zu bytes in %s (%.1f s, %.0f files/s)\n", n, file_size,
            dir, el, el > 0 ? (double)n / el : 0.0);
    free(file);
    free(pix);
    return 0;
}
