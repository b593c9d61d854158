/* report: see report.h. */
#include "bench/report.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the table ---- */

void report_header(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu)
{
    char capdesc[96] = "";
    if (b->capacity > 0 && b->queue_max >= 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint, queue %ld", b->capacity, b->queue_max);
    else if (b->capacity > 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint", b->capacity);
    if (b->server_given)
        printf("annotate bench: %s, server at %s, %ld CPUs\n", cfg->dir, url, ncpu);
    else
        printf("annotate bench: %s, mock at %s, latency %ld ms (%s)%s%s, %ld CPUs\n", cfg->dir, url, b->latency_ms,
               b->latency_dist, b->trust_payload ? ", mock skips decoding" : "", capdesc, ncpu);
    printf("%-34s %6s %9s %9s %8s %8s %8s %8s %8s %8s", "strategy", "conc", "images/s", "req/s", "req p50", "req p90",
           "req p99", "req max", "img p99", "tool CPU");
    if (!b->server_given)
        printf(" %8s", "mock CPU");
    printf(" %8s %7s %6s %7s", "wall s", "RSS MB", "failed", "retry %");
    if (b->capacity > 0)
        printf(" %7s", "bound %");
    printf(" %s\n", "stable");
    fflush(stdout);
}

/* Where each stage's limit ended, on a line of its own under the point's row. */
static void print_limits(const cJSON *limits)
{
    printf("%-34s   limits:", "");
    for (const cJSON *l = limits->child; l; l = l->next) {
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(l, "mode");
        printf("%s %s %.0f%s (peak %.0f in flight)", l == limits->child ? "" : ",", l->string,
               bench_jnum(l, "limit", NULL), cJSON_IsString(mode) && !strcmp(mode->valuestring, "auto") ? " auto" : "",
               bench_jnum(l, "peak_in_flight", NULL));
    }
    printf("\n");
}

void report_row(const struct bench_opts *b, const struct point *pt)
{
    char cs[16];
    snprintf(cs, sizeof cs, pt->conc == CONC_AUTO ? "auto" : "%d", pt->conc);
    /* a slow server's few images a second keep a decimal */
    printf("%-34s %6s %9.*f %9.*f %8.1f %8.1f %8.1f %8.1f %8.1f %7.0f%%", pt->strategy, cs, pt->img_s < 100 ? 1 : 0,
           pt->img_s, pt->req_s < 100 ? 1 : 0, pt->req_s,
           pt->req_p50, pt->req_p90, pt->req_p99, pt->req_max, pt->img_p99, 100 * pt->tool_cpu_s / pt->wall_s);
    if (!b->server_given)
        printf(" %7.0f%%", 100 * pt->mock_cpu_s / pt->wall_s);
    printf(" %8.1f %7.1f %6.0f %6.1f%%", pt->wall_s, (double)pt->rss_kb / 1024, pt->failed,
           pt->attempts > 0 ? 100 * pt->retries / pt->attempts : 0);
    if (b->capacity > 0) {
        char bound[16];
        snprintf(bound, sizeof bound, pt->bound < 0 ? "-" : "%.0f%%", 100 * pt->bound);
        printf(" %7s", bound);
    }
    printf(" %s%s%s%s%s\n", pt->stable ? "yes" : "NO: ", pt->stable ? "" : pt->why, pt->note[0] ? " (" : "", pt->note,
           pt->note[0] ? ")" : "");
    if (pt->limits && pt->limits->child)
        print_limits(pt->limits);
    fflush(stdout);
}

/* ---- files ---- */

static void mkdirs_for(const char *path)
{
    char *copy = strdup(path), *d = dirname(copy);
    char cmd[4096];
    struct stat st;
    if (stat(d, &st) != 0) {
        snprintf(cmd, sizeof cmd, "%s", d);
        for (char *p = cmd + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(cmd, 0755);
                *p = '/';
            }
        mkdir(cmd, 0755);
    }
    free(copy);
}

int report_write_file(const char *path, const char *txt)
{
    mkdirs_for(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    /* written whole, then renamed: a reader never sees half a report */
    if (f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF && fclose(f) == 0 && rename(tmp, path) == 0)
        return 0;
    int e = errno;
    if (f)
        unlink(tmp);
    errno = e;
    return -1;
}

/* ---- the SVG chart ---- */

/* The chart's size and margins, in pixels. */
enum { W = 860, H = 460, L = 80, R = 270, T = 50, B = 60 };

/* Its scales: images/s from 0 to maxy in steps of ystep; concurrency from 1 to maxc, on a log2
 * axis from lx0 to lx1. */
struct scale {
    double maxy, ystep, maxc, lx0, lx1;
};

static struct scale chart_scale(const struct point *pts, int n)
{
    struct scale s = {1, 0, 1, 0, 0};
    double minc = 1;
    for (int i = 0; i < n; i++) {
        s.maxy = fmax(s.maxy, pts[i].img_s);
        s.maxc = fmax(s.maxc, pts[i].conc);
    }
    s.ystep = pow(10, floor(log10(s.maxy)));
    if (s.maxy / s.ystep < 2.5)
        s.ystep /= 4;
    else if (s.maxy / s.ystep < 5)
        s.ystep /= 2;
    s.maxy = ceil(s.maxy / s.ystep) * s.ystep;
    s.lx0 = log2(minc);
    s.lx1 = log2(s.maxc) > s.lx0 ? log2(s.maxc) : s.lx0 + 1;
    return s;
}

static double X(const struct scale *s, double c)
{
    return L + (log2(c) - s->lx0) / (s->lx1 - s->lx0) * (W - L - R);
}

static double Y(const struct scale *s, double v)
{
    return H - B - v / s->maxy * (H - T - B);
}

/* Text for an SVG element: & < > " escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The title, what was measured against, the grid and the axes. */
static void svg_frame(FILE *f, const struct scale *s, const struct bench_opts *b, const char *url)
{
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">annotate bench: images/s against concurrency</text>\n", L);
    fprintf(f, "<text x=\"%d\" y=\"40\" fill=\"#555\">", L);
    if (b->server_given) {
        fputs("server at ", f);
        xml_text(f, url);
    } else {
        fprintf(f, "mock latency %ld ms (%s)%s", b->latency_ms, b->latency_dist,
                b->trust_payload ? ", mock skips decoding (--trust-payload)" : "");
    }
    fputs("; images/s counts ok images only</text>\n", f);
    for (double v = 0; v <= s->maxy + 1e-9; v += s->ystep) {
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, W - R, Y(s, v), Y(s, v));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", L - 6, Y(s, v) + 4, v);
    }
    for (double c = 1; c <= s->maxc * 1.0001; c *= 2) {
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>\n", X(s, c), X(s, c), T, H - B);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", X(s, c), H - B + 16, c);
    }
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, W - R, H - B, H - B);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, L, T, H - B);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">concurrency (requests in flight, or workers)</text>\n", (L + W - R) / 2, H - 20);
    fprintf(f, "<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" text-anchor=\"middle\">images/s</text>\n", (T + H - B) / 2, (T + H - B) / 2);
}

