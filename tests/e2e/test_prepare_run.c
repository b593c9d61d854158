/* Suite "prepare_run": prepared images through whole runs, against a Pillow server that looks at
 * what it receives (tests/servers/prepsrv.py) and the images of tests/helpers/images.py.
 *
 *   - every EXIF orientation 1-8 arrives upright, without EXIF or GPS, at the size asked, under
 *     every strategy; the stage without "image" still gets the file as it is, EXIF included;
 *     {{image.width}} and {{image.height}} are the prepared copy's;
 *   - crops in each box format (and normalized) from a detector's boxes in the pixels of its own
 *     prepared image, cut from the upright original: their pixels checked against the formula of
 *     the coordinate image (R = x % 256, G = y % 256), under every strategy;
 *   - a refused box, a truncated or corrupt file, a decompression bomb, a file that is not an image
 *     fail their row with the reason, and no request is sent for them; HEIC and WebP inputs go;
 *   - a crop stage behind "when"; a batch stage of prepared images. */
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "util.h"

static char dir[512];
static struct mock_proc srv;

static const char *script(const char *rel)
{
    static char buf[4][1100];
    static int k;
    char *b = buf[k++ % 4];
    if (access(rel, R_OK) == 0)
        return rel;
    snprintf(b, sizeof buf[0], "../%s", rel);
    return b;
}

static int suite_init(void)
{
    char out[4000], imgs[600];
    if (make_tmpdir(dir, sizeof dir, "prepare_run"))
        return -1;
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    const char *mk[] = {pyserver_python(), script("tests/helpers/images.py"), "tests", imgs, NULL};
    if (run_cmd(mk, tmo(60), out, sizeof out) != 0) {
        fprintf(stderr, "images.py tests (needs python3-pil and libheif-examples): %s\n", out);
        return -1;
    }
    const char *argv[] = {pyserver_python(), script("tests/servers/prepsrv.py"), "--threads", NULL};
    return listener_start(&srv, argv, 1);
}

static int suite_cleanup(void)
{
    mock_stop(&srv);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return dir[0] && system(cmd) != 0 ? -1 : 0;
}

/* A folder tag under the suite's directory holding copies of the named images. */
static const char *folder(const char *tag, const char *const *names)
{
    static char root[700];
    char cmd[3000];
    snprintf(root, sizeof root, "%s/%s", dir, tag);
    int o = snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cd '%s/imgs' && cp", root, root, dir);
    for (int i = 0; names[i]; i++)
        o += snprintf(cmd + o, sizeof cmd - (size_t)o, " %s", names[i]);
    snprintf(cmd + o, sizeof cmd - (size_t)o, " '%s/'", root);
    return system(cmd) == 0 ? root : NULL;
}

static long server_requests(void)
{
    cJSON *st = mock_stats(&srv);
    long n = st ? mock_stat(st, "requests") : -1;
    cJSON_Delete(st);
    return n;
}

/* Runs annotate on root with the pipeline text and strategy (and option opt with its value val,
 * or opt NULL). Returns its exit status, the results in *c. */
static int run(const char *root, const char *pipeline, const char *strategy, const char *opt, const char *val,
               struct e2e_csv *c)
{
    char cfg[700], csv[700], out[8000];
    snprintf(cfg, sizeof cfg, "%s/p.json", dir);
    snprintf(csv, sizeof csv, "%s/r.csv", dir);
    if (write_file(cfg, pipeline, strlen(pipeline)))
        return -1;
    const char *argv[18] = {e2e_annotate_bin(), root, "--config", cfg, "--server", srv.base_url, "--out", csv,
                            "--force", "--quiet", "--strategy", strategy, "--workers", "3"};
    int n = 14;
    if (opt) {
        argv[n++] = opt;
        argv[n++] = val;
    }
    int rc = run_cmd(argv, tmo(120), out, sizeof out);
    if (rc > 1)
        fprintf(stderr, "annotate (%s): %s\n", strategy, out);
    memset(c, 0, sizeof *c);
    if (e2e_csv_read(csv, c))
        return -1;
    return rc;
}

