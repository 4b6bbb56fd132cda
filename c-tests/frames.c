/*
 * frames: drive real Ethernet frames through the TAPs that vnet_setup hands
 * out, the way a VM would, and check the pod network answers.
 *
 *   frames NETNS_PATH HOST_NETNS_PATH [--config JSON | --config-null]
 *          [--big BYTES] [--expect TEXT]... --iface IP4,GW4,MAC[,IP6,GW6]...
 *
 * Per interface (in order): ARP for the gateway -> ARP reply; ICMP echo to
 * the gateway -> echo reply (and a BYTES-long one with --big); with IPv6,
 * neighbour solicitation -> advertisement and ICMPv6 echo -> reply; then the
 * reverse way: a UDP datagram sent from the host namespace to the pod IP(s)
 * arrives on the TAP. While waiting, it answers ARP / NS for its own
 * addresses like a guest would. One line per check; exit 0 iff all passed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "vnet.h"

#define MAX_IFACES 8
#define MAX_FRAME 65536
#define WAIT_MS 3000

#define ETH_ARP 0x0806
#define ETH_IP4 0x0800
#define ETH_IP6 0x86dd

struct iface {
    uint8_t mac[6];
    char mac_s[18];
    struct in_addr ip, gw;
    int has6;
    struct in6_addr ip6, gw6;
    int fd;
};

static struct iface ifs[MAX_IFACES];
static int nifs;

/* ---- byte helpers ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Ones' complement sum, folded; `sum` carries a pseudo-header. */
static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
    for (; n > 1; p += 2, n -= 2)
        sum += get16(p);
    if (n)
        sum += (uint32_t)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint32_t pseudo6(const struct in6_addr *src, const struct in6_addr *dst,
                        uint32_t len, uint8_t next)
{
    uint32_t sum = 0;
    for (int i = 0; i < 16; i += 2) {
        sum += get16(src->s6_addr + i);
        sum += get16(dst->s6_addr + i);
    }
    return sum + (len >> 16) + (len & 0xffff) + next;
}

static size_t eth(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    put16(f + 12, type);
    return 14;
}

static int send_frame(int fd, const uint8_t *f, size_t n)
{
    ssize_t w = write(fd, f, n);
    if (w != (ssize_t)n) {
        note("write of %zu bytes: %zd (%s)", n, w, strerror(errno));
        return -1;
    }
    return 0;
}

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* ---- frames we build ---- */

static size_t arp(uint8_t *f, const struct iface *x, uint16_t op, const uint8_t *dmac,
                  const uint8_t *tha, struct in_addr tpa)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[6] = {0};
    size_t n = eth(f, dmac ? dmac : bcast, x->mac, ETH_ARP);
    uint8_t *a = f + n;
    put16(a, 1);
    put16(a + 2, ETH_IP4);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, x->mac, 6);
    memcpy(a + 14, &x->ip, 4);
    memcpy(a + 18, tha ? tha : zero, 6);
    memcpy(a + 24, &tpa, 4);
    return n + 28;
}

/* An IPv4 ICMP echo request of `total` IP bytes (at least 28). */
static size_t echo4(uint8_t *f, const struct iface *x, const uint8_t *gwmac, size_t total,
                    uint16_t id, uint16_t seq)
{
    size_t n = eth(f, gwmac, x->mac, ETH_IP4);
    uint8_t *ip = f + n, *ic = ip + 20;
    memset(ip, 0, total);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)total);
    put16(ip + 4, seq);
    put16(ip + 6, 0x4000); /* DF: a jumbo echo must fit the MTU, not fragment */
    ip[8] = 64;
    ip[9] = 1;
    memcpy(ip + 12, &x->ip, 4);
    memcpy(ip + 16, &x->gw, 4);
    put16(ip + 10, csum(ip, 20, 0));
    ic[0] = 8;
    put16(ic + 4, id);
    put16(ic + 6, seq);
    for (size_t i = 8; i < total - 20; i++)
        ic[i] = (uint8_t)(i * 7 + seq);
    put16(ic + 2, csum(ic, total - 20, 0));
    return n + total;
}

static void mcast6(const struct in6_addr *target, struct in6_addr *group, uint8_t mac[6])
{
    static const uint8_t pre[13] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
    memcpy(group->s6_addr, pre, 13);
    memcpy(group->s6_addr + 13, target->s6_addr + 13, 3);
    mac[0] = mac[1] = 0x33;
    memcpy(mac + 2, group->s6_addr + 12, 4);
}

