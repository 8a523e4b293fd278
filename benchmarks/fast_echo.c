/*
 * fast_echo: a fast stand-in for checktcp-echo, for the benchmarks only.
 *
 * Speaks the echo protocol the checktcp probe expects (one header line, then
 * every byte received is echoed back), on one epoll thread, and counts the
 * connections it accepts, so the benchmark can tell how many probes reached
 * the echo server per second.
 *
 * A second, control port takes one command line per connection and answers
 * one line, so the benchmark changes the server's state at a known instant:
 *
 *   count   -> "<accepted> <mode>"   connections accepted so far
 *   up      -> "ok <accepted>"       listen and echo (restart after dead/hang)
 *   dead    -> "ok <accepted>"       close the listener and every connection:
 *                                     new probes are refused, as after a crash
 *   hang    -> "ok <accepted>"       keep listening and accepting, but never
 *                                     write or read: a hung server
 *
 * Usage: fast_echo ECHO_ADDR ECHO_PORT CONTROL_ADDR CONTROL_PORT
 * GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_FDS 65536
enum kind { FREE = 0, ECHO_CONN, HUNG_CONN };
enum mode { UP, DEAD, HANG };
static const char *mode_names[] = { "up", "dead", "hang" };

static unsigned char kinds[MAX_FDS];
static int epfd, echo_fd = -1, ctl_fd = -1;
static struct sockaddr_in echo_addr;
static unsigned long long accepted;
static enum mode mode = UP;

static int listen_on(struct sockaddr_in *addr)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)addr, sizeof *addr) < 0 || listen(fd, 4096) < 0) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return fd;
}

static void drop(int fd)
{
    kinds[fd] = FREE;
    close(fd); /* also removes it from the epoll set */
}

static void close_all(enum kind which)
{
    for (int fd = 0; fd < MAX_FDS; fd++)
        if (kinds[fd] == which)
            drop(fd);
}

static void set_mode(enum mode next)
{
    if (next == mode)
        return;
    if (mode == DEAD) {            /* come back: listen again */
        echo_fd = listen_on(&echo_addr);
        if (echo_fd < 0) {
            perror("fast_echo: listen");
            exit(1);
        }
    }
    if (mode == HANG)              /* the hung process is gone */
        close_all(HUNG_CONN);
    if (next == DEAD) {            /* a crash: listener and connections gone */
        close(echo_fd);
        echo_fd = -1;
        close_all(ECHO_CONN);
        close_all(HUNG_CONN);
    }
    mode = next;
}

static void on_accept(void)
{
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept4(echo_fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        accepted++;
        if (mode == HANG) {
            /* Watched only for the peer closing, never read or answered. */
            struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLET, .data.fd = fd };
            kinds[fd] = HUNG_CONN;
            epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
            continue;
        }
        char header[128], client[INET_ADDRSTRLEN], server[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, client, sizeof client);
        inet_ntop(AF_INET, &echo_addr.sin_addr, server, sizeof server);
        int n = snprintf(header, sizeof header, "ECHO client=%s:%d server=%s:%d\n",
                         client, ntohs(peer.sin_port), server, ntohs(echo_addr.sin_port));
        if (write(fd, header, n) != n) {
            close(fd);
            continue;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        kinds[fd] = ECHO_CONN;
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void on_echo(int fd, unsigned events)
{
    char buf[4096];
    if (kinds[fd] == HUNG_CONN) {
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            drop(fd);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        /* Probe lines are a few bytes: a short write only drops the excess. */
        if (write(fd, buf, n) < 0 && errno != EAGAIN)
            drop(fd);
        return;
    }
    if (n == 0 || errno != EAGAIN)
        drop(fd);
}

static void on_control(void)
{
    int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char cmd[64] = "", reply[96];
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    if (n > 0) {
        cmd[n] = 0;
        cmd[strcspn(cmd, "\r\n")] = 0;
    }
    if (strcmp(cmd, "up") == 0 || strcmp(cmd, "dead") == 0 || strcmp(cmd, "hang") == 0) {
        set_mode(cmd[0] == 'u' ? UP : cmd[0] == 'd' ? DEAD : HANG);
        n = snprintf(reply, sizeof reply, "ok %llu\n", accepted);
    } else if (strcmp(cmd, "count") == 0) {
        n = snprintf(reply, sizeof reply, "%llu %s\n", accepted, mode_names[mode]);
    } else {
        n = snprintf(reply, sizeof reply, "error unknown command\n");
    }
    if (write(fd, reply, n) < 0)
        perror("fast_echo: control reply");
    close(fd);
}

static int parse_addr(struct sockaddr_in *addr, const char *host, const char *port)
{
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(atoi(port));
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in ctl_addr;
    if (argc != 5 || parse_addr(&echo_addr, argv[1], argv[2]) || parse_addr(&ctl_addr, argv[3], argv[4])) {
        fprintf(stderr, "usage: %s ECHO_ADDR ECHO_PORT CONTROL_ADDR CONTROL_PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    echo_fd = listen_on(&echo_addr);
    ctl_fd = listen_on(&ctl_addr);
    if (echo_fd < 0 || ctl_fd < 0) {
        perror("fast_echo: listen");
        return 1;
    }
    fprintf(stderr, "fast_echo: echo on %s:%s, control on %s:%s\n", argv[1], argv[2], argv[3], argv[4]);

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ctl_fd)
                on_control();
            else if (fd == echo_fd)
                on_accept();
            else if (kinds[fd] != FREE)
                on_echo(fd, events[i].events);
        }
    }
}