static int col(const struct e2e_csv *c, const char *name)
{
    for (int i = 0; i < c->header.n; i++)
        if (!strcmp(c->header.f[i].s, name))
            return i;
    return -1;
}

/* Row whose path ends with name, or NULL. */
static const struct e2e_row *row(const struct e2e_csv *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *slash = strrchr(c->rows[i].f[0].s, '/');
        if (slash && !strcmp(slash + 1, name))
            return &c->rows[i];
    }
    return NULL;
}

/* The cell of column name in the row, parsed (NULL when empty or not JSON). */
static cJSON *cell(const struct e2e_csv *c, const struct e2e_row *r, const char *name)
{
    int k = col(c, name);
    return r && k >= 0 && k < r->n && r->f[k].len ? cJSON_Parse(r->f[k].s) : NULL;
}

static int num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static const char *str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static const char *const STRATEGIES[] = {"serial", "threads", "processes", "curl-multi",
                                         "load=processes,query=curl-multi", "load=threads,query=processes", NULL};

/* ---- orientation ---- */

static const char *const QUADS[] = {"quad_o1.jpg", "quad_o2.jpg", "quad_o3.jpg", "quad_o4.jpg", "quad_o5.jpg",
                                    "quad_o6.jpg", "quad_o7.jpg", "quad_o8.jpg", NULL};

