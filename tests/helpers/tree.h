/* util_tree: builds and removes file trees for the tests (the scanner's and the end-to-end ones).
 *
 * Paths in and out are plain byte strings: a name may hold a comma, a quote, a newline, a
 * carriage return, invalid UTF-8 and so on, so compare them with memcmp/strcmp, never print them
 * raw into a CSV by hand. */
#ifndef ANNOTATE_TESTS_UTIL_TREE_H
#define ANNOTATE_TESTS_UTIL_TREE_H

#include <stddef.h>

/* Creates root (mkdir; it may already exist, empty) and fills it with copies of the image files
 * of images_dir (those whose extension is jpg jpeg png gif bmp webp, any case, in name order,
 * used round-robin) under hostile names: a comma, a double quote, a newline, a carriage return,
 * a tab, a backslash, a space, a leading dash, a 0xff byte, UTF-8 (é, 日本), upper-case
 * extensions (.JPG, .Png), a hidden file, directories with such names nested up to six levels,
 * and a directory named like an image (looks.jpg/). Also: an empty image x.jpg (0 bytes, which
 * the scanner reports), non-images (notes.txt, photo.jpg.txt, noext, trailingdot., jpg), a FIFO
 * fifo.jpg, a dangling symlink dangling.jpg, a symlink link.jpg to a real image, a directory
 * symlink a/linkdir.jpg -> ../looks.jpg, a loop a/loop -> .., and, when root is short enough for
 * a sockaddr_un, a unix socket sock.png. None of the links, the FIFO or the socket may be
 * reported. Returns 0, or -1 (errno set) when something could not be made. */
int tree_make_hostile(const char *root, const char *images_dir);

/* The sorted (strcmp, i.e. byte order) list of the paths a scan of a tree_make_hostile(root, ..)
 * tree must report: every regular image file, the empty one included, each written as the
 * scanner writes it (root, then one '/' unless root already ends in '/', then the relative
 * path). *paths is malloc'd, each string too: free with free_strs (util.h). Returns 0 or -1. */
int tree_expected(const char *root, char ***paths, size_t *n);

/* Removes root and everything below it without following symbolic links (a link is removed,
 * never its target). Makes unreadable directories readable first. A missing root is success.
 * Returns 0 or -1. */
int tree_rm(const char *root);

/* Writes n distinct files into root/XX/imgNNNNNNNN.png, XX = (index % 256) in hex (only the
 * shards needed are made; root is created if missing). Each file is exactly bytes_each bytes:
 *   bytes_each == 0       empty files (for walk benchmarks);
 *   1 .. 69               the first bytes of a PNG signature, then the index and seeded
 *                         pseudo-random bytes (not decodable);
 *   >= 70                 a valid 8-bit grayscale PNG, one row of seeded pseudo-random pixels
 *                         (at most 4107 wide) whose first 8 are the file's index, so all files
 *                         differ; past ~4 KB a private ancillary chunk ("raNd", random bytes)
 *                         makes up the size.
 * Files differ from each other whenever bytes_each >= 16. Returns 0 or -1. */
int tree_make_generated(const char *root, size_t n, size_t bytes_each, unsigned seed);

/* The path tree_make_generated gives file index i, written into buf (like the scanner would
 * with this root). Returns the length, or -1 if it does not fit. */
int tree_generated_path(const char *root, size_t i, char *buf, size_t cap);

#endif
