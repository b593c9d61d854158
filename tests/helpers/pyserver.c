/* util_pyserver: the independent dialect server as a child process, and its predictions (see
 * util_pyserver.h). Not a suite: only helpers.
 *
 * As in util_proc.c, everything the child needs is built before fork(): the test binary may
 * run threads, and between fork and exec only async-signal-safe calls are allowed. */
#include "pyserver.h"
#include "e2e.h"
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const pyserver_examples[] = {
    "kserve-v2", "torchserve", "tfserving", "openai-vision", "hf-endpoint", "multipart", "google-vision", NULL,
};

const char *pyserver_python(void)
{
    const char *p = getenv("PYSERVER_PYTHON");
    if (p && *p)
        return p;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

const char *pyserver_script(void)
{
    static char buf[1024];
    if (access("tests/servers/dialects.py", R_OK) == 0)
        return "tests/servers/dialects.py";
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *slash = strrchr(buf, '/');
    if (slash)
        snprintf(slash, sizeof buf - (size_t)(slash - buf), "/servers/dialects.py");
    else
        snprintf(buf, sizeof buf, "servers/dialects.py");
    return buf;
}

/* Reaps pid if it has ended: 1 when it has (its status in *rc), 0 while it runs. */
static int ended(pid_t pid, int *rc)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
        *rc = decode_status(st);
        return 1;
    }
    return r < 0 && errno == ECHILD ? (*rc = -1, 1) : 0;
}

/* One attempt on one port: 0 (running and answering), 1 (it exited: try another port), -1. */
static int start_on(int port, const char *token, struct pyserver *out)
{
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *argv[8];
    int n = 0;
    argv[n++] = pyserver_python();
    argv[n++] = pyserver_script();
    argv[n++] = "--port";
    argv[n++] = port_s;
    if (token) {
        argv[n++] = "--token";
        argv[n++] = token;
    }
    argv[n] = NULL;
    char health[96];
    snprintf(health, sizeof health, "http://127.0.0.1:%d/health", port);

    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        perror("pyserver_start: fork");
        if (devnull >= 0)
            close(devnull);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (devnull >= 0)
            dup2(devnull, 0);
        execvp(argv[0], (char *const *)argv);
        static const char msg[] = "pyserver_start: exec of the python interpreter failed\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to say */
        }
        _exit(127);
    }
    if (devnull >= 0)
        close(devnull);

    long deadline = now_ms() + tmo(5) * 1000L; /* importing FastAPI takes a while on a busy machine */
    for (;;) {
        int rc;
        if (ended(pid, &rc)) {
            fprintf(stderr, "pyserver_start: %s %s --port %d exited with %d before answering\n", argv[0],
                    argv[1], port, rc);
            return rc == 127 ? -1 : 1;
        }
        long status = 0;
        struct http_opts o = {.timeout_ms = 1000};
        if (http_request(health, &o, NULL, 0, &status, NULL, NULL) == 0 && status == 200)
            break;
        if (now_ms() > deadline) {
            fprintf(stderr, "pyserver_start: no answer from %s within %d s\n", health, tmo(5));
            struct pyserver tmp = {.pid = pid};
            pyserver_stop(&tmp);
            return -1;
        }
        sleep_ms(50);
    }
    out->pid = pid;
    out->port = port;
    snprintf(out->base_url, sizeof out->base_url, "http://127.0.0.1:%d", port);
    return 0;
}

int pyserver_start(const char *token, struct pyserver *out)
{
    memset(out, 0, sizeof *out);
    const char *script = pyserver_script();
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "pyserver_start: %s not found\n", script);
        return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        /* Free now; another process could take it before the server binds it, hence the retry. */
        int port = e2e_closed_port();
        if (port <= 0) {
            fprintf(stderr, "pyserver_start: no free port\n");
            return -1;
        }
        int r = start_on(port, token, out);
        if (r <= 0)
            return r;
    }
    return -1;
}

void pyserver_stop(struct pyserver *s)
{
    if (s->pid <= 0)
        return;
    pid_t pid = s->pid;
    s->pid = 0;
    kill(pid, SIGTERM);
    if (wait_for(pid, 5000) == -2) {
        fprintf(stderr, "pyserver_stop: %d ignored SIGTERM; killing it\n", (int)pid);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

uint32_t pyserver_crc32(const unsigned char *p, size_t n)
{
    /* Bit at a time, no table: no shared state for threads, and test images are small. */
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static int starts(const unsigned char *p, size_t n, const char *sig, size_t k)
{
    return n >= k && memcmp(p, sig, k) == 0;
}

int pyserver_is_image(const unsigned char *p, size_t n)
{
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return 1;
    return starts(p, n, "\x89PNG\r\n\x1a\n", 8) || starts(p, n, "\xff\xd8\xff", 3) ||
           starts(p, n, "GIF87a", 6) || starts(p, n, "GIF89a", 6) || starts(p, n, "BM", 2) ||
           starts(p, n, "II*\0", 4) || starts(p, n, "MM\0*", 4);
}

char *pyserver_expected(const char *example, const unsigned char *bytes, size_t len)
{
    if (!example || !pyserver_is_image(bytes, len))
        return NULL;
    uint32_t crc = pyserver_crc32(bytes, len), crc2 = crc ^ 0xFFFFFFFFu;
    char l1[16], l2[16];
    snprintf(l1, sizeof l1, "L%08x", crc);
    snprintf(l2, sizeof l2, "L%08x", crc2);
    char buf[512];
    if (!strcmp(example, "kserve-v2") || !strcmp(example, "multipart"))
        snprintf(buf, sizeof buf, "\"%s\"", l1);
    else if (!strcmp(example, "torchserve"))
        snprintf(buf, sizeof buf, "{\"%s\":%zu,\"%s\":0}", l1, len, l2);
    else if (!strcmp(example, "tfserving") || !strcmp(example, "openai-vision"))
        snprintf(buf, sizeof buf, "{\"label\":\"%s\",\"score\":%zu}", l1, len);
    else if (!strcmp(example, "hf-endpoint"))
        snprintf(buf, sizeof buf, "[{\"label\":\"%s\",\"score\":%zu},{\"label\":\"%s\",\"score\":0}]", l1, len, l2);
    else if (!strcmp(example, "google-vision"))
        snprintf(buf, sizeof buf,
                 "[{\"mid\":\"/m/%08x\",\"description\":\"%s\",\"score\":%zu,\"topicality\":%zu},"
                 "{\"mid\":\"/m/%08x\",\"description\":\"%s\",\"score\":0,\"topicality\":0}]",
                 crc, l1, len, len, crc2, l2);
    else
        return NULL;
    return strdup(buf);
}
