/* util_tree: the test trees (see util_tree.h). Not a suite: only helpers. */
#include "tree.h"
#include "util.h"
#include "common/fdio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum kind { K_IMG, K_EMPTY, K_TEXT, K_FIFO, K_SYMLINK, K_SOCK };

struct hostile {
    enum kind kind;
    const char *rel;
    const char *target; /* K_SYMLINK */
};

/* Every directory on the way is created; none of them is itself a kind. */
static const struct hostile HOSTILE[] = {
    {K_IMG, "comma,name.jpg", NULL},
    {K_IMG, "quote\"name.png", NULL},
    {K_IMG, "new\nline.jpg", NULL},
    {K_IMG, "carriage\rreturn.png", NULL},
    {K_IMG, "with space.jpeg", NULL},
    {K_IMG, "-leading-dash.jpg", NULL},
    {K_IMG, "bad\xff" "byte.png", NULL},
    {K_IMG, "caf\xc3\xa9.jpg", NULL},
    {K_IMG, "\xe6\x97\xa5\xe6\x9c\xac.png", NULL},
    {K_IMG, "UPPER.JPG", NULL},
    {K_IMG, "Mixed.Png", NULL},
    {K_IMG, "tab\there.gif", NULL},
    {K_IMG, "back\\slash.bmp", NULL},
    {K_IMG, "semi;colon 'apos' $dollar.webp", NULL},
    {K_IMG, ".hidden.png", NULL},
    {K_IMG, "double..dot.jpg", NULL},
    {K_IMG, "a/b/c/d/e/f/deep.jpg", NULL},
    {K_IMG, "a/b/sibling.gif", NULL},
    {K_IMG, "dir, with \"comma\"/sub\nline/-dash dir/inner.png", NULL},
    {K_IMG, "\xff\xfe dir/caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.jpeg", NULL},
    {K_IMG, "looks.jpg/inside.png", NULL},
    {K_EMPTY, "x.jpg", NULL},
    {K_TEXT, "notes.txt", NULL},
    {K_TEXT, "photo.jpg.txt", NULL},
    {K_TEXT, "noext", NULL},
    {K_TEXT, "trailingdot.", NULL},
    {K_TEXT, "jpg", NULL},
    {K_FIFO, "fifo.jpg", NULL},
    {K_SYMLINK, "dangling.jpg", "does-not-exist.jpg"},
    {K_SYMLINK, "link.jpg", "comma,name.jpg"},
    {K_SYMLINK, "a/linkdir.jpg", "../looks.jpg"},
    {K_SYMLINK, "a/loop", ".."},
    {K_SOCK, "sock.png", NULL},
};
#define N_HOSTILE (sizeof HOSTILE / sizeof HOSTILE[0])

static int has_image_ext(const char *name)
{
    static const char *const exts[] = {"jpg", "jpeg", "png", "gif", "bmp", "webp"};
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0)
            return 1;
    return 0;
}

