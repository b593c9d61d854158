/* Suite "limits": memory bounded in bytes, not only in items, in every process.
 *
 *   - eight 60 MB images: with --max-memory 200000000 annotate's peak resident memory stays near
 *     two images' base64 (80 MB each), where without a cap it holds them all; every row ok;
 *   - an answer larger than --max-answer-bytes fails its image with a reason that says so;
 *   - answers draw on --max-memory as they grow: 16 endless chunked answers in flight (curl-multi
 *     and threads) peak near the budget plus two answers' room, not 16 answers; 16 large finite
 *     answers that do not fit at once wait for room and all arrive, byte for byte;
 *   - the budget holds for the run as a whole: 30 MB images loaded by worker processes
 *     (load=processes) do not pile up in the parent, and under --strategy processes the workers
 *     together stay near one budget, not one each; a worker killed while it holds an image's
 *     share gives it back (the run would wait for ever otherwise). */
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "util.h"
#include "proc.h"
#include "pyserver.h"
#include "tree.h"

/* A field of /proc/PID/FILE in kB ("VmHWM:" of status, "Pss:" of smaps_rollup); 0 when gone. */
static long proc_kb(pid_t pid, const char *file, const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    char *st = slurp(path, NULL);
    const char *h = st ? strstr(st, field) : NULL;
    long v = h ? atol(h + strlen(field)) : 0;
    free(st);
    return v;
}

/* The peaks of a run, sampled every 10 ms until it exits: the parent's resident size (VmHWM,
 * as /usr/bin/time -v reports it) and the largest sum at one moment of its children's
 * proportional set sizes (Pss: the libraries they share counted once), in kB. */
struct peaks {
    long parent, workers;
};

static void sample_workers(pid_t pid, struct peaks *pk)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    char *kids = slurp(path, NULL);
    long sum = 0;
    for (char *p = kids, *end; p && *p; p = end) {
        long k = strtol(p, &end, 10);
        if (end == p)
            break;
        sum += proc_kb((pid_t)k, "smaps_rollup", "Pss:");
    }
    free(kids);
    if (sum > pk->workers)
        pk->workers = sum;
}

static struct peaks run_peaks(const char *const argv[], const char *log, int timeout_s, int *rc)
{
    struct peaks pk = {0, 0};
    *rc = -1;
    pid_t pid = e2e_spawn(argv, log);
    if (pid <= 0)
        return pk;
    double end = now_ms() + timeout_s * 1000.0;
    while (e2e_alive(pid) && now_ms() < end) {
        long h = proc_kb(pid, "status", "VmHWM:");
        if (h > pk.parent)
            pk.parent = h;
        sample_workers(pid, &pk);
        sleep_ms(10);
    }
    *rc = e2e_wait(pid, 5);
    return pk;
}

/* The peak resident size of pid (VmHWM, kB), sampled until it exits; its exit status in *rc. */
static long peak_kb(pid_t pid, int timeout_s, int *rc)
{
    long peak = 0;
    double end = now_ms() + timeout_s * 1000.0;
    while (e2e_alive(pid) && now_ms() < end) {
        long h = proc_kb(pid, "status", "VmHWM:");
        if (h > peak)
            peak = h;
        sleep_ms(20);
    }
    *rc = e2e_wait(pid, 5);
    return peak;
}

/* n files of size bytes (random, so nothing compresses them away) under a fresh tree. */
static int big_tree(struct e2e_tree *t, int n, size_t size)
{
    if (e2e_tree_generated(t, "limits", 1, 9))
        return -1;
    char *buf = malloc(size);
    if (!buf)
        return -1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i + 8 <= size; i += 8) {
        x = xorshift64(&x);
        memcpy(buf + i, &x, 8);
    }
    int bad = 0;
    for (int k = 0; k < n && !bad; k++) {
        char p[700];
        snprintf(p, sizeof p, "%s/big-%02d.png", t->root, k);
        buf[0] = (char)k; /* each different */
        bad = write_file(p, buf, size) != 0;
    }
    free(buf);
    return bad ? -1 : 0;
}

static long run_peak(const struct e2e_tree *t, const char *server, const char *max_memory, int *rc)
{
    const char *argv[] = {e2e_annotate_bin(), t->root, "--out", t->csv, "--server", server, "--force", "--quiet",
                          "--max-image-bytes", "100000000", "--max-memory", max_memory, NULL};
    pid_t pid = e2e_spawn(argv, t->log);
    return pid > 0 ? peak_kb(pid, tmo(180), rc) : -1;
}

