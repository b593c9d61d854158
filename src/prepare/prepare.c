/* prepare: finds the plugin annotate-vips.so (plugin.h), checks its table, and forwards
 * prepare.h's functions to it. The only code of annotate that knows there is a plugin. */
#include "prepare/prepare.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mime.h"
#include "prepare/plugin.h"

/* Where `make install` puts the plugin ($(PREFIX)/lib/annotate; the Makefile defines it). */
#ifndef PREP_PLUGIN_LIBDIR
#define PREP_PLUGIN_LIBDIR "/usr/local/lib/annotate"
#endif

static _Atomic(const struct prep_plugin *) plugin;
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;

static const struct prep_plugin *loaded(void)
{
    return atomic_load_explicit(&plugin, memory_order_acquire);
}

/* dir/tail into dst (PATH_MAX bytes): 1, or 0 when it does not fit (then it is not looked at). */
static int join(char *dst, const char *dir, const char *tail)
{
    int n = snprintf(dst, PATH_MAX, "%s%s", dir, tail);
    return n > 0 && n < PATH_MAX;
}

/* The files looked at, in order, into paths[0..n): in $ANNOTATE_PLUGIN_DIR alone when it is set;
 * else in the binary's own folder (a build tree), its ../lib/annotate (an install, wherever it
 * was moved) and PREP_PLUGIN_LIBDIR. */
static int plugin_paths(char paths[3][PATH_MAX])
{
    const char *env = getenv("ANNOTATE_PLUGIN_DIR");
    if (env && *env)
        return join(paths[0], env, "/" PREP_PLUGIN_FILE);
    int n = 0;
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = l > 0 ? memrchr(exe, '/', (size_t)l) : NULL;
    if (slash) {
        *slash = 0;
        n += join(paths[n], exe, "/" PREP_PLUGIN_FILE);
        n += join(paths[n], exe, "/../lib/annotate/" PREP_PLUGIN_FILE);
    }
    n += join(paths[n], PREP_PLUGIN_LIBDIR, "/" PREP_PLUGIN_FILE);
    return n;
}

/* Opens the plugin at path and checks its table. Returns it, or NULL with err. Lazily: the
 * plugin's own symbols are all resolved when it is linked (-z defs), and resolving libvips'
 * hundred libraries' at once (RTLD_NOW) costs a run 25 ms for functions it never calls. */
static const struct prep_plugin *open_plugin(const char *path, char *err, size_t errlen)
{
    void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "image preparation: cannot load %s: %s", path, dlerror());
        return NULL;
    }
    const struct prep_plugin *p = dlsym(h, PREP_PLUGIN_SYMBOL);
    if (!p) {
        snprintf(err, errlen, "image preparation: %s is not annotate's plugin (it has no %s)", path,
                 PREP_PLUGIN_SYMBOL);
        return NULL; /* left loaded: unloading a library that started GLib is not safe */
    }
    if (p->abi != PREP_PLUGIN_ABI || p->size != sizeof *p || p->layout != PREP_PLUGIN_LAYOUT) {
        snprintf(err, errlen,
                 "image preparation: %s is from another build of annotate (%s), not this one (%s): install"
                 " this build's plugin beside it (make install)",
                 path, p->version ? p->version : "?", ANNOTATE_VERSION);
        return NULL;
    }
    return p;
}

/* The first of plugin_paths that is there is the one taken (or refused). */
static const struct prep_plugin *find_plugin(char *err, size_t errlen)
{
    char paths[3][PATH_MAX], tried[3 * PATH_MAX + 8] = "";
    int n = plugin_paths(paths);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (access(paths[i], F_OK) == 0)
            return open_plugin(paths[i], err, errlen);
        int w = snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", paths[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    snprintf(err, errlen,
             "image preparation (a stage with \"image\", or a crop) needs annotate's libvips plugin %s, and it is"
             " not there: looked for %s (ANNOTATE_PLUGIN_DIR names the folder that holds it)",
             PREP_PLUGIN_FILE, n ? tried : "it in no folder (the path is too long)");
    return NULL;
}

