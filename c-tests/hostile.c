/*
 * hostile: walk wrong and hostile inputs through every function of the C
 * ABI; each must give its own expected vnet_status with a message, hand out
 * no handle, and (checked by the harness with before/after dumps) leave all
 * namespaces untouched.
 *
 *   hostile --good P --other P --noveth P --twoveth P --noaddr P --version V
 *
 * good, other: classic pods (eth0 10.1.90.5/24); noveth: only lo; twoveth:
 * two addressed veths; noaddr: one veth without an address. Ends with
 * "hostile: N inputs checked" and exits 0 iff every check passed.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdint.h>

#include "common.h"
#include "vnet.h"

static unsigned inputs;
static char sentinel_obj;
#define SENTINEL_H ((vnet_handle *)(void *)&sentinel_obj)
#define SENTINEL_S (&sentinel_obj)

static const char *good, *other, *noveth, *twoveth, *noaddr, *version;

/* The log sink: counts lines, and lines that break the documented contract.
 * It may run on vnet's threads, hence the atomic adds. */
static unsigned log_lines, log_bad;

static void sink(vnet_log_level level, const char *message, void *userdata)
{
    int bad = !message || !message[0] || userdata != (void *)&log_lines ||
              level < VNET_LOG_ERROR || level > VNET_LOG_DEBUG;
    __sync_fetch_and_add(&log_lines, 1);
    if (bad)
        __sync_fetch_and_add(&log_bad, 1);
}

/* Check a failed call: its status, its message, and free the message. */
static int judge(const char *what, vnet_status st, vnet_status want, char *err, int want_msg)
{
    int msg_ok = !want_msg || (err && err != SENTINEL_S && err[0]);
    int ok = check(st == want && msg_ok, "%s -> %s (want %s)%s%s", what, vnet_status_str(st),
                   vnet_status_str(want), msg_ok ? ": " : " [no error message]",
                   msg_ok && err ? err : "");
    if (err != SENTINEL_S)
        vnet_string_free(err);
    return ok;
}

/* vnet_setup(path, json) must fail with `want` and hand out no handle. */
static void setup_fails(const char *what, const char *path, const char *json, vnet_status want)
{
    vnet_handle *h = SENTINEL_H;
    char *err = SENTINEL_S;
    inputs++;
    vnet_status st = vnet_setup(path, json, &h, &err);
    judge(what, st, want, err, 1);
    check(h == NULL, "  %s: *handle_out is NULL", what);
    if (st == VNET_OK && h && h != SENTINEL_H) {
        /* Unexpected success: put the namespace back before going on. */
        vnet_teardown(h, NULL);
        vnet_free(h);
    }
}

static void recover_fails(const char *what, const char *path, const char *json,
                          vnet_status want)
{
    vnet_handle *h = SENTINEL_H;
    char *err = SENTINEL_S;
    inputs++;
    vnet_status st = vnet_recover(path, json, &h, &err);
    judge(what, st, want, err, 1);
    check(h == NULL, "  %s: *handle_out is NULL", what);
    if (st == VNET_OK && h && h != SENTINEL_H)
        vnet_free(h); /* never tear down a namespace this was not meant for */
}

static vnet_handle *setup_ok(const char *path, const char *json)
{
    vnet_handle *h = NULL;
    char *err = NULL;
    vnet_status st = vnet_setup(path, json, &h, &err);
    check(st == VNET_OK && h, "vnet_setup(%s) -> %s%s%s", path, vnet_status_str(st),
          err ? ": " : "", err ? err : "");
    vnet_string_free(err);
    return h;
}

static char *result_of(vnet_handle *h)
{
    char *json = NULL, *err = NULL;
    vnet_status st = vnet_result_json(h, &json, &err);
    check(st == VNET_OK && json, "vnet_result_json -> %s", vnet_status_str(st));
    vnet_string_free(err);
    return json;
}

/* `s` with the first `from` replaced by `to` (malloc'ed). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    if (!at)
        die("replace: pattern not found");
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    if (!out)
        die("malloc");
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

/* The unsigned number after `"key":` in `json`, as text ("" if absent). */
static void json_number(const char *json, const char *key, char out[32])
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    size_t n = at ? strspn(at + strlen(pat), "0123456789") : 0;
    if (n >= 32)
        n = 0;
    memcpy(out, at ? at + strlen(pat) : "", n);
    out[n] = 0;
}