static void test_max_memory(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(big_tree(&t, 8, 60u << 20), 0);
    struct mock_proc m;
    const char *margs[] = {"--trust-payload", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    int rc1, rc2;
#ifdef __SANITIZE_ADDRESS__
    /* ASan keeps freed blocks in a quarantine (256 MB), which would count as held here */
    setenv("ASAN_OPTIONS", "quarantine_size_mb=0", 1);
#endif
    long capped = run_peak(&t, m.base_url, "200000000", &rc1);
    CU_ASSERT_EQUAL(rc1, 0);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, 9);
    for (size_t r = 0; r < c.n; r++)
        CHECKF(c.rows[r].n > 1 && !strcmp(c.rows[r].f[COL_STATUS].s, "ok"), "row %zu is not ok", r);
    e2e_csv_free(&c);
    long free_run = run_peak(&t, m.base_url, "0", &rc2);
    CU_ASSERT_EQUAL(rc2, 0);
#ifdef __SANITIZE_ADDRESS__
    unsetenv("ASAN_OPTIONS");
#endif
    fprintf(stderr, "\n  [limits] eight 60 MB images: peak %ld MB with --max-memory 200000000, %ld MB without a cap ",
            capped / 1024, free_run / 1024);
    /* two images' base64 is 160 MB; allow for the process itself and the answers */
#ifdef __SANITIZE_ADDRESS__
    long most = 520 * 1024; /* ASan's own allocator keeps freed memory mapped for a while */
#else
    long most = 330 * 1024;
#endif
    CHECKF(capped > 0 && capped < most, "peak %ld kB with a 200 MB budget", capped);
    CHECKF(free_run > capped + 150 * 1024, "without a cap the peak (%ld kB) should be far above (%ld kB)", free_run,
           capped);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* A server whose answer for one path is 3 MB. */
static const char BIG_ANSWER[] =
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    "        self.rfile.read(int(self.headers['Content-Length']))\n"
    "        body = b'{\"result\": \"' + b'x' * (3 << 20) + b'\"}' if self.path == '/big' else b'{\"result\": 1}'\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', 'application/json')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";

static void test_max_answer(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "answers", 5, 12), 0);
    char script[700], cfg[700], port[16], server[64];
    snprintf(script, sizeof script, "%s/big.py", t.base);
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    CU_ASSERT_EQUAL_FATAL(write_file(script, BIG_ANSWER, sizeof BIG_ANSWER - 1), 0);
    const char pj[] = "{\"stages\": [{\"name\": \"small\", \"url\": \"/small\"}, {\"name\": \"big\", \"url\": \"/big\"}]}";
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, pj, sizeof pj - 1), 0);
    snprintf(port, sizeof port, "%d", e2e_closed_port());
    snprintf(server, sizeof server, "http://127.0.0.1:%s", port);
    const char *py[] = {"/usr/bin/python3", script, port, NULL};
    pid_t srv = e2e_spawn(py, NULL);
    CU_ASSERT_FATAL(srv > 0);
    CU_ASSERT(wait_accepting(srv, atoi(port)) == 0); /* (on failure the run fails, and srv is stopped below) */
    char out[8192];
    const char *extra[] = {"--config", cfg, "--max-answer-bytes", "1000000", "--outage-timeout", "0", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), t.root, t.csv, server, extra);
    CU_ASSERT_EQUAL(rc, 1);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, t.n);
    for (size_t r = 0; r < c.n; r++) {
        const struct e2e_row *row = &c.rows[r];
        /* (attempts are not checked: this HTTP/1.0 server closes each connection, and libcurl's
         * re-sends on a closed reused one count as attempts) */
        CHECKF(row->n == 7 && !strcmp(row->f[1].s, "failed") &&
                   strstr(row->f[4].s, "big: the answer is larger than --max-answer-bytes (1000000 bytes)"),
               "row %zu: %s | %s", r, row->f[1].s, row->n > 4 ? row->f[4].s : "");
    }
    e2e_csv_free(&c);
    kill(srv, SIGTERM);
    e2e_wait(srv, 10);
    e2e_tree_free(&t);
}

