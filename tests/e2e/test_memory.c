/* Suite "limits": memory bounded in bytes, not only in items.
 *
 *   - eight 60 MB images: with --max-memory 200000000 annotate's peak resident memory stays near
 *     two images' base64 (80 MB each), where without a cap it holds them all; every row ok;
 *   - an answer larger than --max-answer-bytes fails its image with a reason that says so. */
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
#include "tree.h"

/* The peak resident size of pid (VmHWM, kB), sampled until it exits; its exit status in *rc. */
static long peak_kb(pid_t pid, int timeout_s, int *rc)
{
    long peak = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    double end = now_ms() + timeout_s * 1000.0;
    while (e2e_alive(pid) && now_ms() < end) {
        char *st = slurp(path, NULL);
        const char *h = st ? strstr(st, "VmHWM:") : NULL;
        if (h && atol(h + 6) > peak)
            peak = atol(h + 6);
        free(st);
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
    char out[8192];
    int rc = -1;
    for (int k = 0; k < 100; k++) { /* until it listens */
        const char *extra[] = {"--config", cfg, "--max-answer-bytes", "1000000", "--outage-timeout", "0", NULL};
        rc = e2e_run(out, sizeof out, tmo(60), t.root, t.csv, server, extra);
        if (!strstr(out, "onnect"))
            break;
        sleep_ms(100);
    }
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
    sleep_ms(500);
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

int register_limits(void)
{
    CU_pSuite s = CU_add_suite("limits", NULL, NULL);
    if (!s || !CU_add_test(s, "eight 60 MB images: --max-memory bounds the peak in bytes", test_max_memory) ||
        !CU_add_test(s, "an answer over --max-answer-bytes fails its image, and says so", test_max_answer) ||
        !CU_add_test(s, "a 413 before the upload ends: siblings still uploading keep their payload", test_early_413))
        return -1;
    return 0;
}
