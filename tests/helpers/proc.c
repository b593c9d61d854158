/* util_proc: child processes and HTTP for the tests (see util_proc.h). Not a suite: only
 * helpers.
 *
 * Everything the child needs is built before fork(): the test binary may run threads, and
 * between fork and exec only async-signal-safe calls are allowed. */
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#define MAX_WORDS 32

/* The words of env var name, copied into store (which must outlive argv). Returns the count. */
static int env_words(const char *name, char *store, size_t cap, const char **words, int max)
{
    const char *v = getenv(name);
    if (!v || strlen(v) >= cap)
        return 0;
    strcpy(store, v);
    int n = 0;
    for (char *save = NULL, *w = strtok_r(store, " \t\n", &save); w && n < max;
         w = strtok_r(NULL, " \t\n", &save))
        words[n++] = w;
    return n;
}

/* In the child, between fork and exec: plain signal state, then exec or die with 127. */
static void exec_child(const char *const argv[])
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    execvp(argv[0], (char *const *)argv);
    static const char msg[] = "util_proc: exec failed\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to say */
    }
    _exit(127);
}

const char *mock_bin(void)
{
    const char *b = getenv("MOCK_BIN");
    return b && *b ? b : "build/mock-model-server";
}

int mock_start(struct mock_proc *m, const char *const extra_args[])
{
    memset(m, 0, sizeof *m);
    const char *bin = mock_bin();
    static char wrap[1024];
    const char *argv[MAX_WORDS + 64];
    int n = env_words("MOCK_WRAP", wrap, sizeof wrap, argv, MAX_WORDS);
    int wrapped = n > 0;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; extra_args && extra_args[i]; i++) {
        if (n >= (int)(sizeof argv / sizeof argv[0]) - 1) {
            fprintf(stderr, "mock_start: too many arguments\n");
            return -1;
        }
        argv[n++] = extra_args[i];
    }
    argv[n] = NULL;
    return listener_start(m, argv, wrapped);
}

int wait_accepting(pid_t pid, int port)
{
    long deadline = now_ms() + tmo(10) * 1000L;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) != 0) {
            fprintf(stderr, "wait_accepting: the server (pid %d) exited before port %d accepted\n", (int)pid, port);
            return -1;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "wait_accepting: nothing accepted on port %d in %d s\n", port, tmo(10));
            return -1;
        }
        sleep_ms(20);
    }
}

int listener_start(struct mock_proc *m, const char *const argv[], int patient)
{
    memset(m, 0, sizeof *m);
    const char *bin = argv[0];
    int wrapped = patient;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("mock_start: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("mock_start: fork");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        exec_child(argv);
    }
    close(fds[1]);

    char line[256];
    size_t used = 0;
    long deadline = now_ms() + (wrapped ? 60000 : tmo(10) * 1000L);
    int port = -1;
    while (port < 0) {
        long left = deadline - now_ms();
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "mock_start: no \"listening on\" line from %s\n", bin);
            break;
        }
        ssize_t k = read(fds[0], line + used, sizeof line - 1 - used);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fprintf(stderr, "mock_start: %s exited before listening\n", bin);
            break;
        }
        used += (size_t)k;
        line[used] = '\0';
        char *nl = strchr(line, '\n');
        if (!nl) {
            if (used == sizeof line - 1)
                break;
            continue;
        }
        *nl = '\0';
        char *colon = strrchr(line, ':');
        if (strncmp(line, "listening on ", 13) != 0 || !colon) {
            fprintf(stderr, "mock_start: unexpected first line: %s\n", line);
            break;
        }
        port = atoi(colon + 1);
        *colon = '\0';
        snprintf(m->base_url, sizeof m->base_url, "http://%.100s:%d", line + 13, port);
    }
    close(fds[0]); /* the server prints nothing more; a stray write gets EPIPE, not a signal */
    if (port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        m->base_url[0] = '\0';
        return -1;
    }
    m->pid = pid;
    m->port = port;
    return 0;
}

int mock_stop(struct mock_proc *m)
{
    if (m->pid <= 0)
        return -1;
    pid_t pid = m->pid;
    m->pid = 0;
    kill(pid, SIGTERM);
    int rc = wait_for(pid, getenv("MOCK_WRAP") ? 30000 : 5000);
    if (rc == -2) {
        fprintf(stderr, "mock_stop: %d ignored SIGTERM; killing it\n", (int)pid);
        kill(pid, SIGKILL);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        rc = decode_status(st);
    }
    return rc;
}

cJSON *mock_stats(const struct mock_proc *m)
{
    char url[sizeof m->base_url + 8];
    snprintf(url, sizeof url, "%s/stats", m->base_url);
    long status = 0;
    char *body = NULL;
    cJSON *j = NULL;
    if (http_request(url, NULL, NULL, 0, &status, &body, NULL) == 0 && status == 200)
        j = cJSON_Parse(body);
    free(body);
    return j;
}