/* A server that answers 413 as soon as it has the headers and closes, as nginx does above its
 * client_max_body_size: every image fails with HTTP 413 while its sibling requests are still
 * uploading from the same payload (which must stay until they are done: this crashed). */
static const char EARLY_413[] =
    "import socket, sys, threading\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(64)\n"
    "def h(c):\n"
    "    try:\n"
    "        d = b''\n"
    "        while b'\\r\\n\\r\\n' not in d:\n"
    "            x = c.recv(4096)\n"
    "            if not x: return\n"
    "            d += x\n"
    "        c.sendall(b'HTTP/1.1 413 Request Entity Too Large\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nlarge')\n"
    "        c.close()\n"
    "    except Exception: pass\n"
    "while True:\n"
    "    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()\n";

static void test_early_413(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "early413", 1, 5), 0);
    CU_ASSERT_EQUAL_FATAL(tree_make_generated(t.root, 20, 800000, 6), 0);
    char script[700], port[16], server[64];
    snprintf(script, sizeof script, "%s/s.py", t.base);
    CU_ASSERT_EQUAL_FATAL(write_file(script, EARLY_413, sizeof EARLY_413 - 1), 0);
    snprintf(port, sizeof port, "%d", e2e_closed_port());
    snprintf(server, sizeof server, "http://127.0.0.1:%s", port);
    const char *py[] = {"/usr/bin/python3", script, port, NULL};
    pid_t srv = e2e_spawn(py, NULL);
    CU_ASSERT_FATAL(srv > 0);
    CU_ASSERT(wait_accepting(srv, atoi(port)) == 0); /* (on failure the run fails, and srv is stopped below) */
    for (int round = 0; round < 4; round++) {
        char out[8192];
        const char *extra[] = {"--outage-timeout", "0", NULL};
        int rc = e2e_run(out, sizeof out, tmo(60), t.root, t.csv, server, extra);
        if (rc != 1)
            show("early 413", rc, out);
        CU_ASSERT_EQUAL(rc, 1);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        long n413 = 0;
        for (size_t r = 0; r < c.n; r++)
            n413 += c.rows[r].n > COL_ERROR && strstr(c.rows[r].f[COL_ERROR].s, "HTTP 413") != NULL;
        CHECKF(c.n >= 20 && n413 == (long)c.n, "round %d: %zu rows, %ld with HTTP 413", round, c.n, n413);
        e2e_csv_free(&c);
    }
    kill(srv, SIGTERM);
    e2e_wait(srv, 10);
    e2e_tree_free(&t);
}

/* ---- answers draw on --max-memory ---- */

/* A model server whose answer to every POST is {"result": "xxx..."}: endless (chunked, never
 * ending) with "endless", else N bytes of x (with a Content-Length). Prints "listening on". */
static const char ANSWERS_PY[] =
    "import socket, sys, threading\n"
    "mode = sys.argv[1]\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', 0)); s.listen(128)\n"
    "print('listening on 127.0.0.1:%d' % s.getsockname()[1], flush=True)\n"
    "chunk = b'%x\\r\\n' % 65536 + b'x' * 65536 + b'\\r\\n'\n"
    "finite = None if mode == 'endless' else b'{\"result\": \"' + b'x' * int(mode) + b'\"}'\n"
    "def h(c):\n"
    "    try:\n"
    "        while True:\n"
    "            d = b''\n"
    "            while b'\\r\\n\\r\\n' not in d:\n"
    "                x = c.recv(65536)\n"
    "                if not x: return\n"
    "                d += x\n"
    "            head, body = d.split(b'\\r\\n\\r\\n', 1)\n"
    "            n = 0\n"
    "            for line in head.split(b'\\r\\n'):\n"
    "                if line.lower().startswith(b'content-length:'): n = int(line.split(b':')[1])\n"
    "            while len(body) < n:\n"
    "                x = c.recv(1 << 20)\n"
    "                if not x: return\n"
    "                body += x\n"
    "            if finite is not None:\n"
    "                c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(finite) + finite)\n"
    "                continue\n"
    "            c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'\n"
    "                      b'c\\r\\n{\"result\": \"\\r\\n')\n"
    "            while True: c.sendall(chunk)\n"
    "    except Exception: pass\n"
    "while True:\n"
    "    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()\n";

/* Starts the answer server in mode (see ANSWERS_PY) and writes a one-stage pipeline for it into
 * cfg (t->base/p.json). 0 or -1. */