/* The k-th strategy's line: the points of pts[i]'s strategy from i on, and its legend. */
static void svg_series(FILE *f, const struct scale *s, const struct point *pts, int n, int i, int k)
{
    static const char *COLOURS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    const char *col = COLOURS[k % 6];
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
    for (int j = i; j < n; j++)
        if (!strcmp(pts[j].strategy, pts[i].strategy) && pts[j].conc != CONC_AUTO)
            fprintf(f, "%.1f,%.1f ", X(s, pts[j].conc), Y(s, pts[j].img_s));
    fprintf(f, "\"/>\n");
    for (int j = i; j < n; j++) {
        if (strcmp(pts[j].strategy, pts[i].strategy))
            continue;
        /* An auto point has no concurrency to put on the axis: a dashed line across, at its
         * images/s. */
        if (pts[j].conc == CONC_AUTO)
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"6 4\"/>"
                       "<text x=\"%d\" y=\"%.1f\" fill=\"%s\">auto</text>\n",
                    L, W - R, Y(s, pts[j].img_s), Y(s, pts[j].img_s), col, W - R + 4, Y(s, pts[j].img_s) + 4, col);
        else
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", X(s, pts[j].conc),
                    Y(s, pts[j].img_s), col);
    }
    int ly = T + 10 + 20 * k;
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", W - R + 15, W - R + 40, ly, ly, col);
    fprintf(f, "<text x=\"%d\" y=\"%d\">", W - R + 46, ly + 4);
    xml_text(f, pts[i].strategy);
    fputs("</text>\n", f);
}