/* `from`'s JSON with its tap and bridge ifindexes replaced by those of
 * `like`: the state of one pod made to match the devices of another. */
static char *with_indexes_of(const char *from, const char *like)
{
    static const char *keys[] = {"tap_ifindex", "bridge_ifindex"};
    char *out = replace(from, "", "");
    for (int k = 0; k < 2; k++) {
        char a[32], b[32], pa[64], pb[64];
        json_number(from, keys[k], a);
        json_number(like, keys[k], b);
        if (!a[0] || !b[0])
            die("no ifindex in the result JSON");
        snprintf(pa, sizeof pa, "\"%s\":%s,", keys[k], a);
        snprintf(pb, sizeof pb, "\"%s\":%s,", keys[k], b);
        char *next = replace(out, pa, pb);
        free(out);
        out = next;
    }
    return out;
}

/* `{"hostname": "aaa..."}` of `size` bytes (over every limit). */
static char *huge_json(size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        die("malloc");
    memset(s, 'a', size);
    memcpy(s, "{\"hostname\": \"", 14);
    memcpy(s + size - 2, "\"}", 2);
    s[size] = 0;
    return s;
}

/* `depth` nested arrays: must not overflow the parser's stack. */
static char *deep_json(size_t depth, const char *prefix)
{
    size_t p = strlen(prefix), n = p + 2 * depth + 2;
    char *s = malloc(n);
    if (!s)
        die("malloc");
    memcpy(s, prefix, p);
    memset(s + p, '[', depth);
    memset(s + p + depth, ']', depth);
    strcpy(s + p + 2 * depth, *prefix ? "}" : "");
    return s;
}

static void static_functions(void)
{
    const char *seen[VNET_ERR_UNSUPPORTED + 1];
    int all = 1;
    for (int s = VNET_OK; s <= VNET_ERR_UNSUPPORTED; s++) {
        inputs++;
        seen[s] = vnet_status_str((vnet_status)s);
        int ok = seen[s] && seen[s][0];
        for (int t = 0; ok && t < s; t++)
            ok = strcmp(seen[t], seen[s]) != 0;
        all &= ok;
    }
    check(all, "vnet_status_str: %d statuses, each a distinct non-empty name",
          VNET_ERR_UNSUPPORTED + 1);
    int unknown = 1;
    const int bad[] = {-1, VNET_ERR_UNSUPPORTED + 1, 1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        inputs++;
        const char *name = vnet_status_str(bad[i]);
        unknown &= name && strcmp(name, "unknown status") == 0;
    }
    for (int s = VNET_OK; s <= VNET_ERR_UNSUPPORTED; s++)
        unknown &= strcmp(seen[s], "unknown status") != 0;
    check(unknown, "vnet_status_str: values outside the enum are \"unknown status\"");
    inputs++;
    const char *v = vnet_version();
    check(v && !strcmp(v, version), "vnet_version() = \"%s\" (want %s)", v ? v : "(null)",
          version);
}

static void null_handle(void)
{
    char *json = SENTINEL_S, *err = SENTINEL_S;
    inputs += 8;
    check(vnet_interface_count(NULL) == 0, "vnet_interface_count(NULL) = 0");
    check(vnet_tap_fd(NULL, 0, 0) == -1, "vnet_tap_fd(NULL, 0, 0) = -1");
    vnet_status st = vnet_result_json(NULL, &json, &err);
    judge("vnet_result_json(NULL handle)", st, VNET_ERR_INVALID_ARGUMENT, err, 1);
    check(json == NULL, "  vnet_result_json(NULL handle): *json_out is NULL");
    st = vnet_result_json(NULL, NULL, NULL);
    judge("vnet_result_json(NULL, NULL, NULL)", st, VNET_ERR_INVALID_ARGUMENT, NULL, 0);
    err = SENTINEL_S;
    st = vnet_teardown(NULL, &err);
    judge("vnet_teardown(NULL handle)", st, VNET_ERR_INVALID_ARGUMENT, err, 1);
    st = vnet_teardown(NULL, NULL);
    judge("vnet_teardown(NULL, NULL)", st, VNET_ERR_INVALID_ARGUMENT, NULL, 0);
    vnet_free(NULL);
    vnet_string_free(NULL);
    check(1, "vnet_free(NULL), vnet_string_free(NULL) are no-ops");
}