static int answers_start(const struct e2e_tree *t, const char *mode, struct mock_proc *m, char *cfg, size_t len)
{
    char script[700];
    snprintf(script, sizeof script, "%s/answers.py", t->base);
    snprintf(cfg, len, "%s/p.json", t->base);
    const char pj[] = "{\"stages\": [{\"name\": \"big\", \"url\": \"/big\"}]}";
    if (write_file(script, ANSWERS_PY, sizeof ANSWERS_PY - 1) || write_file(cfg, pj, sizeof pj - 1))
        return -1;
    const char *argv[] = {pyserver_python(), script, mode, NULL};
    return listener_start(m, argv, 0);
}

/* The error column of a one-stage pipeline's rows: path, status, big, error, ... */
#define ONE_STAGE_ERROR 3

/* One run of 16 requests in flight against the answer server; its peaks. */
static struct peaks answers_run(const struct e2e_tree *t, const struct mock_proc *m, const char *cfg,
                                const char *strategy, const char *retries, const char *max_answer,
                                const char *max_memory, int *rc)
{
    const char *argv[] = {e2e_annotate_bin(), t->root, "--out", t->csv, "--server", m->base_url, "--force", "--quiet",
                          "--config", cfg, "--strategy", strategy, "--workers", "16", "--concurrency", "16",
                          "--retries", retries, "--outage-timeout", "0", "--max-answer-bytes", max_answer,
                          "--max-memory", max_memory, NULL};
    return run_peaks(argv, t->log, tmo(120), rc);
}

/* Under ASan the peaks are shown, not judged: its allocator keeps freed chunks in size-class
 * caches and its shadow grows with them, by amounts that follow the machine's timing (a run
 * measured 382 MB where the plain build holds 121); the plain build (make check) judges them,
 * and ASan judges the rest of each test. */
#ifdef __SANITIZE_ADDRESS__
#define ASAN_EXTRA_KB (120 * 1024)
#define PEAK_JUDGED 0
#else
#define ASAN_EXTRA_KB 0
#define PEAK_JUDGED 1
#endif

/* 16 endless answers at once, each refused at --max-answer-bytes 32 MiB: without the budget
 * they held up to 16 x 32 MiB; with --max-memory 40000000 at most 40 MB + two answers' room
 * (about 107 MB) of answers are held, whatever the strategy. Every row fails, saying why. */
static void endless_answers(const char *strategy)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "endless", 16, 31), 0);
    struct mock_proc m;
    char cfg[700];
    CU_ASSERT_EQUAL_FATAL(answers_start(&t, "endless", &m, cfg, sizeof cfg), 0);
#ifdef __SANITIZE_ADDRESS__
    setenv("ASAN_OPTIONS", "quarantine_size_mb=0", 1);
#endif
    int rc;
    struct peaks pk = answers_run(&t, &m, cfg, strategy, "0", "33554432", "40000000", &rc);
#ifdef __SANITIZE_ADDRESS__
    unsetenv("ASAN_OPTIONS");
#endif
    CU_ASSERT_EQUAL(rc, 1);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, t.n);
    for (size_t r = 0; r < c.n; r++)
        CHECKF(c.rows[r].n > ONE_STAGE_ERROR && !strcmp(c.rows[r].f[COL_STATUS].s, "failed") &&
                   strstr(c.rows[r].f[ONE_STAGE_ERROR].s, "big: the answer is larger than --max-answer-bytes (33554432 bytes)"),
               "row %zu: %s", r, c.rows[r].n > ONE_STAGE_ERROR ? c.rows[r].f[ONE_STAGE_ERROR].s : "");
    e2e_csv_free(&c);
    fprintf(stderr, "\n  [limits] 16 endless answers (%s): peak %ld MB with --max-memory 40000000 ", strategy,
            pk.parent / 1024);
    long most = 220 * 1024 + ASAN_EXTRA_KB;
    CHECKF(!PEAK_JUDGED || (pk.parent > 0 && pk.parent < most), "%s: peak %ld kB, over %ld kB", strategy, pk.parent, most);
    mock_stop(&m);
    e2e_tree_free(&t);
}

static void test_endless_multi(void)
{
    endless_answers("curl-multi");
}

static void test_endless_threads(void)
{
    endless_answers("threads");
}

