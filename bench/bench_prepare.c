/* bench-prepare: image preparation (src/prepare/) measured; bench/prepare.sh runs it beside
 * Pillow (bench/prepare_pillow.py) for make bench-prepare.
 *
 *   bench-prepare cpu DIR MAX_SIDE QUALITY ROUNDS
 *       Every *.jpg of DIR read into memory first, then prepared ({"max_side": MAX_SIDE,
 *       "quality": QUALITY}: upright, stripped, JPEG) one after the other on this thread, libvips
 *       with one worker thread, ROUNDS times. Prints the CPU (user + sys, every thread of the
 *       process) and the wall time per image of the best round, and the bytes before and after.
 *   bench-prepare memory DIR BUDGET THREADS
 *       THREADS threads prepare every *.jpg of DIR to 1024 px, each first taking the file's size
 *       and what prep_peak_bytes says from a byte budget of BUDGET (flow/budget.h, the run's
 *       --max-memory), then cut four crops of 224 px out of a held source of the image (the file,
 *       prep_source_bytes and prep_crop_peak_bytes taken). Prints the peak RSS of the process
 *       (VmHWM) and the budget's peak.
 *   bench-prepare measure FILE WHAT
 *       One preparation of FILE, alone, after a warm-up: the growth of the peak RSS beside
 *       prep_peak_bytes's estimate. WHAT: max1024, cover224, full (no resize), or crop (a
 *       source, then a crop of a quarter of the image to 224 px). */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <vips/vips.h>

#include "flow/budget.h"
#include "prepare/prepare.h"

struct file {
    char *path;
    unsigned char *bytes;
    size_t len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            v = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int read_file(struct file *f)
{
    FILE *in = fopen(f->path, "rb");
    if (!in || fseek(in, 0, SEEK_END) || (f->len = (size_t)ftell(in)) == 0 || fseek(in, 0, SEEK_SET) ||
        !(f->bytes = malloc(f->len)) || fread(f->bytes, 1, f->len, in) != f->len) {
        fprintf(stderr, "bench-prepare: cannot read %s\n", f->path);
        if (in)
            fclose(in);
        return -1;
    }
    fclose(in);
    return 0;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->path, ((const struct file *)b)->path);
}

/* The *.jpg files of dir, sorted, their bytes read when load. */
static struct file *list(const char *dir, int load, int *n)
{
    DIR *d = opendir(dir);
    struct file *v = NULL;
    struct dirent *e;
    *n = 0;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".jpg"))
            continue;
        v = realloc(v, (size_t)(*n + 1) * sizeof *v);
        v[*n].path = malloc(strlen(dir) + l + 2);
        sprintf(v[*n].path, "%s/%s", dir, e->d_name);
        v[*n].bytes = NULL;
        if (load && read_file(&v[*n]))
            exit(1);
        (*n)++;
    }
    if (d)
        closedir(d);
    if (!*n) {
        fprintf(stderr, "bench-prepare: no *.jpg in %s\n", dir);
        exit(1);
    }
    qsort(v, (size_t)*n, sizeof *v, by_path);
    return v;
}

static struct prep_spec max_side(int side, int quality)
{
    struct prep_spec s;
    prep_spec_default(&s);
    s.resize = PREP_RESIZE_MAX_SIDE, s.width = s.height = side, s.quality = quality;
    return s;
}