static void check_upright(const struct e2e_csv *c, const char *strategy)
{
    CU_ASSERT_EQUAL(c->n, 8);
    for (int o = 0; QUADS[o]; o++) {
        const struct e2e_row *r = row(c, QUADS[o]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_STRING_EQUAL(r->f[1].s, "ok");
        cJSON *raw = cell(c, r, "raw"), *prep = cell(c, r, "prep"), *sized = cell(c, r, "sized");
        /* as stored: EXIF and GPS sent, upright only for orientation 1 */
        CU_ASSERT(num(raw, "exif") == 1 && num(raw, "gps") == 1);
        CU_ASSERT_EQUAL(!strcmp(str(raw, "quad"), "RGBW"), o == 0);
        /* prepared: upright, 32 px wide, no metadata */
        if (strcmp(str(prep, "quad"), "RGBW") || num(prep, "w") != 32 || num(prep, "h") != 24 ||
            num(prep, "exif") != 0 || strcmp(str(prep, "format"), "PNG"))
            fprintf(stderr, "%s %s: %s\n", strategy, QUADS[o], r->f[col(c, "prep")].s);
        CU_ASSERT_STRING_EQUAL(str(prep, "quad"), "RGBW");
        CU_ASSERT(num(prep, "w") == 32 && num(prep, "h") == 24 && num(prep, "exif") == 0 && num(prep, "gps") == 0);
        CU_ASSERT_STRING_EQUAL(str(prep, "format"), "PNG");
        /* a second spec: JPEG 16 px, and its size in the body */
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(sized, "fields");
        CU_ASSERT(num(sized, "w") == 16 && num(sized, "h") == 12 && !strcmp(str(sized, "format"), "JPEG"));
        CU_ASSERT(num(f, "w") == 16 && num(f, "h") == 12);
        cJSON_Delete(raw);
        cJSON_Delete(prep);
        cJSON_Delete(sized);
    }
}

static const char ORIENT[] =
    "{\"stages\": ["
    "{\"name\": \"raw\", \"url\": \"/look\"},"
    "{\"name\": \"prep\", \"url\": \"/look\", \"image\": {\"max_side\": 32, \"format\": \"png\"}},"
    "{\"name\": \"again\", \"url\": \"/look\", \"image\": {\"format\": \"png\", \"max_side\": 32, \"orient\": true},"
    " \"csv\": false},"
    "{\"name\": \"sized\", \"url\": \"/look\", \"image\": {\"max_side\": 16},"
    " \"body\": [{\"im_str\": \"{{image}}\", \"w\": \"{{image.width}}\", \"h\": \"{{image.height}}\"}]}]}";

static void test_orientations(void)
{
    const char *root = folder("orient", QUADS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    for (int s = 0; STRATEGIES[s]; s++) {
        struct e2e_csv c;
        long before = server_requests();
        CU_ASSERT_EQUAL(run(root, ORIENT, STRATEGIES[s], NULL, NULL, &c), 0);
        check_upright(&c, STRATEGIES[s]);
        CU_ASSERT_EQUAL(server_requests() - before, 8 * 4);
        e2e_csv_free(&c);
    }
}

/* ---- crops ---- */

/* The detector receives the coordinate image (300 x 200 upright) at 150 x 100 and answers the
 * boxes of its "boxes" field; the crop stages cut them from the original, losslessly. Box 0 is
 * (20, 40) 60 x 80 in the original, box 1 the whole image, box 2 clamped to (280, 180) 20 x 20.
 * The normalized ones: (37.5, 50) 75 x 100, rounded outwards to (37, 50) 76 x 100, the whole
 * image, and (262.5, 150) clamped and rounded to (262, 150) 38 x 50. */
static const char CROPS[] =
    "{\"stages\": ["
    "{\"name\": \"detect\", \"url\": \"/detect\", \"image\": {\"max_side\": 150, \"format\": \"png\"},"
    " \"fields\": {\"boxes\": {\"xywh\": [[10, 20, 30, 40], [0, 0, 150, 100], [140, 90, 50, 50]],"
    " \"xyxy\": [[10, 20, 40, 60], [0, 0, 150, 100], [140, 90, 190, 140]],"
    " \"cxcywh\": [[25, 40, 30, 40], [75, 50, 150, 100], [165, 115, 50, 50]],"
    " \"norm\": [[0.125, 0.25, 0.25, 0.5], [0, 0, 1, 1], [0.875, 0.75, 0.5, 0.5]]}}},"
    "{\"name\": \"xywh\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes.xywh[]\"},"
    " \"image\": {\"format\": \"png\"}},"
    "{\"name\": \"xyxy\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes.xyxy[]\", \"box\": \"xyxy\"},"
    " \"image\": {\"format\": \"png\"}},"
    "{\"name\": \"cxcywh\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes.cxcywh[]\","
    " \"box\": \"cxcywh\"}, \"image\": {\"format\": \"png\"}},"
    "{\"name\": \"norm\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes.norm[]\","
    " \"normalized\": true}, \"image\": {\"format\": \"png\"}},"
    "{\"name\": \"small\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes.xywh[0]\"},"
    " \"image\": {\"max_side\": 30, \"format\": \"png\"}}]}";

/* The crop of the coordinate image at (x, y), w x h, as the server saw it. */
static int crop_is(const cJSON *c, int x, int y, int w, int h)
{
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(c, "tl"), *br = cJSON_GetObjectItemCaseSensitive(c, "br");
    int ok = num(c, "w") == w && num(c, "h") == h && cJSON_GetArraySize(tl) == 3 && cJSON_GetArraySize(br) == 3 &&
             cJSON_GetArrayItem(tl, 0)->valueint == x % 256 && cJSON_GetArrayItem(tl, 1)->valueint == y % 256 &&
             cJSON_GetArrayItem(br, 0)->valueint == (x + w - 1) % 256 &&
             cJSON_GetArrayItem(br, 1)->valueint == (y + h - 1) % 256 && num(c, "exif") == 0;
    if (!ok) {
        char *t = cJSON_PrintUnformatted(c);
        fprintf(stderr, "crop (%d, %d) %d x %d: got %s\n", x, y, w, h, t ? t : "?");
        free(t);
    }
    return ok;
}

static void check_crops(const struct e2e_csv *c, const char *name)
{
    const struct e2e_row *r = row(c, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL(r->f[1].s, "ok");
    static const char *const FORMATS[] = {"xywh", "xyxy", "cxcywh", "norm", NULL};
    for (int f = 0; FORMATS[f]; f++) {
        cJSON *list = cell(c, r, FORMATS[f]);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(list), 3);
        int norm = !strcmp(FORMATS[f], "norm");
        if (cJSON_GetArraySize(list) == 3) {
            CU_ASSERT(norm ? crop_is(cJSON_GetArrayItem(list, 0), 37, 50, 76, 100)
                           : crop_is(cJSON_GetArrayItem(list, 0), 20, 40, 60, 80));
            CU_ASSERT(crop_is(cJSON_GetArrayItem(list, 1), 0, 0, 300, 200));
            CU_ASSERT(norm ? crop_is(cJSON_GetArrayItem(list, 2), 262, 150, 38, 50)
                           : crop_is(cJSON_GetArrayItem(list, 2), 280, 180, 20, 20));
        }
        cJSON_Delete(list);
    }
    cJSON *small = cell(c, r, "small");
    const cJSON *s0 = cJSON_GetArrayItem(small, 0);
    CU_ASSERT(cJSON_GetArraySize(small) == 1 && num(s0, "w") == 23 && num(s0, "h") == 30);
    cJSON_Delete(small);
}

static void test_crops(void)
{
    const char *const names[] = {"coord_o1.png", "coord_o6.png", "coord_o3.png", "coord_o7.png", NULL};
    const char *root = folder("crops", names);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    for (int s = 0; STRATEGIES[s]; s++) {
        struct e2e_csv c;
        CU_ASSERT_EQUAL(run(root, CROPS, STRATEGIES[s], NULL, NULL, &c), 0);
        CU_ASSERT_EQUAL(c.n, 4);
        for (int i = 0; names[i]; i++)
            check_crops(&c, names[i]);
        e2e_csv_free(&c);
    }
}

/* A box with no area left fails the image, naming the box; nothing is cut or sent for it. */
static void test_refused_box(void)
{
    const char *const names[] = {"coord_o1.png", NULL};
    const char *root = folder("badbox", names);
    const char *p = "{\"stages\": ["
                    "{\"name\": \"detect\", \"url\": \"/detect\", \"fields\": {\"boxes\": [[10, 10, 5, 5], [400, 10, 5, 5]]}},"
                    "{\"name\": \"crop\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes[]\"}}]}";
    for (int s = 0; STRATEGIES[s]; s++) {
        struct e2e_csv c;
        long before = server_requests();
        CU_ASSERT_EQUAL(run(root, p, STRATEGIES[s], NULL, NULL, &c), 1);
        const struct e2e_row *r = row(&c, "coord_o1.png");
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_STRING_EQUAL(r->f[1].s, "failed");
        CU_ASSERT_PTR_NOT_NULL(strstr(r->f[col(&c, "error")].s, "crop: box 1 [400, 10, 5, 5] (xywh) has no area"));
        CU_ASSERT_EQUAL(server_requests() - before, 1); /* the detector only */
        e2e_csv_free(&c);
    }
}

/* ---- bad images, other formats ---- */

static void test_bad_images(void)
{
    const char *const names[] = {"trunc.jpg", "trunc.png", "crc.png", "bomb.png", "junk.bin", "drawing.svg",
                                 "quad.heic", "coord.webp", "quad_o1.jpg", NULL};
    const char *root = folder("bad", names);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    const char *p = "{\"stages\": [{\"name\": \"prep\", \"url\": \"/look\", \"image\": {\"max_side\": 64, \"format\": \"png\"}}]}";
    static const struct {
        const char *name, *error;
    } WANT[] = {
        {"trunc.jpg", "cannot prepare the image: "},
        {"trunc.png", "cannot prepare the image: "},
        {"crc.png", "cannot prepare the image: "},
        {"bomb.png", "image too large: 50000\xc3\x97" "50000 pixels (--max-pixels 100000000)"},
        {"junk.bin", "not an image annotate reads"},
        {"drawing.svg", "not an image annotate reads"},
    };
    for (int s = 0; STRATEGIES[s]; s++) {
        struct e2e_csv c;
        long before = server_requests();
        CU_ASSERT_EQUAL(run(root, p, STRATEGIES[s], "--extensions", "jpg,png,bin,svg,heic,webp", &c), 1);
        CU_ASSERT_EQUAL(c.n, 9);
        for (size_t w = 0; w < sizeof WANT / sizeof WANT[0]; w++) {
            const struct e2e_row *r = row(&c, WANT[w].name);
            CU_ASSERT_PTR_NOT_NULL_FATAL(r);
            CU_ASSERT_STRING_EQUAL(r->f[1].s, "failed");
            if (!strstr(r->f[col(&c, "error")].s, WANT[w].error))
                fprintf(stderr, "%s: %s\n", WANT[w].name, r->f[col(&c, "error")].s);
            CU_ASSERT_PTR_NOT_NULL(strstr(r->f[col(&c, "error")].s, WANT[w].error));
            CU_ASSERT_STRING_EQUAL(r->f[col(&c, "attempts")].s, "0");
        }
        cJSON *heic = cell(&c, row(&c, "quad.heic"), "prep"), *webp = cell(&c, row(&c, "coord.webp"), "prep");
        CU_ASSERT(!strcmp(str(heic, "quad"), "RGBW") && num(heic, "w") == 64 && num(heic, "h") == 48);
        CU_ASSERT(num(webp, "w") == 43 && num(webp, "h") == 64); /* orientation 6: turned upright */
        cJSON_Delete(heic);
        cJSON_Delete(webp);
        CU_ASSERT_EQUAL(server_requests() - before, 3); /* only the three good images were sent */
        e2e_csv_free(&c);
    }
    /* a lower --max-pixels */
    struct e2e_csv c;
    CU_ASSERT_EQUAL(run(root, p, "threads", "--max-pixels", "3000", &c), 1);
    const struct e2e_row *r = row(&c, "quad_o1.jpg");
    CU_ASSERT(r && strstr(r->f[col(&c, "error")].s, "image too large: 64\xc3\x97" "48 pixels (--max-pixels 3000)"));
    e2e_csv_free(&c);
}

/* ---- "when", batches ---- */

static void test_when_and_batch(void)
{
    const char *const names[] = {"coord_o1.png", "quad_o6.jpg", "quad_o3.jpg", "quad_o8.jpg", "quad_o1.jpg", NULL};
    const char *root = folder("when", names);
    /* crops only for the coordinate image (the detector sees 300 px wide images), and a batch
     * stage of four prepared images a request */
    const char *p = "{\"stages\": ["
                    "{\"name\": \"detect\", \"url\": \"/detect\", \"fields\": {\"boxes\": [[0, 0, 10, 10]]}},"
                    "{\"name\": \"crop\", \"url\": \"/look\", \"input\": {\"each\": \"detect\", \"crop\": \".boxes[]\"},"
                    " \"image\": {\"format\": \"png\"}, \"when\": \".detect.w == 300\"},"
                    "{\"name\": \"batched\", \"url\": \"/look?batch\", \"image\": {\"max_side\": 32, \"format\": \"png\"},"
                    " \"batch\": {\"size\": 4, \"max_wait_ms\": 200}}]}";
    for (int s = 0; STRATEGIES[s]; s++) {
        struct e2e_csv c;
        CU_ASSERT_EQUAL(run(root, p, STRATEGIES[s], NULL, NULL, &c), 0);
        CU_ASSERT_EQUAL(c.n, 5);
        for (int i = 0; names[i]; i++) {
            const struct e2e_row *r = row(&c, names[i]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(r);
            CU_ASSERT_STRING_EQUAL(r->f[1].s, "ok");
            cJSON *crop = cell(&c, r, "crop"), *b = cell(&c, r, "batched");
            if (i == 0) {
                CU_ASSERT(cJSON_GetArraySize(crop) == 1 && crop_is(cJSON_GetArrayItem(crop, 0), 0, 0, 10, 10));
            } else {
                CU_ASSERT_PTR_NULL(crop); /* skipped: the column is empty */
            }
            CU_ASSERT(num(b, "w") == 32 && !strcmp(str(b, "format"), "PNG"));
            if (i > 0)
                CU_ASSERT_STRING_EQUAL(str(b, "quad"), "RGBW");
            cJSON_Delete(crop);
            cJSON_Delete(b);
        }
        e2e_csv_free(&c);
    }
}

/* ---- set-up mistakes ---- */

static void test_config_errors(void)
{
    static const struct {
        const char *stages, *want;
    } CASES[] = {
        {"{\"name\": \"a\", \"url\": \"/look\", \"image\": {\"max_side\": 0}}", "\"max_side\""},
        {"{\"name\": \"a\", \"url\": \"/look\", \"image\": {\"orient\": false, \"strip\": false, \"format\": \"same\"}}",
         "\"image\""},
        {"{\"name\": \"a\", \"url\": \"/detect\"}, {\"name\": \"b\", \"url\": \"/look\", \"input\": {\"each\": \"a\", "
         "\"crop\": \".boxes[]\", \"box\": \"xy\"}}",
         "\"box\""},
        {"{\"name\": \"a\", \"url\": \"/detect\"}, {\"name\": \"b\", \"url\": \"/look\", \"input\": {\"each\": \"a\", "
         "\"crop\": \".boxes[]\", \"boxes\": 1}}",
         "unknown key \"boxes\""},
        {"{\"name\": \"a\", \"url\": \"/detect\"}, {\"name\": \"b\", \"url\": \"/look\", \"input\": {\"each\": \"a\", "
         "\"items\": \".x[]\"}, \"image\": {}}",
         "\"each\" stage"},
        {"{\"name\": \"a\", \"url\": \"/detect\", \"body\": {\"w\": \"{{image.depth}}\"}}", "unknown placeholder"},
    };
    const char *const names[] = {"quad_o1.jpg", NULL};
    const char *root = folder("cfg", names);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char p[1200], cfg[700], csv[700], out[4000];
        snprintf(p, sizeof p, "{\"stages\": [%s]}", CASES[i].stages);
        snprintf(cfg, sizeof cfg, "%s/bad.json", dir);
        snprintf(csv, sizeof csv, "%s/bad.csv", dir);
        CU_ASSERT_FATAL(write_file(cfg, p, strlen(p)) == 0);
        const char *argv[] = {e2e_annotate_bin(), root, "--config", cfg, "--server", srv.base_url, "--out", csv,
                              "--force", "--quiet", NULL};
        CU_ASSERT_EQUAL(run_cmd(argv, tmo(30), out, sizeof out), 2);
        if (!strstr(out, CASES[i].want))
            fprintf(stderr, "case %zu: %s\n", i, out);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, CASES[i].want));
    }
}