/* The rows of csv that are ok with a result of exactly n x's: the answer as the server sent it.
 * (A scan of the file: the CSV reader takes minutes over 200 MB under ASan.) */
static long whole_answers(const char *csv, size_t n)
{
    size_t len;
    char *d = slurp(csv, &len);
    if (!d)
        return -1;
    long ok = 0;
    char *end = d + len;
    for (char *line = memchr(d, '\n', len); line && line + 1 < end;) {
        line++;
        char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        char *status = memmem(line, (size_t)(eol - line) < 1000 ? (size_t)(eol - line) : 1000, ",ok,", 4);
        char *x = status ? memchr(status, 'x', (size_t)(eol - status)) : NULL; /* (after the path) */
        ok += x && strspn(x, "x") == n;
        line = eol < end ? eol : NULL;
    }
    free(d);
    return ok;
}

/* 16 answers of 12 MB at once, with room for about two: the others wait (paused, or asleep)
 * until there is room, and every one arrives whole: waiting for room fails no image. (With
 * retries: on a machine so slow that a wait outlasts --timeout-ms, that attempt is retried.) */
static void test_large_answers_wait(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "bigans", 16, 32), 0);
    struct mock_proc m;
    char cfg[700];
    CU_ASSERT_EQUAL_FATAL(answers_start(&t, "12000000", &m, cfg, sizeof cfg), 0);
    const char *strategies[] = {"curl-multi", "threads"};
    for (int k = 0; k < 2; k++) {
#ifdef __SANITIZE_ADDRESS__
        setenv("ASAN_OPTIONS", "quarantine_size_mb=0", 1);
#endif
        int rc;
        struct peaks pk = answers_run(&t, &m, cfg, strategies[k], "3", "16000000", "16000000", &rc);
#ifdef __SANITIZE_ADDRESS__
        unsetenv("ASAN_OPTIONS");
#endif
        CHECKF(rc == 0, "%s: exit %d", strategies[k], rc);
        long ok = whole_answers(t.csv, 12000000);
        CHECKF(ok == (long)t.n, "%s: %ld of %zu rows ok with the whole answer", strategies[k], ok, t.n);
        fprintf(stderr, "\n  [limits] 16 answers of 12 MB (%s): peak %ld MB with --max-memory 16000000 ",
                strategies[k], pk.parent / 1024);
        /* the answers' share: 16 + 2 x 16 MB; then the results on their way to the file */
        long most = 200 * 1024 + ASAN_EXTRA_KB;
        CHECKF(!PEAK_JUDGED || (pk.parent > 0 && pk.parent < most), "%s: peak %ld kB, over %ld kB", strategies[k], pk.parent, most);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- worker processes draw on the run's one budget ---- */

/* Eight 30 MB images (70 MB of budget each: bytes and base64) with --max-memory 100000000 and
 * eight worker processes; the peaks of a run under strategy. Every row ok. */
static struct peaks processes_run(const char *strategy)
{
    struct peaks pk = {0, 0};
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(big_tree(&t, 8, 30000000), 0); /* (beside one small image) */
    struct mock_proc m;
    const char *margs[] = {"--trust-payload", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
#ifdef __SANITIZE_ADDRESS__
    setenv("ASAN_OPTIONS", "quarantine_size_mb=0", 1);
#endif
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--force", "--quiet",
                          "--strategy", strategy, "--workers", "8", "--max-image-bytes", "40000000",
                          "--max-memory", "100000000", NULL};
    int rc;
    pk = run_peaks(argv, t.log, tmo(180), &rc);
#ifdef __SANITIZE_ADDRESS__
    unsetenv("ASAN_OPTIONS");
#endif
    CHECKF(rc == 0, "%s: exit %d", strategy, rc);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, 9);
    for (size_t r = 0; r < c.n; r++)
        CHECKF(c.rows[r].n > 1 && !strcmp(c.rows[r].f[COL_STATUS].s, "ok"), "%s: row %zu is not ok", strategy, r);
    e2e_csv_free(&c);
    fprintf(stderr, "\n  [limits] eight 30 MB images, --strategy %s, --max-memory 100000000: parent %ld MB, workers %ld MB ",
            strategy, pk.parent / 1024, pk.workers / 1024);
    mock_stop(&m);
    e2e_tree_free(&t);
    return pk;
}

/* The workers load; the parent gets each image back with its share of the budget, and loads wait
 * for it: the parent holds about the budget, not every image the workers have loaded. */