static void setup_table(void)
{
    char buf[1024];
    const vnet_status INV = VNET_ERR_INVALID_ARGUMENT, NS = VNET_ERR_NETNS,
                      CFG = VNET_ERR_CONFIG;

    /* NULL pointers. */
    setup_fails("setup: netns_path NULL", NULL, NULL, INV);
    inputs++;
    vnet_status st = vnet_setup(good, NULL, NULL, NULL);
    judge("setup: handle_out NULL, error_out NULL", st, INV, NULL, 0);
    inputs++;
    char *err = SENTINEL_S;
    st = vnet_setup(good, "{\"dhcp\": false}", NULL, &err);
    judge("setup: handle_out NULL", st, INV, err, 1);
    inputs++;
    vnet_handle *h = SENTINEL_H;
    st = vnet_setup("", NULL, &h, NULL);
    judge("setup: empty path, error_out NULL", st, INV, NULL, 0);
    check(h == NULL, "  setup with error_out NULL: *handle_out is NULL");

    /* Paths. */
    setup_fails("setup: empty path", "", NULL, INV);
    setup_fails("setup: relative path", "var/run/netns/x", NULL, INV);
    setup_fails("setup: path \".\"", ".", NULL, INV);
    setup_fails("setup: missing path", "/var/run/netns/vnet-hostile-missing", NULL, NS);
    setup_fails("setup: regular file", "/etc/passwd", NULL, NS);
    setup_fails("setup: directory", "/var/run/netns", NULL, NS);
    setup_fails("setup: /dev/null", "/dev/null", NULL, NS);
    setup_fails("setup: mount namespace", "/proc/self/ns/mnt", NULL, NS);
    setup_fails("setup: uts namespace", "/proc/self/ns/uts", NULL, NS);
    setup_fails("setup: user namespace", "/proc/self/ns/user", NULL, NS);
    snprintf(buf, sizeof buf, "%s/", good);
    setup_fails("setup: netns path with trailing slash", buf, NULL, NS);
    char *longpath = malloc(8192);
    if (!longpath)
        die("malloc");
    memset(longpath, 'x', 8191);
    longpath[0] = '/';
    longpath[8191] = 0;
    setup_fails("setup: 8 KiB path", longpath, NULL, NS);
    free(longpath);
    setup_fails("setup: non-UTF-8 path", "/var/run/netns/\xff\xfe", NULL, INV);

    /* Namespaces that cannot be handed over. */
    setup_fails("setup: netns without veth", noveth, NULL, VNET_ERR_NO_VETH);
    setup_fails("setup: netns with two veths", twoveth, NULL, VNET_ERR_SEVERAL_VETHS);
    setup_fails("setup: veth without address", noaddr, NULL, VNET_ERR_NO_ADDRESS);
    setup_fails("setup: veth without address, dhcp off", noaddr, "{\"dhcp\": false}",
                VNET_ERR_NO_ADDRESS);

    /* Config JSON: syntax, shape, types, ranges, unknown fields. */
    static const char *bad_json[] = {
        "{",
        "{\"dhcp\": false",
        "{\"dhcp\": false}}",
        "{\"dhcp\": false} trailing",
        "[]",
        "[1]",
        "[false]",
        "[null, false]",
        "[true, false, 2]",
        "42",
        "\"dhcp\"",
        "true",
        "null",
        "{\"dhcp\": \"yes\"}",
        "{\"dhcp\": 1}",
        "{\"queues\": \"4\"}",
        "{\"queues\": -1}",
        "{\"queues\": 1.5}",
        "{\"queues\": 4294967296}",
        "{\"queues\": 0}",
        "{\"queues\": 100000}",
        "{\"lease_secs\": 1}",
        "{\"lease_secs\": -86400}",
        "{\"hostname\": \"\"}",
        "{\"hostname\": 7}",
        "{\"hostname\": \"\\ud800\"}",
        "{\"dns\": {\"nameservers\": [\"not-an-ip\"]}}",
        "{\"dns\": [\"10.0.0.1\"]}",
        "{\"vnet_hdr\": null}",
        "{\"cni_result\": 5}",
        "{\"cni_result\": []}",
        "{\"cni_result\": [\"1.0.0\"]}",
        "{\"cni_result\": {}}",
        "{\"cni_result\": {\"cniVersion\": \"0.2.0\"}}",
        "{\"cni_result\": {\"cniVersion\": 1}}",
        "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.1.90.5\"}]}}",
        "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.1.90.5/24\", "
        "\"interface\": 3}]}}",
        "{\"cni_result\": {\"cniVersion\": \"0.4.0\", \"ips\": [{\"version\": \"6\", "
        "\"address\": \"10.1.90.5/24\"}]}}",
        "{\"dhcpp\": true}",
        "{\"dhcp\": false, \"bogus\": 1}",
        "{\"DHCP\": false}",
        "{\"dhcp\": true, \"dhcp\": false}",
        "{\"mode\": \"Redirect\"}",
        "{\"mode\": \"REDIRECT\"}",
        "{\"mode\": \"redirect \"}",
        "{\"mode\": \"\"}",
        "{\"mode\": \"tc\"}",
        "{\"mode\": \"ipvlan\"}",
        "{\"mode\": 1}",
        "{\"mode\": null}",
        "{\"mode\": true}",
        "{\"mode\": [\"redirect\"]}",
        "{\"mode\": {\"redirect\": true}}",
        "{\"mode\": \"redirect\", \"mode\": \"bridge\"}",
        "{\"mode\": \"redirect\\u0000\"}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
        snprintf(buf, sizeof buf, "setup: config %s", bad_json[i]);
        setup_fails(buf, good, bad_json[i], CFG);
    }
    setup_fails("setup: config with non-UTF-8 bytes", good, "{\"hostname\": \"\xff\xfe\"}", INV);
    setup_fails("setup: config with a lone surrogate in UTF-8", good,
                "{\"hostname\": \"\xed\xa0\x80\"}", INV);
    char *big = huge_json(10u << 20);
    setup_fails("setup: 10 MiB config", good, big, CFG);
    free(big);
    char *deep = deep_json(200000, "");
    setup_fails("setup: config nested 200000 deep", good, deep, CFG);
    free(deep);
    deep = deep_json(200000, "{\"cni_result\": ");
    setup_fails("setup: cni_result nested 200000 deep", good, deep, CFG);
    free(deep);

    /* CNI results that do not match the namespace. */
    snprintf(buf, sizeof buf,
             "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": "
             "\"nope0\", \"sandbox\": \"%s\"}], \"ips\": [{\"address\": \"10.1.90.5/24\", "
             "\"interface\": 0}]}}",
             good);
    setup_fails("setup: cni_result names an interface not in the netns", good, buf, CFG);
    snprintf(buf, sizeof buf,
             "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": "
             "\"eth0\", \"sandbox\": \"%s\"}], \"ips\": [{\"address\": \"10.9.9.9/24\", "
             "\"interface\": 0}]}}",
             good);
    setup_fails("setup: cni_result gives eth0 an IP it does not hold", good, buf, CFG);
    setup_fails("setup: cni_result IP on no interface", good,
                "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": "
                "\"10.9.9.9/24\"}]}}",
                CFG);
    snprintf(buf, sizeof buf,
             "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": "
             "\"eth0\", \"sandbox\": \"%s\"}, {\"name\": \"eth0\", \"sandbox\": \"%s\"}]}}",
             good, good);
    setup_fails("setup: cni_result names eth0 twice", good, buf, CFG);
    snprintf(buf, sizeof buf,
             "{\"cni_result\": {\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": "
             "\"lo\", \"sandbox\": \"%s\"}]}}",
             good);
    setup_fails("setup: cni_result names lo (not a veth)", good, buf, CFG);
}