/* ---- the plugin (src/prepare/plugin.h) ---- */

static const char *plugin_dir_env;

static void set_plugin_dir(void *arg)
{
    (void)arg;
    if (plugin_dir_env)
        setenv("ANNOTATE_PLUGIN_DIR", plugin_dir_env, 1);
    else
        unsetenv("ANNOTATE_PLUGIN_DIR");
}

/* Runs bin on root with the pipeline text (serial, or strategy), ANNOTATE_PLUGIN_DIR set to
 * plugin_dir (NULL: unset), into csv. Returns the exit status, the output in out. */
static int run_plugin(const char *bin, const char *root, const char *pipeline, const char *strategy,
                      const char *plugin_dir, const char *csv, char *out, size_t outlen)
{
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/plugin.json", dir);
    if (write_file(cfg, pipeline, strlen(pipeline)))
        return -1;
    const char *argv[] = {bin, root, "--config", cfg, "--server", srv.base_url, "--out", csv, "--force", "--quiet",
                          "--strategy", strategy, "--workers", "2", NULL};
    plugin_dir_env = plugin_dir;
    return run_cmd_hook(argv, tmo(60), out, outlen, set_plugin_dir, NULL);
}

/* A folder under the suite's directory holding a file annotate-vips.so copied from src (NULL:
 * the folder empty). */
