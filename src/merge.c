/* merge: see merge.h. Two passes over memory-mapped inputs: the first collects the paths that
 * have an ok row anywhere, the second writes each path's winning row once. The output goes to a
 * temporary file renamed over OUT, so OUT is never half-written. */
#include "merge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resume.h"

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
    unsigned long long rows_in, rows_out;
};

static void on_row(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    struct pass *p = ud;
    if (!p->second) {
        p->rows_in++;
        if (ok)
            doneset_add(p->ok, path, len);
        return;
    }
    if (!ok && doneset_has(p->ok, path, len))
        return;
    if (doneset_add(p->written, path, len)) {
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

int merge_main(int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 3 ? stderr : stdout,
                "usage: annotate merge OUT.csv SHARD.csv...\n"
                "Combines results files into OUT.csv with one row per image (ok wins over failed).\n");
        return argc < 3 ? 2 : 0;
    }
    const char *out = argv[1];
    int n = argc - 2, rc = 0;
    struct input *in = calloc((size_t)n, sizeof *in);
    char *header = NULL;
    if (!in) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        in[i].name = argv[i + 2];
        if (!strcmp(in[i].name, out)) {
            fprintf(stderr, "annotate merge: %s is both an input and the output; write to a new file\n", out);
            rc = 2;
            goto done;
        }
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
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.merge.tmp", out);
    struct pass p = {doneset_new(), doneset_new(), NULL, NULL, 0, 0, 0};
    if (!p.ok || !p.written) {
        fprintf(stderr, "annotate merge: out of memory\n");
        rc = 2;
    }
    for (p.second = 0; p.second < 2 && rc == 0; p.second++) {
        if (p.second) {
            p.f = fopen(tmp, "wb");
            if (!p.f) {
                fprintf(stderr, "annotate merge: cannot create %s: %s\n", tmp, strerror(errno));
                rc = 2;
                break;
            }
            fputs(header, p.f);
        }
        for (int i = 0; i < n && rc == 0; i++) {
            char err[300];
            size_t complete;
            p.text = in[i].text;
            if (csv_rows(in[i].text, in[i].len, header, on_row, &p, &complete, err, sizeof err) < 0) {
                fprintf(stderr, "annotate merge: %s: %s (all inputs must come from the same pipeline)\n",
                        in[i].name, err);
                rc = 2;
            } else if (!p.second && complete < in[i].len) {
                fprintf(stderr, "annotate merge: %s ends in a torn row (%zu bytes), ignored\n", in[i].name,
                        in[i].len - complete);
            }
        }
    }
    if (p.f) {
        int bad = fflush(p.f) || fsync(fileno(p.f));
        bad |= fclose(p.f);
        if (rc == 0 && (bad || rename(tmp, out))) {
            fprintf(stderr, "annotate merge: cannot write %s: %s\n", out, strerror(errno));
            rc = 2;
        }
        if (rc)
            unlink(tmp);
    }
    if (rc == 0)
        fprintf(stderr, "annotate merge: %llu rows in, %llu images out, in %s\n", p.rows_in, p.rows_out, out);
    doneset_free(p.ok);
    doneset_free(p.written);
done:
    for (int i = 0; i < n; i++)
        if (in[i].text && in[i].len)
            munmap((void *)in[i].text, in[i].len);
    free(in);
    free(header);
    return rc;
}