/* Sorted image file names of dir, full paths. */
static int list_images(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **v = NULL;
    size_t k = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name))
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                goto fail;
            v = nv;
        }
        size_t len = strlen(dir) + 1 + strlen(e->d_name) + 1;
        if (!(v[k] = malloc(len)))
            goto fail;
        snprintf(v[k++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(v, k, sizeof *v, cmp_strp);
    *out = v;
    *n = k;
    return 0;
fail:
    closedir(d);
    free_strs(v, k);
    errno = ENOMEM;
    return -1;
}

static int copy_file_at(const char *src, int dirfd, const char *name)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[16384];
    ssize_t r;
    int rc = 0;
    while ((r = read(in, buf, sizeof buf)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        if (fd_write_all(out, buf, (size_t)r) != 0) {
            rc = -1;
            break;
        }
    }
    close(in);
    if (close(out) != 0)
        rc = -1;
    return rc;
}

/* Opens (creating) the directories of rel's dirname below rootfd; *base gets the last name. */
static int open_parent(int rootfd, const char *rel, char *buf, size_t cap, const char **base)
{
    size_t len = strlen(rel);
    if (len + 1 > cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, rel, len + 1);
    int fd = dup(rootfd);
    if (fd < 0)
        return -1;
    char *p = buf;
    for (char *slash; (slash = strchr(p, '/'));) {
        *slash = '\0';
        if (mkdirat(fd, p, 0755) != 0 && errno != EEXIST) {
            close(fd);
            return -1;
        }
        int nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (nfd < 0)
            return -1;
        fd = nfd;
        p = slash + 1;
    }
    *base = p;
    return fd;
}

int tree_make_hostile(const char *root, const char *images_dir)
{
    char **imgs = NULL;
    size_t n_imgs = 0;
    if (list_images(images_dir, &imgs, &n_imgs) != 0)
        return -1;
    if (n_imgs == 0) {
        free_strs(imgs, n_imgs);
        errno = ENOENT;
        return -1;
    }
    int rc = -1, rootfd = -1;
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        goto out;
    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        goto out;
    size_t next_img = 0;
    for (size_t i = 0; i < N_HOSTILE; i++) {
        const struct hostile *h = &HOSTILE[i];
        char buf[512];
        const char *base;
        int dfd = open_parent(rootfd, h->rel, buf, sizeof buf, &base);
        if (dfd < 0)
            goto out;
        int r = 0;
        switch (h->kind) {
        case K_IMG:
            r = copy_file_at(imgs[next_img++ % n_imgs], dfd, base);
            break;
        case K_EMPTY: {
            int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
            r = fd < 0 ? -1 : close(fd);
            break;
        }
        case K_TEXT: {
            int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
            static const char txt[] = "not an image\n";
            r = fd < 0 ? -1 : fd_write_all(fd, txt, sizeof txt - 1);
            if (fd >= 0 && close(fd) != 0)
                r = -1;
            break;
        }
        case K_FIFO:
            r = mkfifoat(dfd, base, 0644);
            if (r != 0 && errno == EEXIST)
                r = 0;
            break;
        case K_SYMLINK:
            r = symlinkat(h->target, dfd, base);
            if (r != 0 && errno == EEXIST)
                r = 0;
            break;
        case K_SOCK: {
            /* Best effort: sun_path holds ~107 bytes and there is no bindat. */
            struct sockaddr_un a = {.sun_family = AF_UNIX};
            size_t rl = strlen(root), hl = strlen(h->rel);
            if (rl + 1 + hl < sizeof a.sun_path) {
                memcpy(a.sun_path, root, rl);
                a.sun_path[rl] = '/';
                memcpy(a.sun_path + rl + 1, h->rel, hl + 1);
                int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (sfd >= 0) {
                    (void)bind(sfd, (struct sockaddr *)&a, sizeof a);
                    close(sfd);
                }
            }
            break;
        }
        }
        close(dfd);
        if (r != 0)
            goto out;
    }
    rc = 0;
out:
    if (rootfd >= 0) {
        int e = errno;
        close(rootfd);
        errno = e;
    }
    free_strs(imgs, n_imgs);
    return rc;
}

int tree_expected(const char *root, char ***paths, size_t *n)
{
    size_t root_len = strlen(root);
    int slash = root_len > 0 && root[root_len - 1] == '/';
    char **v = calloc(N_HOSTILE, sizeof *v);
    if (!v)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < N_HOSTILE; i++) {
        if (HOSTILE[i].kind != K_IMG && HOSTILE[i].kind != K_EMPTY)
            continue;
        size_t len = root_len + 1 + strlen(HOSTILE[i].rel) + 1;
        if (!(v[k] = malloc(len))) {
            free_strs(v, k);
            return -1;
        }
        snprintf(v[k++], len, "%s%s%s", root, slash ? "" : "/", HOSTILE[i].rel);
    }
    qsort(v, k, sizeof *v, cmp_strp);
    *paths = v;
    *n = k;
    return 0;
}

/* Removes parent/name: a directory recursively, anything else with unlinkat. */
static int rm_at(int parent, const char *name)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -1;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        (void)fchmodat(parent, name, 0700, 0);
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return -1;
    /* Read all names first, then close the stream: the depth of the recursion costs one fd per
     * level, not two. */
    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return -1;
    }
    (void)fchmod(fd, 0700); /* unreadable (chmod 000) directories, when not root */
    char *names = NULL;
    size_t used = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
            continue;
        size_t len = strlen(nm) + 1;
        if (used + len > cap) {
            cap = (cap + len) * 2;
            char *nn = realloc(names, cap);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        memcpy(names + used, nm, len);
        used += len;
    }
    closedir(d);
    for (size_t at = 0; rc == 0 && at < used; at += strlen(names + at) + 1)
        if (rm_at(fd, names + at) != 0)
            rc = -1;
    free(names);
    close(fd);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

