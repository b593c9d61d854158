/* Suite "outage": a model server that goes away in the middle of a run.
 *
 *   - stopped for 10 s and started again on its port, with annotate's default settings: no row
 *     fails, every cell is as predicted, and the progress line said the stage was unreachable;
 *   - stopped for good with --outage-timeout 2: the images fail (connection refused) after about
 *     that long, every image still gets its row, and the run ends;
 *   - one stage's server unreachable while the other's answers, on an 80-column terminal (a
 *     pseudo-terminal) with every stage's limit on the line: the note is on the line, not cut
 *     off behind the limits. */
#include <CUnit/CUnit.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "util.h"
#include "proc.h"

/* annotate ROOT --out CSV --server URL --force EXTRA..., its output in log (no --quiet: the
 * progress line is part of what is checked). */
static pid_t spawn(const char *log, const struct e2e_tree *t, const char *server, const char *const *extra)
{
    const char *argv[32] = {e2e_annotate_bin(), t->root, "--out", t->csv, "--server", server, "--force"};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return e2e_spawn(argv, log);
}

static void test_restart(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "outage", 400, 3), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "20", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", m.port);
    const char *extra[] = {"--progress-interval", "1", NULL};
    pid_t pid = spawn(t.log, &t, m.base_url, extra);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT(e2e_wait_lines(t.csv, 20, pid, tmo(60)));
    mock_stop(&m); /* the server goes away in the middle of the run... */
    sleep_ms(10000);
    const char *again[] = {"--latency-ms", "20", "--port", port, NULL}; /* ...and comes back */
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, again), 0);
    CU_ASSERT_EQUAL(m.port, atoi(port));
    int rc = e2e_wait(pid, tmo(120));
    char *log = slurp(t.log, NULL);
    if (rc != 0)
        show("outage: 10 s restart", rc, log ? log : "");
    CU_ASSERT_EQUAL(rc, 0);
    CHECKF(log && strstr(log, "unreachable for") && strstr(log, ", retrying"),
           "the progress line never said a stage was unreachable");
    free(log);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    long bad = e2e_check_results(&c, t.paths, t.n, NULL, NULL);
    CHECKF(bad == 0, "%ld rows are not as predicted after a 10 s outage", bad);
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&t);
}

static void test_gone_for_good(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "outage2", 200, 4), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "20", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    const char *extra[] = {"--outage-timeout", "2", "--backoff-max-ms", "500", "--quiet", NULL};
    double t0 = now_ms();
    pid_t pid = spawn(t.log, &t, m.base_url, extra);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT(e2e_wait_lines(t.csv, 10, pid, tmo(60)));
    mock_stop(&m);
    int rc = e2e_wait(pid, tmo(60));
    double took = now_ms() - t0;
    CU_ASSERT_EQUAL(rc, 1); /* rows failed */
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CU_ASSERT_EQUAL(c.n, t.n);
    long failed = 0, refused = 0;
    for (size_t r = 0; r < c.n; r++)
        if (c.rows[r].n > COL_ERROR && !strcmp(c.rows[r].f[COL_STATUS].s, "failed")) {
            failed++;
            refused += strstr(c.rows[r].f[COL_ERROR].s, "onnect") != NULL;
        }
    CHECKF(failed > 0 && refused == failed, "%ld failed rows, %ld of them for the lost connection", failed, refused);
    CHECKF(took < 30000, "the run took %.0f ms after its server went away for good", took);
    e2e_csv_free(&c);
    e2e_tree_free(&t);
}

/* argv on a pseudo-terminal of cols columns: what it wrote there (the last len - 1 bytes kept
 * whole are the first ones), its exit status (-1: killed after timeout_s, or not started). */
static int run_on_tty(const char *const argv[], int cols, char *out, size_t len, int timeout_s)
{
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
    int fd;
    pid_t pid = forkpty(&fd, NULL, NULL, &ws);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    size_t n = 0;
    double end = now_ms() + timeout_s * 1000.0;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int left = (int)(end - now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&pf, 1, left) <= 0)
            continue;
        char buf[4096];
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0)
            break; /* EIO: the program has ended and closed the terminal */
        size_t c = (size_t)k < len - 1 - n ? (size_t)k : len - 1 - n;
        memcpy(out + n, buf, c);
        n += c;
    }
    out[n] = 0;
    close(fd);
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The case: a 12-second outage of the captioning stage showed no note, because the
 * note came last on the line, after every stage's "limits", and a terminal's width cut it.
 * Here the second stage's server is not there at all (port 9: connection refused) and the
 * first one answers; --outage-timeout 3 ends the wait, the images then fail. */
static void test_note_on_terminal(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "outage3", 30, 5), 0);
    char pfile[700];
    snprintf(pfile, sizeof pfile, "%s/pipeline.json", t.base);
    static const char text[] = "{\"stages\": ["
                               "{\"name\": \"a_detector_stage\", \"url\": \"/model_01\","
                               " \"fields\": {\"model_03\": null}, \"concurrency\": \"auto\"},"
                               "{\"name\": \"a_captioning_stage\", \"url\": \"http://127.0.0.1:9/model_02\","
                               " \"fields\": {\"model_03\": null}, \"concurrency\": \"auto\"}]}";
    CU_ASSERT_EQUAL_FATAL(write_file(pfile, text, sizeof text - 1), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--force",
                          "--config", pfile, "--outage-timeout", "3", "--backoff-max-ms", "200", NULL};
    static char out[1 << 20];
    int rc = run_on_tty(argv, 80, out, sizeof out, tmo(60));
    mock_stop(&m);
    CU_ASSERT_EQUAL(rc, 1); /* the captions failed after the outage timeout */
    CHECKF(strstr(out, "a_captioning_stage unreachable for ") != NULL,
           "no note on an 80-column terminal: %.1500s", out);
    struct e2e_csv c;
    if (e2e_csv_read(t.csv, &c) == 0) {
        CU_ASSERT_EQUAL(c.n, t.n);
        e2e_csv_free(&c);
    } else {
        CU_FAIL("no results file");
    }
    e2e_tree_free(&t);
}

int register_outage(void)
{
    CU_pSuite s = CU_add_suite("outage", NULL, NULL);
    if (!s || !CU_add_test(s, "a 10 s server restart with default settings: no failed row", test_restart) ||
        !CU_add_test(s, "a server gone for good: rows fail after --outage-timeout, the run ends", test_gone_for_good) ||
        !CU_add_test(s, "one stage unreachable, on an 80-column terminal with limits: the note is shown",
                     test_note_on_terminal))
        return -1;
    return 0;
}