static const char *plugin_folder(const char *tag, const char *src)
{
    static char path[700];
    char cmd[2000];
    snprintf(path, sizeof path, "%s/%s", dir, tag);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd))
        return NULL;
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/annotate-vips.so'", src ? src : "", path);
    return !src || system(cmd) == 0 ? path : NULL;
}

/* A shared library that is not annotate's plugin: libcjson's file, as this program loaded it. */
static const char *other_library(void)
{
    Dl_info info;
    return dladdr((void *)cJSON_Parse, &info) && info.dli_fname ? info.dli_fname : NULL;
}

/* A plugin missing, one that is no library and one that is not annotate's: each exits 2 naming
 * the file, before the results file is made or any request is sent, worker processes or not. */
static void test_plugin_missing(void)
{
    const char *const names[] = {"quad_o1.jpg", "quad_o2.jpg", NULL};
    char root[700], csv[700], junk[700], out[4000], want[800];
    snprintf(root, sizeof root, "%s", folder("plugin", names));
    snprintf(csv, sizeof csv, "%s/plugin.csv", dir);
    snprintf(junk, sizeof junk, "%s/junk.so", dir);
    CU_ASSERT_FATAL(write_file(junk, "not a library\n", 14) == 0);
    const char *lib = other_library();
    CU_ASSERT_PTR_NOT_NULL_FATAL(lib);
    static const struct {
        const char *tag, *says;
        int src; /* 0 none, 1 junk, 2 another library */
    } CASES[] = {{"none", "needs annotate's libvips plugin annotate-vips.so, and it is not there: looked for ", 0},
                 {"junk", "image preparation: cannot load ", 1},
                 {"other", " is not annotate's plugin (it has no annotate_prep_plugin)", 2}};
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const char *pd = plugin_folder(CASES[i].tag, CASES[i].src == 1 ? junk : CASES[i].src == 2 ? lib : NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pd);
        for (int processes = 0; processes < 2; processes++) {
            unlink(csv);
            long before = server_requests();
            int rc = run_plugin(e2e_annotate_bin(), root, ORIENT, processes ? "processes" : "serial", pd, csv, out,
                                sizeof out);
            CU_ASSERT_EQUAL(rc, 2);
            snprintf(want, sizeof want, "%s/annotate-vips.so", pd);
            CU_ASSERT_PTR_NOT_NULL(strstr(out, "annotate: image preparation"));
            CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
            CU_ASSERT_PTR_NOT_NULL(strstr(out, CASES[i].says));
            if (!strstr(out, want) || !strstr(out, CASES[i].says))
                fprintf(stderr, "plugin %s: %s\n", CASES[i].tag, out);
            CU_ASSERT_EQUAL(server_requests(), before);
            CU_ASSERT_NOT_EQUAL(access(csv, F_OK), 0);
        }
    }
}