/* The chart of the points measured (those without an error): a line per strategy (at most 16). */
static void write_svg(const char *path, const struct point *pts, int n, const struct bench_opts *b, const char *url)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    struct scale s = chart_scale(pts, n);
    svg_frame(f, &s, b, url);
    const char *seen[16];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        int k;
        for (k = 0; k < ns; k++)
            if (!strcmp(seen[k], pts[i].strategy))
                break;
        if (k < ns || ns == 16)
            continue;
        seen[ns++] = pts[i].strategy;
        svg_series(f, &s, pts, n, i, k);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* ---- the JSON report ---- */

static cJSON *point_json(const struct bench_opts *b, const struct point *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "strategy", p->strategy);
    if (p->conc == CONC_AUTO)
        cJSON_AddStringToObject(o, "concurrency", "auto");
    else
        cJSON_AddNumberToObject(o, "concurrency", p->conc);
    cJSON_AddNumberToObject(o, "images_per_s", p->img_s);
    cJSON_AddNumberToObject(o, "requests_per_s", p->req_s);
    cJSON_AddNumberToObject(o, "request_p50_ms", p->req_p50);
    cJSON_AddNumberToObject(o, "request_p90_ms", p->req_p90);
    cJSON_AddNumberToObject(o, "request_p99_ms", p->req_p99);
    cJSON_AddNumberToObject(o, "request_max_ms", p->req_max);
    cJSON_AddNumberToObject(o, "image_p50_ms", p->img_p50);
    cJSON_AddNumberToObject(o, "image_p99_ms", p->img_p99);
    cJSON_AddNumberToObject(o, "tool_cpu_s", p->tool_cpu_s);
    if (!b->server_given)
        cJSON_AddNumberToObject(o, "mock_cpu_s", p->mock_cpu_s);
    cJSON_AddNumberToObject(o, "wall_s", p->wall_s);
    cJSON_AddNumberToObject(o, "peak_rss_kb", (double)p->rss_kb);
    cJSON_AddNumberToObject(o, "images_ok", p->ok);
    cJSON_AddNumberToObject(o, "images_failed", p->failed);
    cJSON_AddNumberToObject(o, "images_failed_for_load", p->failed_load);
    if (p->note[0])
        cJSON_AddStringToObject(o, "failed_on_their_own", p->note);
    cJSON_AddNumberToObject(o, "requests", p->requests);
    cJSON_AddNumberToObject(o, "retries", p->retries);
    cJSON_AddNumberToObject(o, "attempts", p->attempts);
    if (p->bound >= 0)
        cJSON_AddNumberToObject(o, "share_of_bound", p->bound);
    if (p->limits)
        cJSON_AddItemToObject(o, "limits", cJSON_Duplicate(p->limits, 1)); /* the report is rewritten per point */
    cJSON *errs = cJSON_AddArrayToObject(o, "errors");
    for (int i = 0; i < p->ntop; i++) {
        cJSON *e = cJSON_CreateObject();
        if (p->top[i].stage[0])
            cJSON_AddStringToObject(e, "stage", p->top[i].stage);
        else
            cJSON_AddNullToObject(e, "stage");
        cJSON_AddStringToObject(e, "reason", p->top[i].reason);
        cJSON_AddNumberToObject(e, "count", (double)p->top[i].count);
        cJSON_AddItemToArray(errs, e);
    }
    cJSON_AddNumberToObject(o, "windows", p->windows);
    cJSON_AddNumberToObject(o, "window_spread", p->spread);
    cJSON_AddBoolToObject(o, "stable", p->stable);
    if (!p->stable)
        cJSON_AddStringToObject(o, "unsettled", p->why);
    if (p->suggest_duration_s > 0)
        cJSON_AddNumberToObject(o, "suggested_duration_s", p->suggest_duration_s);
    cJSON_AddBoolToObject(o, "ran_out_of_images", p->ran_out);
    return o;
}

