/* mock: see mock.h. */
#include "bench/mock.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/point.h"
#include "flow/item.h"

const char *bench_mock_only(const struct bench_opts *b)
{
    return b->latency_ms                       ? "--latency-ms"
           : strcmp(b->latency_dist, "fixed") ? "--latency-dist"
           : b->trust_payload                  ? "--trust-payload"
           : b->capacity                       ? "--capacity"
           : b->queue_max >= 0                 ? "--queue-max"
           : b->mock_bin                       ? "--mock"
                                               : NULL;
}

/* The mock's endpoints that the pipeline's batch stages post to ("model_03,model_05"), for its
 * --batch: a batch endpoint answers lists. Empty when none. */
static void batch_endpoints(const struct pipeline *p, char *out, size_t outlen)
{
    out[0] = 0;
    for (int s = 0; p && s < p->n; s++) {
        const char *u = p->stages[s].url, *slash = u ? strrchr(u, '/') : NULL;
        if (!p->stages[s].batch_size || !slash || strncmp(slash + 1, "model_0", 7) || slash[8] < '1' ||
            slash[8] > '5' || slash[9])
            continue;
        size_t l = strlen(out);
        snprintf(out + l, outlen - l, "%s%s", l ? "," : "", slash + 1);
    }
}

/* In the child: the mock, printing its address on out. */
static void exec_mock(const char *bin, const struct bench_opts *b, const char *batch, int out)
{
    dup2(out, STDOUT_FILENO);
    close(out);
    char lat[32], cap[32], qmax[32];
    snprintf(lat, sizeof lat, "%ld", b->latency_ms);
    const char *argv[16] = {bin, "--port", "0", "--latency-ms", lat, "--latency-dist", b->latency_dist};
    int n = 7;
    if (b->trust_payload)
        argv[n++] = "--trust-payload";
    if (b->capacity > 0) {
        snprintf(cap, sizeof cap, "%ld", b->capacity);
        argv[n++] = "--capacity";
        argv[n++] = cap;
        if (b->queue_max >= 0) {
            snprintf(qmax, sizeof qmax, "%ld", b->queue_max);
            argv[n++] = "--queue-max";
            argv[n++] = qmax;
        }
    }
    if (batch[0]) {
        argv[n++] = "--batch";
        argv[n++] = batch;
    }
    argv[n] = NULL;
    execv(bin, (char **)argv);
    fprintf(stderr, "annotate bench: cannot run the mock server %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* The port of "listening on 127.0.0.1:PORT", the first line the mock prints (within 10 s); -1. */
static int read_port(int fd)
{
    char line[256];
    size_t len = 0;
    double deadline = now_s() + 10;
    while (len < sizeof line - 1 && now_s() < deadline) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t r = read(fd, line + len, 1);
        if (r <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = 0;
    int port;
    return sscanf(line, "listening on 127.0.0.1:%d", &port) == 1 ? port : -1;
}

static pid_t spawn(const char *bin, const struct bench_opts *b, const char *batch, char *url, size_t urllen)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        exec_mock(bin, b, batch, fds[1]);
    }
    close(fds[1]);
    int port = pid > 0 ? read_port(fds[0]) : -1;
    close(fds[0]);
    if (pid > 0 && port < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    if (pid > 0)
        snprintf(url, urllen, "http://127.0.0.1:%d", port);
    return pid > 0 ? pid : -1;
}

pid_t bench_mock_start(const struct config *cfg, const struct bench_opts *b, char *url, size_t urllen)
{
    char exe[4096], bin[4096], batch[128];
    if (b->mock_bin) {
        snprintf(bin, sizeof bin, "%s", b->mock_bin);
    } else {
        if (bench_self_exe(exe, sizeof exe))
            return -1;
        snprintf(bin, sizeof bin, "%s/mock-model-server", dirname(exe));
    }
    batch_endpoints(cfg->pipeline, batch, sizeof batch);
    pid_t pid = spawn(bin, b, batch, url, urllen);
    if (pid < 0)
        fprintf(stderr, "annotate bench: cannot start the mock model server %s (give its path with --mock)\n", bin);
    return pid;
}

void bench_mock_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}
