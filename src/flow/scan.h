/* scan: a streaming, recursive directory walk that yields image files.
 *
 * Like `find DIR -type f`: symbolic links are not followed (neither to files nor to
 * directories), and FIFOs, sockets and devices are skipped without ever being opened. Memory is
 * O(depth of the tree), never O(number of files): one open directory stream per level.
 * The walk trusts readdir's d_type and only calls fstatat when the file system does not fill it
 * in, so it costs about what find costs. Sizes are not checked here: the load stage fstat()s the
 * file it opened anyway (race-free), and reports empty or oversized files there. */
#ifndef ANNOTATE_SCAN_H
#define ANNOTATE_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct scanner scanner;

struct scan_opts {
    /* Extensions that count as images, without the dot, compared case-insensitively.
     * NULL means the default: jpg jpeg png gif bmp webp. */
    const char *const *exts;
    size_t n_exts;
    /* Directory streams open at once, the root's included (at least 2); 0: the default, 128. A
     * run short of file descriptors lowers it (see fdlimit.h). */
    size_t max_open;
};

struct scan_entry {
    const char *path; /* root joined with rel, byte for byte as found; valid until the next call */
    size_t path_len;
    const char *rel;  /* the part of path below root (points into path) */
    size_t rel_len;
    const char *error; /* NULL for an image; for a folder the walk could not read, why (see scan_next) */
};

/* Opens a walk of root. Returns NULL and writes a message into err when root cannot be opened
 * or is not a directory. opts may be NULL. The scanner copies what it needs from opts. */
scanner *scan_open(const char *root, const struct scan_opts *opts, char *err, size_t errlen);

/* Next image file: returns 1 and fills *out, or 0 at the end of the walk. A directory that
 * cannot be read is skipped, counted, and its error kept (scan_warnings / scan_last_warning);
 * the walk goes on. With scan_report_folders on, each such directory is also returned, once,
 * with 2: out->path is the folder's path with a '/' at its end (root/sub/), out->error says why
 * ("cannot read folder: Permission denied"). The same for a folder whose reading failed part way
 * (its images found so far were returned), and for an entry whose type cannot be found out (then
 * out->path is the entry's, without the '/', and out->error begins "cannot stat"). */
int scan_next(scanner *s, struct scan_entry *out);

/* Turns the returns of 2 of scan_next on (1) or off (0, the default). */
void scan_report_folders(scanner *s, int on);

/* With scan_report_folders on: folders that could not be read and could not be returned either
 * (no memory to queue them). A run that has any must not claim to be complete. */
uint64_t scan_lost(const scanner *s);

/* Number of directories (or entries) that could not be read so far, and the last such message. */
uint64_t scan_warnings(const scanner *s);
const char *scan_last_warning(const scanner *s);

/* 1 when a file named name (the last path component, len bytes) has one of opts' extensions (opts
 * NULL: the default ones): what the walk would report. */
int scan_name_is_image(const struct scan_opts *opts, const char *name, size_t len);

/* Closes every open directory stream. scan_close(NULL) is a no-op. */
void scan_close(scanner *s);

/* Parses a comma-separated extension list ("jpg,png,tiff") into opts; the strings point into a
 * copy owned by *storage, which the caller frees. Returns 0, or -1 with a message in err. */
int scan_parse_exts(const char *list, struct scan_opts *opts, char **storage, char *err, size_t errlen);

#endif
