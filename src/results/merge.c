/* merge: see merge.h. Two passes over memory-mapped inputs: the first collects the paths that
 * have an ok row anywhere, the second writes each path's winning row once. The output goes to a
 * temporary file renamed over OUT, so OUT is never half-written.
 *
 * The temporary file is OUT.merge.tmp, taken before any input is read: opened without following
 * a link (a link or other non-regular file there is removed first, an empty directory too), locked, and checked to still be the file
 * of that name. A merge killed with -9 leaves it behind unlocked, so the next merge takes it over
 * and truncates it; one whose owner is alive is locked, and the merge exits 2 without touching
 * it. From then on every exit but success removes it, while still holding the lock. */
#include "results/merge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "results/resume.h"

struct input {
    const char *name;
    const char *text;
    size_t len;
};

struct pass {
    struct doneset *ok, *written;
    FILE *f;
    const char *text;
    int second;
    int oom;
    unsigned long long rows_in, rows_out;
};

static void on_row(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    struct pass *p = ud;
    if (!p->second) {
        p->rows_in++;
        if (ok && doneset_add(p->ok, path, len) < 0)
            p->oom = 1;
        return;
    }
    if (!ok && doneset_has(p->ok, path, len))
        return;
    int added = doneset_add(p->written, path, len);
    if (added < 0)
        p->oom = 1;
    else if (added) {
        fwrite(p->text + start, 1, end - start, p->f);
        p->rows_out++;
    }
}

/* 1 when the line [h, h + len) (without its newline) is an annotate results header:
 * path,status, then the stage columns (pipeline names: letters, digits, _ - .), then
 * error,attempts,elapsed_ms. A CSV from anything else would otherwise be merged by whatever sits
 * in its first two columns. */
static int results_header(const char *h, size_t len)
{
    static const char head[] = "path,status,", tail[] = "error,attempts,elapsed_ms";
    size_t hl = sizeof head - 1, tl = sizeof tail - 1;
    if (len < hl + tl || memcmp(h, head, hl) || memcmp(h + len - tl, tail, tl))
        return 0;
    /* The middle is empty or "name," repeated. */
    size_t field = 0;
    for (size_t i = hl; i < len - tl; i++) {
        char c = h[i];
        if (c == ',') {
            if (field == 0)
                return 0;
            field = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '-' || c == '.') {
            field++;
        } else {
            return 0;
        }
    }
    return field == 0;
}

/* Opens tmp for writing, locked and empty (see the top of the file). Returns the descriptor, or -1
 * with a message on stderr. */