static int cpu(const char *dir, int side, int quality, int rounds)
{
    int n;
    struct file *f = list(dir, 1, &n);
    struct prep_spec s = max_side(side, quality);
    struct prep_result r;
    char err[400];
    double best_cpu = 1e9, best_wall = 1e9;
    size_t in = 0, out = 0;
    int w = 0, h = 0;
    for (int k = -1; k < rounds; k++) { /* k == -1: warm-up, not counted */
        double c0 = cpu_s(), t0 = now();
        out = in = 0;
        for (int i = 0; i < n; i++) {
            if (prep_image(f[i].bytes, f[i].len, &s, 0, &r, err, sizeof err)) {
                fprintf(stderr, "bench-prepare: %s: %s\n", f[i].path, err);
                return 1;
            }
            in += f[i].len, out += r.len, w = r.width, h = r.height;
            prep_result_free(&r);
            if (k < 0)
                break;
        }
        if (k >= 0 && cpu_s() - c0 < best_cpu)
            best_cpu = cpu_s() - c0, best_wall = now() - t0;
    }
    printf("annotate (libvips %s)  %d images  CPU %.1f ms/image  wall %.1f ms/image  "
           "%.0f KB -> %.1f KB/image (%dx%d, last)  best of %d rounds\n",
           vips_version_string(), n, 1000 * best_cpu / n, 1000 * best_wall / n, in / 1024.0 / n, out / 1024.0 / n, w,
           h, rounds);
    return 0;
}

/* ---- memory ---- */

static struct file *files;
static int n_files;
static atomic_int next_file;
static atomic_int failures;

static int take(uint64_t n)
{
    return budget_take(n, NULL, NULL, NULL);
}

/* The header, from the file's first MiB (not charged: a share is never held while another is
 * waited for, or a thread could wait for itself). */
static int probe_head(const char *path, uint64_t *size, struct prep_info *info)
{
    static const size_t HEAD = 1 << 20;
    unsigned char *head = malloc(HEAD);
    FILE *in = fopen(path, "rb");
    size_t n = in && head ? fread(head, 1, HEAD, in) : 0;
    char err[400];
    int rc = in && !fseek(in, 0, SEEK_END) && n > 0 ? prep_probe(head, n, 0, info, err, sizeof err) : -1;
    *size = in ? (uint64_t)ftell(in) : 0;
    if (in)
        fclose(in);
    free(head);
    return rc;
}

/* One image as a run would prepare it: the file's bytes and the preparation's estimate taken
 * from the budget in one piece; then, as a crop stage would, a held source and four crops. */
static void one_image(struct file *f)
{
    char err[400];
    struct prep_info info;
    struct prep_spec s = max_side(1024, 85), crop = max_side(224, 85);
    struct prep_result r;
    uint64_t size;
    if (probe_head(f->path, &size, &info)) {
        atomic_fetch_add(&failures, 1);
        return;
    }
    struct file mine = {.path = f->path};
    uint64_t need = size + prep_peak_bytes(&info, &s);
    take(need);
    if (read_file(&mine) || prep_image(mine.bytes, mine.len, &s, 0, &r, err, sizeof err))
        atomic_fetch_add(&failures, 1);
    prep_result_free(&r);
    free(mine.bytes);
    budget_give(need);
    struct prep_rect box[4];
    uint64_t crops = 0;
    for (int k = 0; k < 4; k++) {
        box[k] = (struct prep_rect){k * info.width / 5, k * info.height / 5, info.width / 4, info.height / 4};
        uint64_t c = prep_crop_peak_bytes(&info, box[k], &crop);
        crops = c > crops ? c : crops;
    }
    need = size + prep_source_bytes(&info) + crops;
    take(need);
    struct prep_source *src = NULL;
    mine.bytes = NULL;
    if (read_file(&mine) || prep_source_open(mine.bytes, mine.len, 0, &src, err, sizeof err))
        atomic_fetch_add(&failures, 1);
    free(mine.bytes);
    for (int k = 0; src && k < 4; k++) {
        if (prep_crop(src, box[k], &crop, &r, err, sizeof err))
            atomic_fetch_add(&failures, 1);
        prep_result_free(&r);
    }
    prep_source_free(src);
    budget_give(need);
}

static void *memory_worker(void *arg)
{
    (void)arg;
    int i;
    while ((i = atomic_fetch_add(&next_file, 1)) < n_files)
        one_image(&files[i]);
    return NULL;
}