long mock_stat(const cJSON *stats, const char *dotted)
{
    char key[64];
    const cJSON *j = stats;
    for (const char *p = dotted; j && *p;) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof key)
            return -1;
        memcpy(key, p, n);
        key[n] = '\0';
        j = cJSON_GetObjectItemCaseSensitive(j, key);
        p += n + (p[n] == '.');
    }
    return cJSON_IsNumber(j) ? (long)j->valuedouble : -1;
}

/* Appends to out keeping only its last cap - 1 bytes. */
static void keep_tail(char *out, size_t cap, size_t *used, const char *p, size_t n)
{
    if (cap == 0)
        return;
    size_t room = cap - 1;
    if (n >= room) {
        memcpy(out, p + n - room, room);
        *used = room;
    } else {
        if (*used + n > room) {
            size_t drop = *used + n - room;
            memmove(out, out + drop, *used - drop);
            *used -= drop;
        }
        memcpy(out + *used, p, n);
        *used += n;
    }
    out[*used] = '\0';
}

int run_cmd(const char *const argv[], int timeout_s, char *out, size_t outlen)
{
    return run_cmd_hook(argv, timeout_s, out, outlen, NULL, NULL);
}

int run_cmd_hook(const char *const argv[], int timeout_s, char *out, size_t outlen, void (*in_child)(void *),
                 void *arg)
{
    static char wrap[1024];
    const char *full[MAX_WORDS + 256];
    int n = env_words("ANNOTATE_WRAP", wrap, sizeof wrap, full, MAX_WORDS);
    for (int i = 0; argv[i]; i++) {
        if (n >= (int)(sizeof full / sizeof full[0]) - 1)
            return -1;
        full[n++] = argv[i];
    }
    full[n] = NULL;
    if (out && outlen)
        out[0] = '\0';
    if (n == 0)
        return -1;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0); /* its own group: a timeout kills its children too */
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        if (in_child)
            in_child(arg);
        exec_child(full);
    }
    setpgid(pid, pid); /* also here, so the group exists whoever runs first */
    close(fds[1]);

    long deadline = now_ms() + timeout_s * 1000L;
    size_t used = 0;
    int eof = 0, rc = -2, timed_out = 0;
    char buf[4096];
    for (;;) {
        if (rc == -2) {
            int st;
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid)
                rc = decode_status(st);
        }
        /* Done when it exited and its output is drained (a grandchild holding the pipe open
         * must not keep us waiting: after the exit we read only what is already there). */
        if (rc != -2 && eof)
            break;
        long left = deadline - now_ms();
        if (left <= 0) {
            if (rc != -2)
                break;
            timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            rc = decode_status(st);
            break;
        }
        if (eof) {
            sleep_ms(left < 5 ? left : 5);
            continue;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int wait = rc != -2 ? 0 : (left < 20 ? (int)left : 20);
        int r = poll(&pfd, 1, wait);
        if (r > 0) {
            ssize_t k = read(fds[0], buf, sizeof buf);
            if (k > 0)
                keep_tail(out, outlen, &used, buf, (size_t)k);
            else if (k == 0 || errno != EINTR)
                eof = 1;
        } else if (r == 0 && rc != -2) {
            eof = 1; /* exited and nothing more is waiting */
        }
    }
    close(fds[0]);
    if (timed_out && out && outlen) {
        char note[64];
        int k = snprintf(note, sizeof note, "\n[run_cmd: killed after %d s]\n", timeout_s);
        keep_tail(out, outlen, &used, note, (size_t)k);
    }
    return rc;
}

struct grow {
    char *p;
    size_t n, cap;
};

static size_t on_bytes(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct grow *g = arg;
    size_t n = size * nmemb;
    if (g->n + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < g->n + n + 1)
            cap *= 2;
        char *p = realloc(g->p, cap);
        if (!p)
            return 0;
        g->p = p;
        g->cap = cap;
    }
    memcpy(g->p + g->n, ptr, n);
    g->n += n;
    g->p[g->n] = '\0';
    return n;
}

static char *take(struct grow *g)
{
    return g->p ? g->p : calloc(1, 1);
}

int http_request(const char *url, const struct http_opts *o, const char *body, size_t len,
                 long *status, char **resp, char **headers)
{
    struct grow b = {0}, h = {0};
    *status = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return CURLE_FAILED_INIT;
    const char *method = o && o->method ? o->method : body ? "POST" : "GET";
    const char *ct = o && o->content_type ? o->content_type : "application/json";
    char ct_line[128];
    snprintf(ct_line, sizeof ct_line, "Content-Type:%s%s", *ct ? " " : "", ct);
    struct curl_slist *hl = curl_slist_append(NULL, ct_line);
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip for big bodies */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o && o->timeout_ms > 0 ? o->timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    if (resp)
        *resp = take(&b);
    else
        free(b.p);
    if (headers)
        *headers = take(&h);
    else
        free(h.p);
    return (int)rc;
}

int http_post(const char *url, const char *body, size_t len, long *status, char **resp)
{
    return http_request(url, NULL, body ? body : "", len, status, resp, NULL);
}