static int take_tmp(const char *tmp, const char *out)
{
    for (int tries = 0; tries < 100; tries++) {
        struct stat st;
        if (lstat(tmp, &st) == 0 && !S_ISREG(st.st_mode) && (S_ISDIR(st.st_mode) ? rmdir(tmp) : unlink(tmp)) &&
            errno != ENOENT) {
            fprintf(stderr, "annotate merge: cannot remove %s (not a regular file): %s\n", tmp, strerror(errno));
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == ELOOP)
                continue; /* became a link since the lstat: remove it again */
            fprintf(stderr, "annotate merge: cannot create %s: %s\n", tmp, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            if (errno == EWOULDBLOCK)
                fprintf(stderr, "annotate merge: another annotate merge is writing %s (it holds %s); wait for it to "
                                "end\n", out, tmp);
            else
                fprintf(stderr, "annotate merge: cannot lock %s: %s\n", tmp, strerror(errno));
            close(fd);
            return -1;
        }
        /* The name may have been renamed over (the merge that held it finished) or removed
         * between our open and our lock: then the lock is on a file that is not tmp. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && lstat(tmp, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            if (ftruncate(fd, 0) == 0)
                return fd;
            fprintf(stderr, "annotate merge: cannot truncate %s: %s\n", tmp, strerror(errno));
            unlink(tmp);
            close(fd);
            return -1;
        }
        close(fd);
    }
    fprintf(stderr, "annotate merge: cannot take %s: it keeps being replaced\n", tmp);
    return -1;
}

int merge_main(int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 3 ? stderr : stdout,
                "usage: annotate merge OUT.csv SHARD.csv...\n"
                "Combines results files into OUT.csv with one row per image (ok wins over failed).\n");
        return argc < 3 ? 2 : 0;
    }
    const char *out = argv[1];
    int n = argc - 2, rc = 0, tmp_fd = -1;
    char tmp[4096];
    struct input *in = calloc((size_t)n, sizeof *in);
    char *header = NULL;
    struct pass p = {0};
    if (!in) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return 2;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[i + 2], out)) {
            fprintf(stderr, "annotate merge: %s is both an input and the output; write to a new file\n", out);
            free(in);
            return 2;
        }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.merge.tmp", out) >= sizeof tmp) {
        fprintf(stderr, "annotate merge: the output name is too long\n");
        free(in);
        return 2;
    }
    if ((tmp_fd = take_tmp(tmp, out)) < 0) {
        free(in);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        in[i].name = argv[i + 2];
        int fd = open(in[i].name, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st)) {
            fprintf(stderr, "annotate merge: cannot read %s: %s\n", in[i].name, strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = 2;
            goto done;
        }
        in[i].len = (size_t)st.st_size;
        in[i].text = in[i].len ? mmap(NULL, in[i].len, PROT_READ, MAP_PRIVATE, fd, 0) : "";
        close(fd);
        if (in[i].text == MAP_FAILED) {
            in[i].text = NULL;
            fprintf(stderr, "annotate merge: cannot map %s: %s\n", in[i].name, strerror(errno));
            rc = 2;
            goto done;
        }
        const char *nl = memchr(in[i].text, '\n', in[i].len);
        if (!nl) {
            fprintf(stderr, "annotate merge: %s has no header line: is it a results file?\n", in[i].name);
            rc = 2;
            goto done;
        }
        size_t hlen = (size_t)(nl - in[i].text);
        if (!results_header(in[i].text, hlen)) {
            char shown[81];
            size_t sl = hlen < sizeof shown - 1 ? hlen : sizeof shown - 1;
            for (size_t k = 0; k < sl; k++) /* the file's own bytes, made printable */
                shown[k] = in[i].text[k] >= 0x20 && in[i].text[k] < 0x7f ? in[i].text[k] : '?';
            shown[sl] = 0;
            fprintf(stderr,
                    "annotate merge: %s is not an annotate results file: its header \"%s%s\" is not "
                    "path,status,<stage columns>,error,attempts,elapsed_ms\n",
                    in[i].name, shown, hlen > sl ? "..." : "");
            rc = 2;
            goto done;
        }
        if (!header && !(header = strndup(in[i].text, hlen + 1))) {
            fprintf(stderr, "annotate merge: out of memory\n");
            rc = 2;
            goto done;
        }
    }
    p.ok = doneset_new();
    p.written = doneset_new();
    if (!p.ok || !p.written) {
        fprintf(stderr, "annotate merge: out of memory\n");
        rc = 2;
    }
    for (p.second = 0; p.second < 2 && rc == 0; p.second++) {
        if (p.second) {
            p.f = fdopen(tmp_fd, "wb");
            if (!p.f) {
                fprintf(stderr, "annotate merge: cannot write %s: %s\n", tmp, strerror(errno));
                rc = 2;
                break;
            }
            tmp_fd = -1; /* p.f owns it now */
            fputs(header, p.f);
        }
        for (int i = 0; i < n && rc == 0; i++) {
            char err[300];
            size_t complete;
            p.text = in[i].text;
            int64_t got = csv_rows(in[i].text, in[i].len, header, on_row, &p, &complete, err, sizeof err);
            if (got == -2 || p.oom) {
                fprintf(stderr, "annotate merge: out of memory reading %s\n", in[i].name);
                rc = 2;
            } else if (got < 0) {
                fprintf(stderr, "annotate merge: %s: %s (all inputs must come from the same pipeline)\n",
                        in[i].name, err);
                rc = 2;
            } else if (!p.second && complete < in[i].len) {
                fprintf(stderr, "annotate merge: %s ends in a torn row (%zu bytes), ignored\n", in[i].name,
                        in[i].len - complete);
            }
        }
    }
    /* Renamed while still locked; on any failure removed while still locked. */
    if (p.f && rc == 0 && (fflush(p.f) || ferror(p.f) || fsync(fileno(p.f)) || rename(tmp, out))) {
        fprintf(stderr, "annotate merge: cannot write %s: %s\n", out, strerror(errno));
        rc = 2;
    }
    if (rc == 0)
        fprintf(stderr, "annotate merge: %llu rows in, %llu images out, in %s\n", p.rows_in, p.rows_out, out);
done:
    if (rc)
        unlink(tmp);
    if (p.f)
        fclose(p.f);
    if (tmp_fd >= 0)
        close(tmp_fd);
    doneset_free(p.ok);
    doneset_free(p.written);
    for (int i = 0; i < n; i++)
        if (in[i].text && in[i].len)
            munmap((void *)in[i].text, in[i].len);
    free(in);
    free(header);
    return rc;
}
