/*
 * appserver: the lab's application, a tiny HTTP/1.1 server.
 *
 *   appserver ADDRESS PORT APP_DIR [DELAY_MS]
 *
 * At start it reads the installed release under APP_DIR/current: VERSION (the version string),
 * BROKEN (present = this release is broken, /health answers 503) and app.conf (delay_ms=N). An
 * update therefore needs a restart, exactly like the vendor applications the orchestrator updates.
 *
 *   GET /        sleeps delay_ms (default 150) then 200 "version=<v>\n", header X-App-Version
 *   GET /health  200 {"status":"ok","version":"<v>"}  or 503 {"status":"broken",...}
 *
 * One thread per connection, HTTP/1.1 keep-alive (honours "Connection: close", HTTP/1.0 closes unless
 * asked to keep alive). SIGTERM/SIGINT is graceful: the listening socket closes at once, requests in
 * flight finish (answered with "Connection: close"), idle keep-alive connections are closed, then the
 * process exits. The pid goes to APP_DIR/app.pid once the socket listens, so a caller that waits for
 * the pidfile knows the port is open.
 *
 * Built static (gcc -O2 -static -pthread) because the lab's guest has no libc of its own.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX 8192
#define IDLE_TIMEOUT_MS 60000 /* an idle keep-alive connection is closed after this */
#define READ_TIMEOUT_MS 10000 /* a half-received request is dropped after this */
#define DRAIN_TIMEOUT_MS 30000 /* SIGTERM waits at most this long for requests in flight */
#define POLL_MS 100

static char g_version[64] = "unknown";
static int g_broken = 0;
static long g_delay_ms = 150;
static char g_pidfile[4096];

static atomic_int g_stopping = 0;
static atomic_int g_connections = 0;

static void logmsg(const char *fmt, ...) {
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s appserver[%d] ", stamp, (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&g_stopping, 1);
}

static long monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Reads a small file into buf, trimmed of trailing whitespace. Returns 0 on success. */
static int read_small(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    return 0;
}

static int load_release(const char *app_dir) {
    char path[4096], buf[4096];
    snprintf(path, sizeof path, "%s/current/VERSION", app_dir);
    if (read_small(path, g_version, sizeof g_version) != 0 || g_version[0] == '\0') {
        logmsg("cannot read the release version from %s: %s", path, strerror(errno));
        return -1;
    }
    for (char *p = g_version; *p; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
            logmsg("the version in %s has a character that cannot go into JSON", path);
            return -1;
        }
    }
    snprintf(path, sizeof path, "%s/current/BROKEN", app_dir);
    struct stat st;
    g_broken = stat(path, &st) == 0;
    snprintf(path, sizeof path, "%s/current/app.conf", app_dir);
    if (read_small(path, buf, sizeof buf) == 0) {
        char *line = strstr(buf, "delay_ms=");
        if (line) g_delay_ms = strtol(line + strlen("delay_ms="), NULL, 10);
    }
    return 0;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int respond(int fd, int status, const char *reason, const char *ctype, const char *body, int keep,
                   int head_only) {
    char out[1024];
    size_t blen = strlen(body);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nX-App-Version: %s\r\n"
                     "Connection: %s\r\n\r\n%s",
                     status, reason, ctype, blen, g_version, keep ? "keep-alive" : "close",
                     head_only ? "" : body);
    return write_all(fd, out, (size_t)n);
}

/* Case-insensitive search for a header's value in the header block; copies it into out. */
static int header_value(const char *headers, const char *name, char *out, size_t size) {
    size_t nlen = strlen(name);
    const char *p = headers;
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t i = 0;
            while (v[i] && v[i] != '\r' && i + 1 < size) {
                out[i] = v[i];
                i++;
            }
            out[i] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Waits until fd is readable. Returns 1 readable, 0 give up (timeout or shutdown while idle). */
static int wait_readable(int fd, int idle) {
    long start = monotonic_ms();
    long limit = idle ? IDLE_TIMEOUT_MS : READ_TIMEOUT_MS;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, POLL_MS);
        if (r > 0) return 1; /* a request that arrived before the stop is still served */
        if (r < 0 && errno != EINTR) return 0;
        if (idle && atomic_load(&g_stopping)) return 0;
        if (monotonic_ms() - start > limit) return 0;
    }
}