/* A point whose run did not finish: what it said. */
static cJSON *not_run_json(const struct point *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "strategy", p->strategy);
    if (p->conc == CONC_AUTO)
        cJSON_AddStringToObject(o, "concurrency", "auto");
    else
        cJSON_AddNumberToObject(o, "concurrency", p->conc);
    cJSON_AddStringToObject(o, "error", p->error);
    return o;
}

cJSON *report_mode(cJSON *rep, const struct config *cfg, const struct bench_opts *b, const char *url)
{
    cJSON *mode = cJSON_AddObjectToObject(rep, "mode");
    cJSON_AddStringToObject(mode, "dir", cfg->dir);
    cJSON_AddStringToObject(mode, "server", b->server_given ? url : "mock-model-server (started by bench)");
    cJSON_AddStringToObject(mode, "url", url);
    return mode;
}

/* How the points were measured: the server or the mock, the machine, the windows. */
static void add_mode(cJSON *rep, const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu)
{
    cJSON *mode = report_mode(rep, cfg, b, url);
    if (!b->server_given) {
        cJSON_AddNumberToObject(mode, "latency_ms", (double)b->latency_ms);
        cJSON_AddStringToObject(mode, "latency_dist", b->latency_dist);
        cJSON_AddBoolToObject(mode, "mock_trust_payload", b->trust_payload);
        if (b->capacity > 0) {
            cJSON_AddNumberToObject(mode, "capacity", (double)b->capacity);
            if (b->queue_max >= 0)
                cJSON_AddNumberToObject(mode, "queue_max", (double)b->queue_max);
        }
    }
    cJSON_AddNumberToObject(mode, "cpus", (double)ncpu);
    cJSON_AddNumberToObject(mode, "window_s", b->window_s);
    cJSON_AddNumberToObject(mode, "tolerance", b->tolerance);
    if (b->limit)
        cJSON_AddNumberToObject(mode, "limit", (double)b->limit);
    else
        cJSON_AddNumberToObject(mode, "duration_s", b->duration_s);
}

int report_write(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu,
                 const struct point *pts, int np, int complete)
{
    cJSON *rep = cJSON_CreateObject();
    add_mode(rep, cfg, b, url, ncpu);
    cJSON_AddBoolToObject(rep, "complete", complete);
    cJSON *arr = cJSON_AddArrayToObject(rep, "points");
    cJSON *bad = cJSON_AddArrayToObject(rep, "not_run");
    for (int i = 0; i < np; i++) {
        if (pts[i].error[0])
            cJSON_AddItemToArray(bad, not_run_json(&pts[i]));
        else
            cJSON_AddItemToArray(arr, point_json(b, &pts[i]));
    }
    char *txt = cJSON_Print(rep);
    cJSON_Delete(rep);
    int rc = 0;
    if (b->report && txt && report_write_file(b->report, txt)) {
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->report, strerror(errno));
        rc = -1;
    }
    free(txt);
    if (b->chart) {
        mkdirs_for(b->chart);
        struct point *ok = calloc((size_t)np + 1, sizeof *ok);
        int n = 0;
        for (int i = 0; ok && i < np; i++)
            if (!pts[i].error[0])
                ok[n++] = pts[i];
        if (ok)
            write_svg(b->chart, ok, n, b, url);
        free(ok);
    }
    return rc;
}
