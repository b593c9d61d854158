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
    const char *text; /* the file's bytes: its map, or "" when it is empty */
    size_t len;
    void *map;        /* what munmap gives back, or NULL */
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

/* One merge: the output, its temporary file, the inputs and the two passes over them. */
struct merge {
    const char *out;
    char *const *names; /* the inputs' names, [n] */
    int n;
    struct input *in;   /* [n] */
    char tmp[4096];     /* OUT.merge.tmp */
    int tmp_fd;         /* until the second pass opens it as pass.f */
    int own_tmp;        /* tmp is ours (locked): removed on any failure */
    char *header;       /* the inputs' header line, with its newline */
    struct pass pass;
};

/* The inputs, the output's name and its temporary file (taken, locked and empty). 0, or -1 with a
 * message on stderr. */
static int prepare(struct merge *m)
{
    if (!(m->in = calloc((size_t)m->n, sizeof *m->in))) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return -1;
    }
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], m->out)) {
            fprintf(stderr, "annotate merge: %s is both an input and the output; write to a new file\n", m->out);
            return -1;
        }
    if ((size_t)snprintf(m->tmp, sizeof m->tmp, "%s.merge.tmp", m->out) >= sizeof m->tmp) {
        fprintf(stderr, "annotate merge: the output name is too long\n");
        return -1;
    }
    if ((m->tmp_fd = take_tmp(m->tmp, m->out)) < 0)
        return -1;
    m->own_tmp = 1;
    return 0;
}

/* Maps the input named name into in. 0, or -1 with a message on stderr. */
static int map_input(struct input *in, const char *name)
{
    in->name = name;
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "annotate merge: cannot read %s: %s\n", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    in->len = (size_t)st.st_size;
    void *map = in->len ? mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) {
        fprintf(stderr, "annotate merge: cannot map %s: %s\n", name, strerror(errno));
        return -1;
    }
    in->map = map;
    in->text = map ? map : "";
    return 0;
}

/* The length of in's header line, an annotate results header, without its newline. 0, or -1
 * with a message on stderr. */
static int check_header(const struct input *in, size_t *hlen)
{
    const char *nl = memchr(in->text, '\n', in->len);
    if (!nl) {
        fprintf(stderr, "annotate merge: %s has no header line: is it a results file?\n", in->name);
        return -1;
    }
    *hlen = (size_t)(nl - in->text);
    if (results_header(in->text, *hlen))
        return 0;
    char shown[81];
    size_t sl = *hlen < sizeof shown - 1 ? *hlen : sizeof shown - 1;
    for (size_t k = 0; k < sl; k++) /* the file's own bytes, made printable */
        shown[k] = in->text[k] >= 0x20 && in->text[k] < 0x7f ? in->text[k] : '?';
    shown[sl] = 0;
    fprintf(stderr,
            "annotate merge: %s is not an annotate results file: its header \"%s%s\" is not "
            "path,status,<stage columns>,error,attempts,elapsed_ms\n",
            in->name, shown, *hlen > sl ? "..." : "");
    return -1;
}

/* Maps every input and checks its header; the first one's is the output's. */
static int map_inputs(struct merge *m)
{
    for (int i = 0; i < m->n; i++) {
        size_t hlen;
        if (map_input(&m->in[i], m->names[i]) || check_header(&m->in[i], &hlen))
            return -1;
        if (!m->header && !(m->header = strndup(m->in[i].text, hlen + 1))) {
            fprintf(stderr, "annotate merge: out of memory\n");
            return -1;
        }
    }
    return 0;
}

/* The second pass writes into the temporary file, from the header on. */
static int open_output(struct merge *m)
{
    struct pass *p = &m->pass;
    if (!(p->f = fdopen(m->tmp_fd, "wb"))) {
        fprintf(stderr, "annotate merge: cannot write %s: %s\n", m->tmp, strerror(errno));
        return -1;
    }
    m->tmp_fd = -1; /* p->f owns it now */
    fputs(m->header, p->f);
    return 0;
}

/* One pass over one input's rows (on_row does the pass's work). 0, or -1 with a message. */
static int pass_over(struct merge *m, const struct input *in)
{
    struct pass *p = &m->pass;
    char err[300];
    size_t complete;
    p->text = in->text;
    int64_t got = csv_rows(in->text, in->len, m->header, on_row, p, &complete, err, sizeof err);
    if (got == -2 || p->oom) {
        fprintf(stderr, "annotate merge: out of memory reading %s\n", in->name);
        return -1;
    }
    if (got < 0) {
        fprintf(stderr, "annotate merge: %s: %s (all inputs must come from the same pipeline)\n", in->name, err);
        return -1;
    }
    if (!p->second && complete < in->len)
        fprintf(stderr, "annotate merge: %s ends in a torn row (%zu bytes), ignored\n", in->name, in->len - complete);
    return 0;
}

/* The first pass collects the paths that have an ok row; the second writes each path's winning
 * row once. */
static int merge_rows(struct merge *m)
{
    struct pass *p = &m->pass;
    p->ok = doneset_new();
    p->written = doneset_new();
    if (!p->ok || !p->written) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return -1;
    }
    for (p->second = 0; p->second < 2; p->second++) {
        if (p->second && open_output(m))
            return -1;
        for (int i = 0; i < m->n; i++)
            if (pass_over(m, &m->in[i]))
                return -1;
    }
    return 0;
}

/* The temporary file, on disk, renamed over OUT while still locked. */
static int commit(struct merge *m)
{
    FILE *f = m->pass.f;
    if (fflush(f) || ferror(f) || fsync(fileno(f)) || rename(m->tmp, m->out)) {
        fprintf(stderr, "annotate merge: cannot write %s: %s\n", m->out, strerror(errno));
        return -1;
    }
    return 0;
}

/* On a failure the temporary file is removed while still locked; then everything is let go. */
static void merge_end(struct merge *m, int rc)
{
    if (rc && m->own_tmp)
        unlink(m->tmp);
    if (m->pass.f)
        fclose(m->pass.f);
    if (m->tmp_fd >= 0)
        close(m->tmp_fd);
    doneset_free(m->pass.ok);
    doneset_free(m->pass.written);
    for (int i = 0; m->in && i < m->n; i++)
        if (m->in[i].map)
            munmap(m->in[i].map, m->in[i].len);
    free(m->in);
    free(m->header);
}

int merge_main(int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 3 ? stderr : stdout,
                "usage: annotate merge OUT.csv SHARD.csv...\n"
                "Combines results files into OUT.csv with one row per image (ok wins over failed).\n");
        return argc < 3 ? 2 : 0;
    }
    struct merge m = {.out = argv[1], .names = argv + 2, .n = argc - 2, .tmp_fd = -1};
    int rc = prepare(&m) || map_inputs(&m) || merge_rows(&m) || commit(&m) ? 2 : 0;
    if (rc == 0)
        fprintf(stderr, "annotate merge: %llu rows in, %llu images out, in %s\n", m.pass.rows_in, m.pass.rows_out,
                m.out);
    merge_end(&m, rc);
    return rc;
}