/* Calls on a live handle, then recover, then calls after teardown. */
static void handle_table(void)
{
    vnet_handle *h = setup_ok(good, NULL);
    if (!h)
        return;
    char *err = SENTINEL_S;
    inputs++;
    vnet_status st = vnet_result_json(h, NULL, &err);
    judge("vnet_result_json(h, json_out NULL)", st, VNET_ERR_INVALID_ARGUMENT, err, 1);
    static const uint32_t idx[][2] = {{1, 0}, {0, 1}, {UINT32_MAX, 0}, {0, UINT32_MAX},
                                      {UINT32_MAX, UINT32_MAX}, {2, 2}};
    for (size_t i = 0; i < sizeof idx / sizeof *idx; i++) {
        inputs++;
        check(vnet_tap_fd(h, idx[i][0], idx[i][1]) == -1, "vnet_tap_fd(h, %u, %u) = -1",
              idx[i][0], idx[i][1]);
    }
    setup_fails("setup: netns already set up (default config)", good, NULL,
                VNET_ERR_LEFTOVERS);
    setup_fails("setup: netns already set up (dhcp off)", good, "{\"dhcp\": false}",
                VNET_ERR_LEFTOVERS);

    char *json = result_of(h);
    if (!json) {
        vnet_teardown(h, NULL);
        vnet_free(h);
        return;
    }
    vnet_free(h); /* no teardown: the namespace stays set up, to recover */

    const vnet_status INV = VNET_ERR_INVALID_ARGUMENT, STATE = VNET_ERR_STATE;
    recover_fails("recover: netns_path NULL", NULL, json, INV);
    recover_fails("recover: result_json NULL", good, NULL, INV);
    inputs++;
    st = vnet_recover(good, json, NULL, NULL);
    judge("recover: handle_out NULL, error_out NULL", st, INV, NULL, 0);
    recover_fails("recover: empty path", "", json, INV);
    recover_fails("recover: relative path", "run/netns/x", json, INV);
    recover_fails("recover: missing path", "/var/run/netns/vnet-hostile-missing", json,
                  VNET_ERR_NETNS);
    recover_fails("recover: mount namespace", "/proc/self/ns/mnt", json, VNET_ERR_NETNS);
    static const char *garbage[] = {"", "garbage", "{", "{}", "[]", "null", "42",
                                    "{\"vnet\": {}}", "{\"cniVersion\": \"1.0.0\"}"};
    char what[256];
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        snprintf(what, sizeof what, "recover: result_json \"%s\"", garbage[i]);
        recover_fails(what, good, garbage[i], STATE);
    }
    recover_fails("recover: non-UTF-8 result_json", good, "{\"vnet\": \"\xff\"}", INV);
    char *big = huge_json(10u << 20);
    recover_fails("recover: 10 MiB result_json", good, big, STATE);
    free(big);
    char *deep = deep_json(200000, "");
    recover_fails("recover: result_json nested 200000 deep", good, deep, STATE);
    free(deep);
    char *bad = replace(json, "\"format\":2", "\"format\":3");
    recover_fails("recover: state format 3", good, bad, STATE);
    free(bad);
    bad = replace(json, "\"tap_ifindex\":", "\"tap_ifindex\":9");
    recover_fails("recover: state with a wrong tap ifindex", good, bad, STATE);
    free(bad);
    bad = replace(json, "\"vnet\":{", "\"vnet\":{\"extra\":1,");
    recover_fails("recover: state with an unknown field", good, bad, STATE);
    free(bad);
    recover_fails("recover: state of another netns, never set up", noaddr, json, STATE);

    /* A second pod, set up and released like the first: same device names
     * and (fresh namespaces) likely the same ifindexes. The first pod's state
     * must still not take it over. */
    vnet_handle *o = setup_ok(other, "{\"dhcp\": false}");
    if (o) {
        char *ojson = result_of(o);
        vnet_free(o);
        recover_fails("recover: state of another set-up netns", other, json, STATE);
        if (ojson) {
            char *forged = with_indexes_of(json, ojson);
            recover_fails("recover: state of another set-up netns, same ifindexes", other,
                          forged, STATE);
            free(forged);
        }
        o = NULL;
        err = NULL;
        st = ojson ? vnet_recover(other, ojson, &o, &err) : VNET_ERR_INTERNAL;
        if (check(st == VNET_OK && o, "recover(other, its own state) -> %s%s%s",
                  vnet_status_str(st), err ? ": " : "", err ? err : "")) {
            vnet_string_free(err);
            err = NULL;
            st = vnet_teardown(o, &err);
            check(st == VNET_OK, "teardown(other) -> %s", vnet_status_str(st));
            vnet_free(o);
        }
        vnet_string_free(err);
        vnet_string_free(ojson);
    }

    /* The good pod: recover for real, tear down, then misuse the handle. */
    vnet_handle *r = NULL;
    err = NULL;
    st = vnet_recover(good, json, &r, &err);
    if (!check(st == VNET_OK && r, "recover(good, its own state) -> %s%s%s", vnet_status_str(st),
               err ? ": " : "", err ? err : "")) {
        vnet_string_free(err);
        vnet_string_free(json);
        return;
    }
    check(vnet_tap_fd(r, 0, 0) >= 0, "recovered handle has a TAP fd");
    recover_fails("recover: netns whose TAP a live handle holds", good, json, VNET_ERR_TAP);
    st = vnet_teardown(r, &err);
    check(st == VNET_OK, "teardown(recovered) -> %s%s%s", vnet_status_str(st),
          err ? ": " : "", err ? err : "");
    vnet_string_free(err);

    inputs += 4;
    check(vnet_tap_fd(r, 0, 0) == -1, "after teardown: vnet_tap_fd(h, 0, 0) = -1");
    char *j2 = SENTINEL_S;
    err = SENTINEL_S;
    st = vnet_result_json(r, &j2, &err);
    judge("after teardown: vnet_result_json", st, STATE, err, 1);
    check(j2 == NULL, "  after teardown: *json_out is NULL");
    err = SENTINEL_S;
    st = vnet_teardown(r, &err);
    check(st == VNET_OK && err == NULL, "after teardown: vnet_teardown again -> %s",
          vnet_status_str(st));
    if (err && err != SENTINEL_S)
        vnet_string_free(err);
    st = vnet_teardown(r, NULL);
    check(st == VNET_OK, "after teardown: vnet_teardown a third time (error_out NULL) -> %s",
          vnet_status_str(st));
    recover_fails("recover: state of a torn-down netns", good, json, STATE);
    vnet_free(r);
    vnet_string_free(json);
}