static int memory(const char *dir, uint64_t budget, int threads)
{
    files = list(dir, 0, &n_files);
    budget_set(budget);
    double t0 = now();
    pthread_t t[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, memory_worker, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    printf("%d photos, %d threads, budget %.0f MB: peak RSS %.0f MB, budget's peak %.0f MB, %.1f s, %d failures\n",
           n_files, threads, budget / 1e6, status_kb("VmHWM:") * 1024 / 1e6, budget_peak() / 1e6, now() - t0,
           atomic_load(&failures));
    return atomic_load(&failures) ? 1 : 0;
}

/* ---- one measurement ---- */

static int measure(const char *path, const char *what)
{
    struct file f = {.path = (char *)path};
    char err[400];
    struct prep_info info;
    if (read_file(&f) || prep_probe(f.bytes, f.len, 0, &info, err, sizeof err))
        return 1;
    struct prep_spec s = max_side(1024, 85), tiny = max_side(16, 85);
    if (!strcmp(what, "cover224")) {
        s.resize = PREP_RESIZE_COVER, s.width = s.height = 224;
    } else if (!strcmp(what, "full") || !strcmp(what, "crop")) {
        prep_spec_default(&s);
    }
    struct prep_result r;
    /* warm-up on another image's worth of libvips: its threads and buffers exist before */
    unsigned char *small = NULL;
    size_t small_len = 0;
    if (prep_image(f.bytes, f.len, &tiny, 0, &r, err, sizeof err))
        return 1;
    small = r.data, small_len = r.len;
    struct prep_result w;
    prep_image(small, small_len, &tiny, 0, &w, err, sizeof err);
    prep_result_free(&w);
    prep_result_free(&r);
    long before = status_kb("VmRSS:");
    reset_peak();
    uint64_t estimate;
    if (!strcmp(what, "crop")) {
        struct prep_source *src = NULL;
        struct prep_rect box = {info.width / 4, info.height / 4, info.width / 2, info.height / 2};
        struct prep_spec c = max_side(224, 85);
        if (prep_source_open(f.bytes, f.len, 0, &src, err, sizeof err) ||
            prep_crop(src, box, &c, &r, err, sizeof err))
            return 1;
        estimate = prep_source_bytes(&info) + prep_crop_peak_bytes(&info, box, &c);
        prep_result_free(&r);
        prep_source_free(src);
    } else {
        if (prep_image(f.bytes, f.len, &s, 0, &r, err, sizeof err))
            return 1;
        estimate = prep_peak_bytes(&info, &s);
        prep_result_free(&r);
    }
    long grew = status_kb("VmHWM:") - before;
    printf("%-9s %5dx%-5d %-10s %s  peak RSS grew %6.1f MB, estimate %6.1f MB\n", what, info.stored_w,
           info.stored_h, info.mime + 6, info.streams ? "streamed" : "whole   ", grew * 1024 / 1e6, estimate / 1e6);
    free(f.bytes);
    return grew * 1024 > (long)estimate ? 3 : 0;
}

int main(int argc, char **argv)
{
    char err[256];
    if (prep_init(1, err, sizeof err)) {
        fprintf(stderr, "bench-prepare: %s\n", err);
        return 1;
    }
    int rc = 2;
    if (argc == 6 && !strcmp(argv[1], "cpu"))
        rc = cpu(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else if (argc == 5 && !strcmp(argv[1], "memory"))
        rc = memory(argv[2], strtoull(argv[3], NULL, 10), atoi(argv[4]));
    else if (argc == 4 && !strcmp(argv[1], "measure"))
        rc = measure(argv[2], argv[3]);
    else
        fprintf(stderr, "usage: bench-prepare cpu DIR MAX_SIDE QUALITY ROUNDS | memory DIR BUDGET THREADS | "
                        "measure FILE max1024|cover224|full|crop\n");
    prep_shutdown();
    return rc;
}