/* An IPv6 header + ICMPv6 body of `len` bytes already at f+54; fills both. */
static size_t icmp6(uint8_t *f, const struct iface *x, const uint8_t *dmac,
                    const struct in6_addr *dst, size_t len, uint8_t hops)
{
    size_t n = eth(f, dmac, x->mac, ETH_IP6);
    uint8_t *ip = f + n, *ic = ip + 40;
    memset(ip, 0, 40);
    ip[0] = 0x60;
    put16(ip + 4, (uint16_t)len);
    ip[6] = 58;
    ip[7] = hops;
    memcpy(ip + 8, &x->ip6, 16);
    memcpy(ip + 24, dst, 16);
    put16(ic + 2, 0);
    put16(ic + 2, csum(ic, len, pseudo6(&x->ip6, dst, (uint32_t)len, 58)));
    return n + 40 + len;
}

static size_t ns6(uint8_t *f, const struct iface *x, const struct in6_addr *target)
{
    struct in6_addr group;
    uint8_t gmac[6];
    uint8_t *ic = f + 54;
    mcast6(target, &group, gmac);
    memset(ic, 0, 32);
    ic[0] = 135;
    memcpy(ic + 8, target, 16);
    ic[24] = 1; /* source link-layer address */
    ic[25] = 1;
    memcpy(ic + 26, x->mac, 6);
    return icmp6(f, x, gmac, &group, 32, 255);
}

static size_t na6(uint8_t *f, const struct iface *x, const uint8_t *dmac,
                  const struct in6_addr *dst)
{
    uint8_t *ic = f + 54;
    memset(ic, 0, 32);
    ic[0] = 136;
    ic[4] = 0x60; /* solicited, override */
    memcpy(ic + 8, &x->ip6, 16);
    ic[24] = 2; /* target link-layer address */
    ic[25] = 1;
    memcpy(ic + 26, x->mac, 6);
    return icmp6(f, x, dmac, dst, 32, 255);
}

static size_t echo6(uint8_t *f, const struct iface *x, const uint8_t *gwmac, uint16_t id,
                    uint16_t seq)
{
    uint8_t *ic = f + 54;
    size_t len = 8 + 56;
    memset(ic, 0, len);
    ic[0] = 128;
    put16(ic + 4, id);
    put16(ic + 6, seq);
    for (size_t i = 8; i < len; i++)
        ic[i] = (uint8_t)(i + seq);
    return icmp6(f, x, gwmac, &x->gw6, len, 64);
}

/* ---- frames we receive ---- */

/* Is `f` (n bytes) a valid IPv6 ICMPv6 message of `type` from `src`? */
static const uint8_t *is_icmp6(const uint8_t *f, size_t n, const struct in6_addr *src,
                               uint8_t type)
{
    if (n < 54 + 8 || get16(f + 12) != ETH_IP6 || f[20] != 58)
        return NULL;
    size_t len = get16(f + 18);
    if (54 + len > n || (src && memcmp(f + 22, src, 16)) || f[54] != type)
        return NULL;
    struct in6_addr s, d;
    memcpy(&s, f + 22, 16);
    memcpy(&d, f + 38, 16);
    if (csum(f + 54, len, pseudo6(&s, &d, (uint32_t)len, 58)) != 0)
        return NULL;
    return f + 54;
}

/* Behave like a guest: answer ARP and NS for our own addresses. */
static void answer(const struct iface *x, const uint8_t *f, size_t n)
{
    uint8_t out[128];
    if (n >= 42 && get16(f + 12) == ETH_ARP && get16(f + 20) == 1 &&
        !memcmp(f + 38, &x->ip, 4)) {
        struct in_addr spa;
        memcpy(&spa, f + 28, 4);
        send_frame(x->fd, out, arp(out, x, 2, f + 6, f + 22, spa));
        return;
    }
    const uint8_t *ic;
    if (x->has6 && (ic = is_icmp6(f, n, NULL, 135)) && !memcmp(ic + 8, &x->ip6, 16)) {
        struct in6_addr src;
        memcpy(&src, f + 22, 16);
        send_frame(x->fd, out, na6(out, x, f + 6, &src));
    }
}

typedef int (*matcher)(const struct iface *x, const uint8_t *f, size_t n, void *ctx);