int tree_rm(const char *root)
{
    return rm_at(AT_FDCWD, root);
}

/* ---- generated trees ---- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Eight bytes a draw: generated trees are made by the hundred thousand (splitmix64 rather than
 * util's xorshift64, whose fill_random spends a draw a byte). */
static void fill_splitmix(unsigned char *p, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = splitmix(state);
        for (size_t j = 0; j < 8 && i + j < n; j++)
            p[i + j] = (unsigned char)(r >> (8 * j));
    }
}

#define PNG_MIN 70u   /* 1x1 image */
#define PNG_PAD_W 4096u /* widest row used; past it a padding chunk makes up the size (one row of
                         * at most 4107 pixels also fits one stored deflate block, and stays under
                         * ImageMagick's default 16K-pixel width policy) */

/* Fills buf (size bytes) with file index i; scratch holds at least size bytes. */
static void make_content(unsigned char *buf, unsigned char *scratch, size_t size, size_t i, unsigned seed)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint64_t state = ((uint64_t)seed << 32) ^ (uint64_t)i * 0x2545f4914f6cdd1dull;
    if (size < PNG_MIN) {
        size_t k = size < 8 ? size : 8;
        memcpy(buf, sig, k);
        for (size_t j = 0; j < 8 && k + j < size; j++)
            buf[k + j] = (unsigned char)((uint64_t)i >> (8 * j));
        if (size > 16)
            fill_splitmix(buf + 16, size - 16, &state);
        return;
    }
    size_t w = size - (PNG_MIN - 1), pad = 0;
    int padded = 0;
    if (w > PNG_PAD_W + 11) { /* room for a padding chunk (12 bytes or more) */
        w = PNG_PAD_W;
        pad = size - (PNG_PAD_W + PNG_MIN - 1) - 12;
        padded = 1;
    }
    /* One row: the filter byte (none), then pixels whose first 8 are the index. */
    unsigned char *row = scratch, *pad_data = scratch + 1 + w;
    row[0] = 0;
    fill_splitmix(row + 1, w, &state);
    for (size_t j = 0; j < 8 && j < w; j++)
        row[1 + j] = (unsigned char)((uint64_t)i >> (8 * j));
    fill_splitmix(pad_data, pad, &state);
    png_gray8(buf, (uint32_t)w, 1, row, padded ? pad_data : NULL, pad);
}

int tree_generated_path(const char *root, size_t i, char *buf, size_t cap)
{
    size_t len = strlen(root);
    int slash = len > 0 && root[len - 1] == '/';
    int n = snprintf(buf, cap, "%s%s%02x/img%08zu.png", root, slash ? "" : "/", (unsigned)(i % 256), i);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int tree_make_generated(const char *root, size_t n, size_t bytes_each, unsigned seed)
{
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        return -1;
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return -1;
    int shard[256];
    size_t n_shards = n < 256 ? n : 256;
    for (size_t s = 0; s < 256; s++)
        shard[s] = -1;
    unsigned char *buf = bytes_each ? malloc(2 * bytes_each) : NULL; /* the file, then scratch */
    int rc = -1;
    if (bytes_each && !buf)
        goto out;
    for (size_t s = 0; s < n_shards; s++) {
        char name[8];
        snprintf(name, sizeof name, "%02x", (unsigned)s);
        if (mkdirat(rootfd, name, 0755) != 0 && errno != EEXIST)
            goto out;
        if ((shard[s] = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%08zu.png", i);
        int fd = openat(shard[i % 256], name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            goto out;
        int r = 0;
        if (bytes_each) {
            make_content(buf, buf + bytes_each, bytes_each, i, seed);
            r = fd_write_all(fd, buf, bytes_each);
        }
        if (close(fd) != 0 || r != 0)
            goto out;
    }
    rc = 0;
out:;
    int e = errno;
    for (size_t s = 0; s < 256; s++)
        if (shard[s] >= 0)
            close(shard[s]);
    close(rootfd);
    free(buf);
    errno = e;
    return rc;
}
