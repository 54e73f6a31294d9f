/* An open-loop HTTP/1.1 load generator for POST /v1/keys/validate; see loadgen.py.
 *
 * Requests are scheduled at a fixed rate whatever the answers do, and each latency counts
 * from the request's scheduled time, so a slow server cannot hide its queueing (no
 * coordinated omission). A timerfd keeps the schedule and reports the periods this
 * process was too busy to see, so none is skipped. A request due while every connection
 * waits for an answer waits, in order, for the first one free.
 *
 * usage: loadgen --port P --keys-file F --rate R [--seconds S] [--connections C]
 * prints one JSON line: requests, seconds, rate, errors, p50_ms, p99_ms, p999_ms, cpu_s.
 * An answer other than a 200 with "isValid":true counts as an error; a connection the
 * server closes, or an answer nobody asked for, ends the run (exit 1): no figure is
 * printed for a broken run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX 16384

typedef struct {
    int fd;
    int waiting; /* a request is out and its answer not yet whole */
    int64_t scheduled_ns;
    size_t len;
    char buf[ANSWER_MAX];
} conn_t;

/* The requests that came due while no connection was free, oldest first. */
typedef struct {
    int64_t *due_ns;
    size_t head, tail;
} backlog_t;

/* The connections free to send, in the order they became free. */
typedef struct {
    conn_t **slot;
    size_t head, count, cap;
} free_ring_t;

static char **requests;
static size_t *request_len;
static size_t request_count;

static _Noreturn void fail(const char *what) {
    fprintf(stderr, "loadgen: %s\n", what);
    exit(1);
}

static _Noreturn void fail_call(const char *call) {
    fprintf(stderr, "loadgen: %s: %s\n", call, strerror(errno));
    exit(1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift64: the key for each request; the choice needs to be cheap, not good. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static size_t random_key(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (size_t)(rng_state % request_count);
}

static void load_requests(const char *path, int port) {
    FILE *f = fopen(path, "r");
    if (!f)
        fail_call(path);
    size_t cap = 1024;
    requests = malloc(cap * sizeof *requests);
    request_len = malloc(cap * sizeof *request_len);
    char key[256], body[512], request[1024];
    while (fscanf(f, "%255s", key) == 1) {
        if (request_count == cap) {
            cap *= 2;
            requests = realloc(requests, cap * sizeof *requests);
            request_len = realloc(request_len, cap * sizeof *request_len);
        }
        int body_len = snprintf(body, sizeof body, "{\"apiKey\": \"%s\", \"units\": 1, \"consume\": true}", key);
        int len = snprintf(request, sizeof request,
                           "POST /v1/keys/validate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                           port, body_len, body);
        requests[request_count] = strndup(request, (size_t)len);
        request_len[request_count++] = (size_t)len;
    }
    fclose(f);
    if (!request_count)
        fail("the keys file holds no keys");
}

static void send_request(conn_t *c, int64_t scheduled_ns) {
    size_t k = random_key(), sent = 0;
    while (sent < request_len[k]) {
        ssize_t n = write(c->fd, requests[k] + sent, request_len[k] - sent);
        if (n < 0 && errno != EINTR)
            fail_call("write");
        if (n > 0)
            sent += (size_t)n;
    }
    c->waiting = 1;
    c->scheduled_ns = scheduled_ns;
}

/* If c->buf holds a whole answer: consume it, set *valid, return 1. Otherwise return 0. */
static int take_answer(conn_t *c, int *valid) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - c->buf) + 4, body_len = 0;
    for (char *line = memchr(c->buf, '\n', head_len); line && line < end; line = memchr(line, '\n', (size_t)(end - line))) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0)
            body_len = strtoul(line + 15, NULL, 10);
    }
    if (head_len + body_len > ANSWER_MAX)
        fail("an answer larger than the buffer");
    if (c->len < head_len + body_len)
        return 0;
    int status = c->len > 12 ? atoi(c->buf + 9) : 0; /* "HTTP/1.1 200 OK" */
    *valid = status == 200 && memmem(c->buf + head_len, body_len, "\"isValid\":true", 14) != NULL;
    c->len -= head_len + body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len);
    return 1;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The same definition as the benchmark's other percentiles: the value at index n*p. */