int prep_plugin_load(char *err, size_t errlen)
{
    if (loaded())
        return 0;
    pthread_mutex_lock(&load_mu);
    const struct prep_plugin *p = loaded();
    if (!p && (p = find_plugin(err, errlen)))
        atomic_store_explicit(&plugin, p, memory_order_release);
    pthread_mutex_unlock(&load_mu);
    return p ? 0 : -1;
}

int prep_init(int threads, char *err, size_t errlen)
{
    return prep_plugin_load(err, errlen) ? -1 : loaded()->init(threads, err, errlen);
}

void prep_shutdown(void)
{
    const struct prep_plugin *p = loaded();
    if (p)
        p->shutdown();
}

/* The plugin of a started process, or NULL with err saying prep_init came first. */
static const struct prep_plugin *started(char *err, size_t errlen)
{
    const struct prep_plugin *p = loaded();
    if (!p)
        snprintf(err, errlen, "image preparation is not started (prep_init)");
    return p;
}

/* A type the plugin gave, as this program's static string of it (mime.h). */
static const char *own_mime(const char *m)
{
    return m ? mime_canonical(m) : NULL;
}

int prep_probe(const void *bytes, size_t len, uint64_t max_pixels, struct prep_info *info, char *err,
               size_t errlen)
{
    const struct prep_plugin *p = started(err, errlen);
    int rc = p ? p->probe(bytes, len, max_pixels, info, err, errlen) : -1;
    if (rc == 0)
        info->mime = own_mime(info->mime);
    return rc;
}

int prep_image(const void *bytes, size_t len, const struct prep_spec *spec, uint64_t max_pixels,
               struct prep_result *out, char *err, size_t errlen)
{
    const struct prep_plugin *p = started(err, errlen);
    *out = (struct prep_result){0};
    int rc = p ? p->image(bytes, len, spec, max_pixels, out, err, errlen) : -1;
    if (rc == 0)
        out->mime = own_mime(out->mime);
    return rc;
}

void prep_result_free(struct prep_result *r)
{
    const struct prep_plugin *p = loaded();
    if (p)
        p->result_free(r); /* without a plugin there is no result to free */
}

int prep_source_open(const void *bytes, size_t len, uint64_t max_pixels, struct prep_source **out, char *err,
                     size_t errlen)
{
    const struct prep_plugin *p = started(err, errlen);
    *out = NULL;
    return p ? p->source_open(bytes, len, max_pixels, out, err, errlen) : -1;
}

const struct prep_info *prep_source_info(const struct prep_source *s)
{
    return loaded()->source_info(s); /* a source exists only once the plugin does */
}

int prep_crop(struct prep_source *s, struct prep_rect r, const struct prep_spec *spec, struct prep_result *out,
              char *err, size_t errlen)
{
    const struct prep_plugin *p = started(err, errlen);
    *out = (struct prep_result){0};
    int rc = p ? p->crop(s, r, spec, out, err, errlen) : -1;
    if (rc == 0)
        out->mime = own_mime(out->mime);
    return rc;
}

void prep_source_free(struct prep_source *s)
{
    const struct prep_plugin *p = loaded();
    if (p && s)
        p->source_free(s);
}

uint64_t prep_peak_bytes(const struct prep_info *info, const struct prep_spec *spec)
{
    const struct prep_plugin *p = loaded();
    return p ? p->peak_bytes(info, spec) : UINT64_MAX;
}

uint64_t prep_source_bytes(const struct prep_info *info)
{
    const struct prep_plugin *p = loaded();
    return p ? p->source_bytes(info) : UINT64_MAX;
}

uint64_t prep_crop_peak_bytes(const struct prep_info *info, struct prep_rect r, const struct prep_spec *spec)
{
    const struct prep_plugin *p = loaded();
    return p ? p->crop_peak_bytes(info, r, spec) : UINT64_MAX;
}