int main(int argc, char **argv)
{
    for (int a = 1; a + 1 < argc; a += 2) {
        const char *k = argv[a], *v = argv[a + 1];
        if (!strcmp(k, "--good"))
            good = v;
        else if (!strcmp(k, "--other"))
            other = v;
        else if (!strcmp(k, "--noveth"))
            noveth = v;
        else if (!strcmp(k, "--twoveth"))
            twoveth = v;
        else if (!strcmp(k, "--noaddr"))
            noaddr = v;
        else if (!strcmp(k, "--version"))
            version = v;
        else
            die("unknown option");
    }
    if (!good || !other || !noveth || !twoveth || !noaddr || !version)
        die("usage: hostile --good P --other P --noveth P --twoveth P --noaddr P --version V");

    static_functions();
    null_handle();
    inputs += 2;
    vnet_set_log_callback(NULL, VNET_LOG_DEBUG, NULL); /* silence: a no-op */
    vnet_set_log_callback(sink, VNET_LOG_DEBUG, &log_lines);
    setup_table();
    handle_table();
    unsigned seen = __sync_fetch_and_add(&log_lines, 0);
    check(seen > 0 && log_bad == 0, "log callback: %u lines, %u malformed", seen, log_bad);
    vnet_set_log_callback(NULL, VNET_LOG_ERROR, NULL);
    setup_fails("setup: no veth, after the log callback is removed", noveth, NULL,
                VNET_ERR_NO_VETH);
    check(__sync_fetch_and_add(&log_lines, 0) == seen, "no log line after removal");

    printf("hostile: %u inputs checked\n", inputs);
    printf("hostile: %u checks, %u failed\n", checks_run, checks_failed);
    return checks_failed ? 1 : 0;
}