/* Read frames until `m` accepts one (copied to `out`) or WAIT_MS pass;
 * returns its length, or 0 on timeout. */
static size_t wait_for(const struct iface *x, matcher m, void *ctx, uint8_t *out)
{
    long end = now_ms() + WAIT_MS;
    for (;;) {
        long left = end - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = x->fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t n = read(x->fd, out, MAX_FRAME);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            note("read: %s", strerror(errno));
            return 0;
        }
        if (m(x, out, (size_t)n, ctx))
            return (size_t)n;
        answer(x, out, (size_t)n);
    }
}

static int m_arp_reply(const struct iface *x, const uint8_t *f, size_t n, void *ctx)
{
    (void)ctx;
    return n >= 42 && get16(f + 12) == ETH_ARP && get16(f + 20) == 2 &&
           !memcmp(f + 28, &x->gw, 4) && !memcmp(f + 32, x->mac, 6) &&
           !memcmp(f + 38, &x->ip, 4) && !memcmp(f, x->mac, 6);
}

struct echo_ctx {
    const uint8_t *req; /* the request's IP packet */
    size_t len;
};

static int m_echo4(const struct iface *x, const uint8_t *f, size_t n, void *ctx)
{
    const struct echo_ctx *e = ctx;
    const uint8_t *ip = f + 14;
    if (n < 14 + e->len || get16(f + 12) != ETH_IP4 || ip[9] != 1 ||
        get16(ip + 2) != e->len || memcmp(ip + 12, &x->gw, 4) || memcmp(ip + 16, &x->ip, 4))
        return 0;
    size_t hl = (size_t)(ip[0] & 15) * 4;
    const uint8_t *ic = ip + hl;
    return hl == 20 && csum(ip, 20, 0) == 0 && ic[0] == 0 && csum(ic, e->len - 20, 0) == 0 &&
           !memcmp(ic + 4, e->req + 24, e->len - 24) && !memcmp(f, x->mac, 6);
}

static int m_na(const struct iface *x, const uint8_t *f, size_t n, void *ctx)
{
    (void)ctx;
    const uint8_t *ic = is_icmp6(f, n, &x->gw6, 136);
    return ic && !memcmp(ic + 8, &x->gw6, 16) && !memcmp(f, x->mac, 6);
}

static int m_echo6(const struct iface *x, const uint8_t *f, size_t n, void *ctx)
{
    const struct echo_ctx *e = ctx;
    const uint8_t *ic = is_icmp6(f, n, &x->gw6, 129);
    return ic && get16(f + 18) == e->len && !memcmp(ic + 4, e->req + 4, e->len - 4) &&
           !memcmp(f + 38, &x->ip6, 16);
}

struct udp_ctx {
    int v6;
    uint16_t port;
    const char *payload;
};

static int m_udp(const struct iface *x, const uint8_t *f, size_t n, void *ctx)
{
    const struct udp_ctx *u = ctx;
    size_t plen = strlen(u->payload);
    const uint8_t *udp;
    if (!u->v6) {
        if (n < 42 || get16(f + 12) != ETH_IP4 || f[23] != 17 || memcmp(f + 30, &x->ip, 4))
            return 0;
        udp = f + 14 + (size_t)(f[14] & 15) * 4;
    } else {
        if (n < 62 || get16(f + 12) != ETH_IP6 || f[20] != 17 || memcmp(f + 38, &x->ip6, 16))
            return 0;
        udp = f + 54;
    }
    return udp + 8 + plen <= f + n && get16(udp + 2) == u->port && get16(udp + 4) == 8 + plen &&
           !memcmp(udp + 8, u->payload, plen) && !memcmp(f, x->mac, 6);
}

/* ---- the host side: sockets opened in HOST_NETNS_PATH by a helper thread,
 * so this (main) thread never changes namespace. ---- */

struct host_socks {
    const char *path;
    int s4, s6, err;
};

static void *open_host_socks(void *arg)
{
    struct host_socks *h = arg;
    int ns = open(h->path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
        h->err = errno;
        if (ns >= 0)
            close(ns);
        return NULL;
    }
    close(ns);
    h->s4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    h->s6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return NULL;
}

/* ---- per-interface checks ---- */

