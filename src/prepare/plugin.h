/* plugin: the one table through which annotate reaches the code of prepare.h that needs libvips.
 *
 * libvips and its hundred libraries cost every process that links them its dynamic loading at
 * start (make bench-start: `annotate --version` 2.4-2.9x slower with them linked, 1.6x under
 * valgrind, 2x under ASan), and most runs prepare no image. So that code (src/prepare/vips.c) is
 * built into a plugin of its own, annotate-vips.so, which annotate dlopen()s once, when a run's
 * pipeline prepares images (pipeline_prepares: a stage with "image", or a crop stage):
 * prepare.c finds it, checks this table, and forwards prepare.h's functions to it. Callers see
 * prepare.h only.
 *
 * The table is the plugin's only exported symbol (PREP_PLUGIN_SYMBOL; the rest is built with
 * hidden visibility). A plugin is taken only when abi, size and layout are this build's, so a
 * plugin of another build or version (an older install) is refused by name instead of crashing.
 * The functions are prepare.h's, with the same contracts, in the same order. */
#ifndef ANNOTATE_PREP_PLUGIN_H
#define ANNOTATE_PREP_PLUGIN_H

#include "prepare/prepare.h"
#include "version.h"

#define PREP_PLUGIN_FILE "annotate-vips.so"
#define PREP_PLUGIN_SYMBOL "annotate_prep_plugin"
#define PREP_PLUGIN_ABI 1u /* bump when a function below changes its meaning */
/* The sizes of the structures the two sides pass, in one number: a change in any of them makes
 * an older plugin's layout differ from this build's. */
#define PREP_PLUGIN_LAYOUT                                                                                         \
    ((unsigned)(sizeof(struct prep_spec) + 1000u * sizeof(struct prep_info) + 1000000u * sizeof(struct prep_result)))

#define PREP_PLUGIN_EXPORT __attribute__((visibility("default")))

struct prep_plugin {
    unsigned abi;        /* PREP_PLUGIN_ABI */
    unsigned size;       /* sizeof(struct prep_plugin) */
    unsigned layout;     /* PREP_PLUGIN_LAYOUT */
    const char *version; /* ANNOTATE_VERSION of the build that made it */
    int (*init)(int threads, char *err, size_t errlen);
    void (*shutdown)(void);
    int (*probe)(const void *bytes, size_t len, uint64_t max_pixels, struct prep_info *info, char *err,
                 size_t errlen);
    int (*image)(const void *bytes, size_t len, const struct prep_spec *spec, uint64_t max_pixels,
                 struct prep_result *out, char *err, size_t errlen);
    void (*result_free)(struct prep_result *r);
    int (*source_open)(const void *bytes, size_t len, uint64_t max_pixels, struct prep_source **out, char *err,
                       size_t errlen);
    const struct prep_info *(*source_info)(const struct prep_source *s);
    int (*crop)(struct prep_source *s, struct prep_rect r, const struct prep_spec *spec, struct prep_result *out,
                char *err, size_t errlen);
    void (*source_free)(struct prep_source *s);
    uint64_t (*peak_bytes)(const struct prep_info *info, const struct prep_spec *spec);
    uint64_t (*source_bytes)(const struct prep_info *info);
    uint64_t (*crop_peak_bytes)(const struct prep_info *info, struct prep_rect r, const struct prep_spec *spec);
};

#endif
