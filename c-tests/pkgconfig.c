/*
 * pkgconfig: the installed library as a consumer sees it. Built with nothing
 * but `cc pkgconfig.c $(pkg-config --cflags --libs vnet)`, and also as strict
 * C99 (-std=c99 -pedantic) and as C++11, so it doubles as the check that
 * vnet.h is clean in both languages.
 *
 *   pkgconfig [NETNS_PATH]
 *
 * Without NETNS_PATH: version, status names and an error path only. With
 * it: setup, result JSON, TAP fd, teardown (twice) on that namespace, which
 * must hold one veth with an address. Exit 0 only if every check passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnet.h"

static int failures;

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    if (!ok)
        failures++;
}

static void run_netns(const char *path)
{
    vnet_handle *h = NULL;
    char *err = NULL;
    char *json = NULL;
    enum vnet_status st = vnet_setup(path, "{\"dhcp\": true}", &h, &err);
    if (st != VNET_OK)
        fprintf(stderr, "vnet_setup: %s: %s\n", vnet_status_str(st), err ? err : "");
    check(st == VNET_OK && h != NULL && err == NULL, "vnet_setup");
    vnet_string_free(err);
    if (h == NULL)
        return;
    check(vnet_interface_count(h) == 1, "one interface");
    check(vnet_tap_fd(h, 0, 0) >= 0, "tap fd of queue 0");
    check(vnet_tap_fd(h, 0, 1) == -1 && vnet_tap_fd(h, 1, 0) == -1, "no fd out of range");
    st = vnet_result_json(h, &json, NULL);
    check(st == VNET_OK && json != NULL && json[0] == '{', "result JSON");
    check(json != NULL && strstr(json, "\"tap0\"") != NULL, "result names tap0");
    vnet_string_free(json);
    err = NULL;
    st = vnet_teardown(h, &err);
    if (st != VNET_OK)
        fprintf(stderr, "vnet_teardown: %s: %s\n", vnet_status_str(st), err ? err : "");
    check(st == VNET_OK && err == NULL, "vnet_teardown");
    vnet_string_free(err);
    check(vnet_teardown(h, NULL) == VNET_OK, "second teardown is a no-op");
    check(vnet_tap_fd(h, 0, 0) == -1, "no fd after teardown");
    vnet_free(h);
}

int main(int argc, char **argv)
{
    vnet_handle *h = NULL;
    char *err = NULL;
    int s;
    enum vnet_status st;

    printf("vnet %s\n", vnet_version());
    check(vnet_version() != NULL && vnet_version()[0] != '\0', "vnet_version");
    for (s = VNET_OK; s <= VNET_ERR_UNSUPPORTED; s++) {
        const char *name = vnet_status_str((enum vnet_status)s);
        if (name == NULL || name[0] == '\0') {
            check(0, "vnet_status_str names every status");
            break;
        }
    }
    check(strcmp(vnet_status_str(VNET_OK), "ok") == 0, "VNET_OK is \"ok\"");

    st = vnet_setup("relative/path", NULL, &h, &err);
    check(st == VNET_ERR_INVALID_ARGUMENT, "relative netns path is an invalid argument");
    check(h == NULL, "no handle on error");
    check(err != NULL && strstr(err, "relative/path") != NULL, "message names the path");
    vnet_string_free(err);
    check(vnet_setup(NULL, NULL, &h, NULL) == VNET_ERR_INVALID_ARGUMENT, "NULL path, no error_out");
    check(vnet_interface_count(NULL) == 0 && vnet_tap_fd(NULL, 0, 0) == -1, "NULL handle");
    vnet_free(NULL);
    vnet_string_free(NULL);

    if (argc > 1)
        run_netns(argv[1]);

    printf("pkgconfig: %s (%d failed)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