static void arp_and_ping(struct iface *x, int i, size_t big, uint8_t *buf, uint8_t *out)
{
    char gw[INET_ADDRSTRLEN];
    uint8_t gwmac[6];
    inet_ntop(AF_INET, &x->gw, gw, sizeof gw);

    size_t n = arp(buf, x, 1, NULL, NULL, x->gw);
    if (!check(send_frame(x->fd, buf, n) == 0 && wait_for(x, m_arp_reply, NULL, out),
               "if%d: ARP who-has %s answered on the TAP", i, gw))
        return;
    memcpy(gwmac, out + 22, 6);

    size_t sizes[2] = {84, big};
    for (int k = 0; k < 2 && sizes[k]; k++) {
        uint16_t seq = (uint16_t)(k + 1);
        n = echo4(buf, x, gwmac, sizes[k], (uint16_t)(0x7600 + i), seq);
        struct echo_ctx e = {buf + 14, sizes[k]};
        check(send_frame(x->fd, buf, n) == 0 && wait_for(x, m_echo4, &e, out),
              "if%d: ICMP echo to %s (%zu IP bytes) answered", i, gw, sizes[k]);
    }
}

static void ipv6_checks(struct iface *x, int i, uint8_t *buf, uint8_t *out)
{
    char gw[INET6_ADDRSTRLEN];
    uint8_t gwmac[6];
    inet_ntop(AF_INET6, &x->gw6, gw, sizeof gw);

    size_t n = ns6(buf, x, &x->gw6);
    if (!check(send_frame(x->fd, buf, n) == 0 && wait_for(x, m_na, NULL, out),
               "if%d: neighbour solicitation for %s advertised", i, gw))
        return;
    memcpy(gwmac, out + 6, 6);
    n = echo6(buf, x, gwmac, (uint16_t)(0x7660 + i), 1);
    struct echo_ctx e = {buf + 54, 64};
    check(send_frame(x->fd, buf, n) == 0 && wait_for(x, m_echo6, &e, out),
          "if%d: ICMPv6 echo to %s answered", i, gw);
}

static void from_host(struct iface *x, int i, const struct host_socks *h, uint8_t *out)
{
    char payload[64], ip[INET6_ADDRSTRLEN];
    for (int v6 = 0; v6 <= x->has6; v6++) {
        uint16_t port = (uint16_t)(40000 + i * 2 + v6);
        snprintf(payload, sizeof payload, "vnet-frames-if%d-v%d", i, v6 ? 6 : 4);
        ssize_t w;
        if (!v6) {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
            a.sin_addr = x->ip;
            inet_ntop(AF_INET, &x->ip, ip, sizeof ip);
            w = sendto(h->s4, payload, strlen(payload), 0, (struct sockaddr *)&a, sizeof a);
        } else {
            struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
            a.sin6_addr = x->ip6;
            inet_ntop(AF_INET6, &x->ip6, ip, sizeof ip);
            w = sendto(h->s6, payload, strlen(payload), 0, (struct sockaddr *)&a, sizeof a);
        }
        if (w < 0)
            note("sendto %s: %s", ip, strerror(errno));
        struct udp_ctx u = {v6, port, payload};
        check(w >= 0 && wait_for(x, m_udp, &u, out),
              "if%d: UDP from the host namespace to %s arrives on the TAP", i, ip);
    }
}