static double percentile_ms(const int64_t *sorted, size_t n, double p) {
    size_t i = (size_t)((double)n * p);
    return n ? (double)sorted[i < n ? i : n - 1] / 1e6 : 0.0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    int port = 0, connections = 64;
    double rate = 0, seconds = 10;
    const char *keys_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--keys-file"))
            keys_file = argv[i + 1];
        else if (!strcmp(argv[i], "--rate"))
            rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--connections"))
            connections = atoi(argv[i + 1]);
    }
    if (port <= 0 || !keys_file || rate <= 0 || seconds <= 0 || connections <= 0) {
        fprintf(stderr, "usage: %s --port P --keys-file F --rate R [--seconds S] [--connections C]\n", argv[0]);
        return 2;
    }
    load_requests(keys_file, port);

    size_t total = (size_t)(rate * seconds + 0.5), answered = 0, scheduled = 0;
    int64_t interval_ns = (int64_t)(1e9 / rate + 0.5);
    int64_t *latency_ns = malloc(total * sizeof *latency_ns);
    backlog_t backlog = {malloc(total * sizeof(int64_t)), 0, 0};
    free_ring_t idle = {malloc((size_t)connections * sizeof(conn_t *)), 0, 0, (size_t)connections};
    long errors = 0;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = calloc((size_t)connections, sizeof *conns);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < connections; i++) {
        conns[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (conns[i].fd < 0 || connect(conns[i].fd, (struct sockaddr *)&addr, sizeof addr) != 0)
            fail_call("connect");
        int on = 1;
        setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
            fail_call("epoll_ctl");
        idle.slot[idle.count++] = &conns[i];
    }

    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int64_t first_ns = now_ns() + interval_ns;
    struct itimerspec spec = {
        .it_interval = {interval_ns / 1000000000, interval_ns % 1000000000},
        .it_value = {first_ns / 1000000000, first_ns % 1000000000},
    };
    struct epoll_event timer_event = {.events = EPOLLIN, .data.ptr = NULL};
    if (timer < 0 || timerfd_settime(timer, TFD_TIMER_ABSTIME, &spec, NULL) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, timer, &timer_event) != 0)
        fail_call("timerfd");

    double cpu_before = cpu_seconds();
    int64_t started_ns = now_ns();
    struct epoll_event ready[128];
    while (answered < total) {
        int n = epoll_wait(ep, ready, 128, -1);
        if (n < 0 && errno != EINTR)
            fail_call("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn_t *c = ready[i].data.ptr;
            if (c == NULL) { /* the timer: send what came due, or queue it */
                uint64_t periods;
                if (read(timer, &periods, sizeof periods) != sizeof periods)
                    continue;
                for (; periods > 0 && scheduled < total; periods--) {
                    int64_t due_ns = first_ns + (int64_t)scheduled++ * interval_ns;
                    /* Connections are used in turn, so none idles into the server's keep-alive timeout. */
                    if (idle.count) {
                        conn_t *next = idle.slot[idle.head];
                        idle.head = (idle.head + 1) % idle.cap;
                        idle.count--;
                        send_request(next, due_ns);
                    } else {
                        backlog.due_ns[backlog.tail++] = due_ns;
                    }
                }
                if (scheduled == total)
                    epoll_ctl(ep, EPOLL_CTL_DEL, timer, NULL);
                continue;
            }
            if (c->len == ANSWER_MAX)
                fail("an answer larger than the buffer");
            ssize_t got = read(c->fd, c->buf + c->len, ANSWER_MAX - c->len);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got == 0)
                fail("the server closed a connection");
            if (got < 0)
                fail_call("read");
            c->len += (size_t)got;
            int valid;
            while (c->len && take_answer(c, &valid)) {
                if (!c->waiting)
                    fail("an answer to no request");
                latency_ns[answered++] = now_ns() - c->scheduled_ns;
                errors += !valid;
                c->waiting = 0;
                if (backlog.head < backlog.tail) {
                    send_request(c, backlog.due_ns[backlog.head++]);
                } else {
                    idle.slot[(idle.head + idle.count) % idle.cap] = c;
                    idle.count++;
                }
            }
        }
    }
    double elapsed = (double)(now_ns() - started_ns) / 1e9, cpu = cpu_seconds() - cpu_before;
    qsort(latency_ns, answered, sizeof *latency_ns, by_value);
    printf("{\"requests\": %zu, \"seconds\": %.6f, \"rate\": %.3f, \"errors\": %ld, \"p50_ms\": %.4f, "
           "\"p99_ms\": %.4f, \"p999_ms\": %.4f, \"cpu_s\": %.3f}\n",
           answered, elapsed, (double)answered / elapsed, errors, percentile_ms(latency_ns, answered, 0.5),
           percentile_ms(latency_ns, answered, 0.99), percentile_ms(latency_ns, answered, 0.999), cpu);
    return 0;
}