static void test_load_processes(void)
{
    struct peaks pk = processes_run("load=processes");
    long most = 260 * 1024 + ASAN_EXTRA_KB;
    CHECKF(!PEAK_JUDGED || (pk.parent > 0 && pk.parent < most), "parent peak %ld kB, over %ld kB", pk.parent, most);
}

/* Each worker loads and queries: together they hold about one budget, not one each (up to eight
 * 70 MB images at once before). */
static void test_strategy_processes(void)
{
    struct peaks pk = processes_run("processes");
    long most = 200 * 1024 + 2 * ASAN_EXTRA_KB;
    CHECKF(!PEAK_JUDGED || (pk.workers > 0 && pk.workers < most), "workers' peak %ld kB, over %ld kB", pk.workers, most);
}

/* A worker process killed while it holds an image's share: its parent gives the share back, so
 * the next image (which goes only alone: nothing else held) still loads, and every row is ok, the
 * killed one's image retried. Without the give-back the run would wait for ever. */
static void test_killed_worker_share(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(big_tree(&t, 4, 30000000), 0); /* (beside one small image) */
    struct mock_proc m;
    const char *margs[] = {"--trust-payload", "--latency-ms", "300", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--force", "--quiet",
                          "--strategy", "processes", "--workers", "2", "--max-image-bytes", "40000000",
                          "--max-memory", "60000000", NULL}; /* an image (70 MB while loaded) goes alone */
    pid_t pid = e2e_spawn(argv, t.log);
    CU_ASSERT_FATAL(pid > 0);
    /* a worker holding a 30 MB image (70 MB of the budget: its bytes and base64) */
    pid_t victim = 0;
    double deadline = now_ms() + tmo(60) * 1000.0;
    while (!victim && e2e_alive(pid) && now_ms() < deadline) {
        pid_t kids[8];
        int n = e2e_children(pid, kids, NULL, 8);
        for (int i = 0; i < n && !victim; i++)
            if (proc_kb(kids[i], "status", "VmRSS:") > 35 * 1024) /* idle: about 13 MB; the base64 alone is 40 */
                victim = kids[i];
        if (!victim)
            sleep_ms(10);
    }
    CHECKF(victim > 0, "no worker was seen holding an image");
    if (victim > 0)
        kill(victim, SIGKILL);
    int rc = e2e_wait(pid, tmo(60));
    CHECKF(rc == 0, "exit %d (-2: it waited for a share nobody gives back)", rc);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, 5);
    for (size_t r = 0; r < c.n; r++)
        CHECKF(c.rows[r].n > 1 && !strcmp(c.rows[r].f[COL_STATUS].s, "ok"), "row %zu: %s %s", r,
               c.rows[r].f[COL_STATUS].s, c.rows[r].n > COL_ERROR ? c.rows[r].f[COL_ERROR].s : "");
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&t);
}

int register_limits(void)
{
    /* Two suites: the answers' paths, judged under ASan too; the peaks in bytes, which ASan's
     * allocator would only blur (make sanitize leaves "memory peaks" out; make check judges). */
    CU_pSuite s = CU_add_suite("limits", NULL, NULL);
    if (!s || !CU_add_test(s, "an answer over --max-answer-bytes fails its image, and says so", test_max_answer) ||
        !CU_add_test(s, "a 413 before the upload ends: siblings still uploading keep their payload", test_early_413) ||
        !CU_add_test(s, "16 answers of 12 MB with room for two: they wait for room, and all arrive", test_large_answers_wait) ||
        !CU_add_test(s, "a worker killed holding an image's share: the share comes back, every row ok", test_killed_worker_share))
        return -1;
    s = CU_add_suite("memory peaks", NULL, NULL);
    if (!s || !CU_add_test(s, "eight 60 MB images: --max-memory bounds the peak in bytes", test_max_memory) ||
        !CU_add_test(s, "16 endless answers in flight (curl-multi): --max-memory bounds them", test_endless_multi) ||
        !CU_add_test(s, "16 endless answers in flight (threads): --max-memory bounds them", test_endless_threads) ||
        !CU_add_test(s, "30 MB images, load=processes: the parent holds about --max-memory", test_load_processes) ||
        !CU_add_test(s, "30 MB images, --strategy processes: the workers together hold about --max-memory", test_strategy_processes))
        return -1;
    return 0;
}