static int parse_iface(char *spec, struct iface *x)
{
    char *f[5];
    int n = 0;
    for (char *s = strtok(spec, ","); s && n < 5; s = strtok(NULL, ","))
        f[n++] = s;
    if (n != 3 && n != 5)
        return -1;
    if (inet_pton(AF_INET, f[0], &x->ip) != 1 || inet_pton(AF_INET, f[1], &x->gw) != 1 ||
        parse_mac(f[2], x->mac))
        return -1;
    snprintf(x->mac_s, sizeof x->mac_s, "%s", f[2]);
    x->has6 = n == 5;
    if (x->has6 && (inet_pton(AF_INET6, f[3], &x->ip6) != 1 ||
                    inet_pton(AF_INET6, f[4], &x->gw6) != 1))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = "{\"dhcp\": false}";
    const char *expect[16];
    int nexpect = 0;
    size_t big = 0;
    if (argc < 3)
        die("usage: frames NETNS_PATH HOST_NETNS_PATH [options] --iface IP4,GW4,MAC[,IP6,GW6]...");
    for (int a = 3; a < argc; a++) {
        if (!strcmp(argv[a], "--config-null"))
            config = NULL;
        else if (a + 1 >= argc)
            die("option without value");
        else if (!strcmp(argv[a], "--config"))
            config = argv[++a];
        else if (!strcmp(argv[a], "--big"))
            big = (size_t)atol(argv[++a]);
        else if (!strcmp(argv[a], "--expect") && nexpect < 16)
            expect[nexpect++] = argv[++a];
        else if (!strcmp(argv[a], "--iface") && nifs < MAX_IFACES) {
            if (parse_iface(argv[++a], &ifs[nifs++]))
                die("bad --iface");
        } else
            die("unknown option");
    }
    if (nifs == 0 || (big && (big < 28 || big > 9000)))
        die("need --iface; --big must be 28..9000");

    uint8_t *buf = malloc(MAX_FRAME), *out = malloc(MAX_FRAME);
    if (!buf || !out)
        die("malloc");

    vnet_handle *h = NULL;
    char *err = NULL;
    vnet_status st = vnet_setup(argv[1], config, &h, &err);
    if (!check(st == VNET_OK && h, "vnet_setup(%s): %s%s%s", argv[1], vnet_status_str(st),
               err ? ": " : "", err ? err : "")) {
        vnet_string_free(err);
        free(buf);
        free(out);
        return 1;
    }
    check(vnet_interface_count(h) == (uint32_t)nifs, "vnet_interface_count = %d", nifs);

    char *json = NULL;
    st = vnet_result_json(h, &json, &err);
    if (check(st == VNET_OK && json, "vnet_result_json: %s", vnet_status_str(st))) {
        char want[64];
        for (int i = 0; i < nifs; i++) {
            snprintf(want, sizeof want, "\"vm_mac\":\"%s\"", ifs[i].mac_s);
            check(strstr(json, want) != NULL, "result JSON has %s", want);
            snprintf(want, sizeof want, "\"tap\":\"tap%d\"", i);
            check(strstr(json, want) != NULL, "result JSON has %s", want);
            check(strstr(json, "\"veth_mac\":\"") != NULL, "result JSON has veth_mac");
        }
        for (int k = 0; k < nexpect; k++)
            check(strstr(json, expect[k]) != NULL, "result JSON has %s", expect[k]);
    }
    vnet_string_free(json);
    vnet_string_free(err);
    err = NULL;

    int fds_ok = 1;
    for (int i = 0; i < nifs; i++) {
        ifs[i].fd = vnet_tap_fd(h, (uint32_t)i, 0);
        int fl = ifs[i].fd >= 0 ? fcntl(ifs[i].fd, F_GETFD) : -1;
        fds_ok &= check(ifs[i].fd >= 0 && fl >= 0 && (fl & FD_CLOEXEC),
                        "vnet_tap_fd(%d, 0) = %d, valid and close-on-exec", i, ifs[i].fd);
        check(vnet_tap_fd(h, (uint32_t)i, 1) == -1, "vnet_tap_fd(%d, 1) = -1 (one queue)", i);
    }
    check(vnet_tap_fd(h, (uint32_t)nifs, 0) == -1, "vnet_tap_fd(%d, 0) = -1", nifs);

    struct host_socks hs = {argv[2], -1, -1, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, open_host_socks, &hs) == 0)
        pthread_join(t, NULL);
    check(hs.s4 >= 0 && hs.s6 >= 0, "sockets in the host namespace %s (%s)", argv[2],
          hs.err ? strerror(hs.err) : "ok");

    if (fds_ok) {
        for (int i = 0; i < nifs; i++) {
            arp_and_ping(&ifs[i], i, i == 0 ? big : 0, buf, out);
            if (ifs[i].has6)
                ipv6_checks(&ifs[i], i, buf, out);
            if (hs.s4 >= 0 && hs.s6 >= 0)
                from_host(&ifs[i], i, &hs, out);
        }
    }
    if (hs.s4 >= 0)
        close(hs.s4);
    if (hs.s6 >= 0)
        close(hs.s6);

    st = vnet_teardown(h, &err);
    check(st == VNET_OK, "vnet_teardown: %s%s%s", vnet_status_str(st), err ? ": " : "",
          err ? err : "");
    vnet_string_free(err);
    check(vnet_tap_fd(h, 0, 0) == -1, "vnet_tap_fd after teardown = -1");
    vnet_free(h);
    free(buf);
    free(out);

    printf("frames: %u checks, %u failed\n", checks_run, checks_failed);
    return checks_failed ? 1 : 0;
}