/* Serves one request from buf[0..end). Returns 1 to keep the connection, 0 to close it. */
static int serve(int fd, char *req, int keep_default) {
    char method[16], target[2048], proto[16], conn[64];
    if (sscanf(req, "%15s %2047s %15s", method, target, proto) != 3) {
        respond(fd, 400, "Bad Request", "text/plain", "bad request\n", 0, 0);
        return 0;
    }
    int keep = strcmp(proto, "HTTP/1.1") == 0 ? keep_default : 0;
    if (header_value(req, "Connection", conn, sizeof conn)) {
        if (strcasecmp(conn, "close") == 0) keep = 0;
        if (strcasecmp(conn, "keep-alive") == 0) keep = 1;
    }
    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        respond(fd, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", 0, 0);
        return 0;
    }
    char *query = strchr(target, '?');
    if (query) *query = '\0';
    char body[256];
    int rc;
    if (strcmp(target, "/health") == 0) {
        snprintf(body, sizeof body, "{\"status\":\"%s\",\"version\":\"%s\"}\n", g_broken ? "broken" : "ok",
                 g_version);
        rc = respond(fd, g_broken ? 503 : 200, g_broken ? "Service Unavailable" : "OK", "application/json",
                     body, keep && !atomic_load(&g_stopping), head);
    } else if (strcmp(target, "/") == 0) {
        if (g_delay_ms > 0) sleep_ms(g_delay_ms);
        snprintf(body, sizeof body, "version=%s\n", g_version);
        rc = respond(fd, 200, "OK", "text/plain", body, keep && !atomic_load(&g_stopping), head);
    } else {
        rc = respond(fd, 404, "Not Found", "text/plain", "not found\n", keep && !atomic_load(&g_stopping),
                     head);
    }
    return rc == 0 && keep && !atomic_load(&g_stopping);
}

static void *connection(void *arg) {
    int fd = (int)(long)arg;
    char buf[REQ_MAX + 1];
    size_t have = 0;
    for (;;) {
        char *end = NULL;
        while ((end = have ? strstr(buf, "\r\n\r\n") : NULL) == NULL) {
            if (have >= REQ_MAX || !wait_readable(fd, have == 0)) goto done;
            ssize_t n = recv(fd, buf + have, REQ_MAX - have, 0);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                goto done;
            }
            have += (size_t)n;
            buf[have] = '\0';
        }
        size_t req_len = (size_t)(end - buf) + 4;
        char clen[32];
        long body_len = 0;
        end[2] = '\0'; /* keep the last header's CRLF for header_value, cut the blank line */
        if (header_value(buf, "Content-Length", clen, sizeof clen)) body_len = strtol(clen, NULL, 10);
        if (body_len < 0 || (size_t)body_len > REQ_MAX - req_len) goto done; /* no bodies to speak of */
        while (have < req_len + (size_t)body_len) {
            if (!wait_readable(fd, 0)) goto done;
            ssize_t n = recv(fd, buf + have, REQ_MAX - have, 0);
            if (n <= 0) goto done;
            have += (size_t)n;
        }
        if (!serve(fd, buf, 1)) goto done;
        size_t used = req_len + (size_t)body_len;
        memmove(buf, buf + used, have - used);
        have -= used;
        buf[have] = '\0';
    }
done:
    close(fd);
    atomic_fetch_sub(&g_connections, 1);
    return NULL;
}

static int listen_on(const char *address, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
        logmsg("not an IPv4 address: %s", address);
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 256) < 0) {
        logmsg("cannot listen on %s:%d: %s", address, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void write_pidfile(void) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", g_pidfile);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    rename(tmp, g_pidfile);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s ADDRESS PORT APP_DIR [DELAY_MS]\n", argv[0]);
        return 2;
    }
    const char *address = argv[1];
    int port = atoi(argv[2]);
    const char *app_dir = argv[3];
    if (load_release(app_dir) != 0) return 1;
    if (argc == 5) g_delay_ms = strtol(argv[4], NULL, 10);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    int lfd = listen_on(address, port);
    if (lfd < 0) return 1;
    snprintf(g_pidfile, sizeof g_pidfile, "%s/app.pid", app_dir);
    write_pidfile();
    logmsg("version %s%s listening on %s:%d, delay %ld ms", g_version, g_broken ? " (BROKEN)" : "", address,
           port, g_delay_ms);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024 + REQ_MAX * 2);
    while (!atomic_load(&g_stopping)) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        if (poll(&pfd, 1, POLL_MS) <= 0) continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) continue;
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&g_connections, 1);
        pthread_t tid;
        if (pthread_create(&tid, &attr, connection, (void *)(long)cfd) != 0) {
            close(cfd);
            atomic_fetch_sub(&g_connections, 1);
        }
    }
    close(lfd); /* new connections are refused from here on */
    logmsg("stopping: %d connection(s) open, finishing requests in flight", atomic_load(&g_connections));
    long deadline = monotonic_ms() + DRAIN_TIMEOUT_MS;
    while (atomic_load(&g_connections) > 0 && monotonic_ms() < deadline) sleep_ms(20);
    int left = atomic_load(&g_connections);
    unlink(g_pidfile);
    if (left > 0)
        logmsg("stopped; %d connection(s) cut at the %d ms drain limit", left, DRAIN_TIMEOUT_MS);
    else
        logmsg("stopped");
    return 0;
}