/* The dynamic section of bin: its NEEDED libraries, one a line, into out. 0, or -1. */
static int needed(const char *bin, char *out, size_t outlen)
{
    const char *argv[] = {"readelf", "-d", bin, NULL};
    return run_cmd(argv, tmo(30), out, outlen) == 0 && strstr(out, "(NEEDED)") ? 0 : -1;
}

/* annotate has no libvips in its NEEDED list; a run without "image" goes with no plugin
 * anywhere; with "image" the plugin is found beside the binary, in its ../lib/annotate (an
 * install moved elsewhere) and in $ANNOTATE_PLUGIN_DIR. */
static void test_plugin_found(void)
{
    char elf[16000];
    CU_ASSERT_FATAL(needed(e2e_annotate_bin(), elf, sizeof elf) == 0);
    CU_ASSERT_PTR_NULL(strstr(elf, "vips"));
    CU_ASSERT_PTR_NULL(strstr(elf, "libglib"));
    char bin_dir[700], inst[700], cmd[6000], csv[700], out[4000];
    snprintf(bin_dir, sizeof bin_dir, "%s", e2e_annotate_bin());
    char *slash = strrchr(bin_dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(bin_dir, sizeof bin_dir, ".");
    snprintf(inst, sizeof inst, "%s/inst", dir);
    int n = snprintf(cmd, sizeof cmd,
                     "rm -rf '%s' && mkdir -p '%s/bin' '%s/lib/annotate' && cp '%s' '%s/bin/annotate' &&"
                     " cp '%s/annotate-vips.so' '%s/lib/annotate/'",
                     inst, inst, inst, e2e_annotate_bin(), inst, bin_dir, inst);
    CU_ASSERT_FATAL(n > 0 && n < (int)sizeof cmd && system(cmd) == 0);
    const char *none = plugin_folder("none", NULL);
    const char *const names[] = {"quad_o1.jpg", "quad_o6.jpg", NULL};
    char root[700], moved[800], libdir[800];
    snprintf(root, sizeof root, "%s", folder("found", names));
    snprintf(csv, sizeof csv, "%s/found.csv", dir);
    snprintf(moved, sizeof moved, "%s/bin/annotate", inst);
    snprintf(libdir, sizeof libdir, "%s/lib/annotate", inst);
    static const char PLAIN[] = "{\"stages\": [{\"name\": \"look\", \"url\": \"/look\"}]}";
    CU_ASSERT_EQUAL(run_plugin(e2e_annotate_bin(), root, PLAIN, "serial", none, csv, out, sizeof out), 0);
    const struct {
        const char *bin, *plugin_dir;
    } WAYS[] = {{e2e_annotate_bin(), NULL}, {moved, NULL}, {e2e_annotate_bin(), libdir}, {moved, bin_dir}};
    for (size_t i = 0; i < sizeof WAYS / sizeof WAYS[0]; i++) {
        struct e2e_csv c;
        int rc = run_plugin(WAYS[i].bin, root, ORIENT, "processes", WAYS[i].plugin_dir, csv, out, sizeof out);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc)
            fprintf(stderr, "plugin way %zu: %s\n", i, out);
        CU_ASSERT_FATAL(e2e_csv_read(csv, &c) == 0);
        CU_ASSERT_EQUAL(c.n, 2);
        const struct e2e_row *r = row(&c, "quad_o6.jpg");
        CU_ASSERT(r && !strcmp(r->f[1].s, "ok"));
        e2e_csv_free(&c);
    }
}

int register_prepare_run(void)
{
    CU_pSuite s = CU_add_suite("prepare_run", suite_init, suite_cleanup);
    if (!s)
        return -1;
    return !CU_add_test(s, "EXIF orientations 1-8 arrive upright, without metadata, every strategy", test_orientations) ||
                   !CU_add_test(s, "crops in each box format: their pixels are the original's", test_crops) ||
                   !CU_add_test(s, "a box with no area fails the image, naming the box", test_refused_box) ||
                   !CU_add_test(s, "bad images fail with the decoder's reason, unsent; HEIC and WebP go", test_bad_images) ||
                   !CU_add_test(s, "a crop stage behind \"when\", a batch stage of prepared images", test_when_and_batch) ||
                   !CU_add_test(s, "\"image\" and crop mistakes exit 2", test_config_errors) ||
                   !CU_add_test(s, "plugin missing, not a library, not annotate's: exit 2 naming it, unsent",
                                test_plugin_missing) ||
                   !CU_add_test(s, "plugin: not in NEEDED, found beside, in ../lib/annotate, in ANNOTATE_PLUGIN_DIR",
                                test_plugin_found)
               ? -1
               : 0;
}
