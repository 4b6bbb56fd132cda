/*
 * dlopen: load the installed libvnet.so.0 at run time the way plugin hosts
 * do, resolve every exported symbol, set up and tear down a namespace
 * through the resolved pointers, dlclose -- twice in one process -- and
 * check the process is left with as many threads and fds as it started with.
 *
 *   dlopen LIBRARY NETNS_PATH SYMBOL...
 *
 * SYMBOL... is the library's export list (`nm -D --defined-only`); every one
 * must resolve, and so must every function of vnet.h. Exit 0 on success.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vnet.h" /* types only: nothing is linked */

static int failures;

static void check(int ok, const char *what, int round)
{
    printf("%s - round %d: %s\n", ok ? "ok" : "not ok", round, what);
    if (!ok)
        failures++;
}

static int count_dir(const char *path)
{
    int n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* opendir's own fd */
}

/* Threads of a finished call may still be exiting: wait (bounded). */
static int settle_threads(int want)
{
    int i, n = count_dir("/proc/self/task");
    struct timespec ms = {0, 5 * 1000 * 1000};
    for (i = 0; i < 400 && n > want; i++) {
        nanosleep(&ms, NULL);
        n = count_dir("/proc/self/task");
    }
    return n;
}

static int lib_mapped(void)
{
    char line[4096];
    int found = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "libvnet.so"))
            found = 1;
    fclose(f);
    return found;
}

/* The functions of vnet.h, typed from the header itself. */
struct api {
    __typeof__(vnet_setup) *setup;
    __typeof__(vnet_recover) *recover;
    __typeof__(vnet_interface_count) *interface_count;
    __typeof__(vnet_tap_fd) *tap_fd;
    __typeof__(vnet_result_json) *result_json;
    __typeof__(vnet_teardown) *teardown;
    __typeof__(vnet_free) *free_handle;
    __typeof__(vnet_string_free) *string_free;
    __typeof__(vnet_status_str) *status_str;
    __typeof__(vnet_version) *version;
};

#define RESOLVE(lib, api, field, name)                                 \
    do {                                                               \
        *(void **)(&(api)->field) = dlsym((lib), (name));              \
        if ((api)->field == NULL) {                                    \
            fprintf(stderr, "dlsym %s: %s\n", (name), dlerror());      \
            ok = 0;                                                    \
        }                                                              \
    } while (0)

static int resolve(void *lib, struct api *a)
{
    int ok = 1;
    RESOLVE(lib, a, setup, "vnet_setup");
    RESOLVE(lib, a, recover, "vnet_recover");
    RESOLVE(lib, a, interface_count, "vnet_interface_count");
    RESOLVE(lib, a, tap_fd, "vnet_tap_fd");
    RESOLVE(lib, a, result_json, "vnet_result_json");
    RESOLVE(lib, a, teardown, "vnet_teardown");
    RESOLVE(lib, a, free_handle, "vnet_free");
    RESOLVE(lib, a, string_free, "vnet_string_free");
    RESOLVE(lib, a, status_str, "vnet_status_str");
    RESOLVE(lib, a, version, "vnet_version");
    return ok;
}

static void round_trip(const char *libpath, const char *netns, char **syms, int nsyms,
                       int round, int threads0, int fds0)
{
    struct api a;
    vnet_handle *h = NULL;
    char *err = NULL, *json = NULL;
    enum vnet_status st;
    int i, all = 1;
    void *lib = dlopen(libpath, RTLD_NOW | RTLD_LOCAL);

    if (lib == NULL)
        fprintf(stderr, "dlopen: %s\n", dlerror());
    check(lib != NULL, "dlopen", round);
    if (lib == NULL)
        return;
    for (i = 0; i < nsyms; i++) {
        if (dlsym(lib, syms[i]) == NULL) {
            fprintf(stderr, "dlsym %s: %s\n", syms[i], dlerror());
            all = 0;
        }
    }
    check(all && nsyms > 0, "dlsym of every exported symbol", round);
    check(resolve(lib, &a), "dlsym of every vnet.h function", round);
    if (a.setup == NULL || a.teardown == NULL || a.free_handle == NULL) {
        dlclose(lib);
        return;
    }
    printf("# vnet %s\n", a.version());

    st = a.setup(netns, NULL, &h, &err);
    if (st != VNET_OK)
        fprintf(stderr, "vnet_setup: %s: %s\n", a.status_str(st), err ? err : "");
    check(st == VNET_OK && h != NULL, "setup", round);
    a.string_free(err);
    err = NULL;
    if (h != NULL) {
        check(a.interface_count(h) == 1 && a.tap_fd(h, 0, 0) >= 0, "interface and tap fd", round);
        check(a.result_json(h, &json, NULL) == VNET_OK && json != NULL, "result JSON", round);
        a.string_free(json);
        st = a.teardown(h, &err);
        if (st != VNET_OK)
            fprintf(stderr, "vnet_teardown: %s: %s\n", a.status_str(st), err ? err : "");
        check(st == VNET_OK, "teardown", round);
        a.string_free(err);
        a.free_handle(h);
    }
    check(dlclose(lib) == 0, "dlclose", round);
    i = settle_threads(threads0);
    if (i != threads0)
        fprintf(stderr, "threads: %d at start, %d now\n", threads0, i);
    check(i == threads0, "thread count back to the start value", round);
    i = count_dir("/proc/self/fd");
    if (i != fds0)
        fprintf(stderr, "fds: %d at start, %d now\n", fds0, i);
    check(i == fds0, "fd count back to the start value", round);
    /* Rust's thread-local destructors may pin the DSO; either way is fine. */
    printf("# after dlclose the library is %s\n", lib_mapped() ? "still mapped" : "unmapped");
}

int main(int argc, char **argv)
{
    int threads0 = count_dir("/proc/self/task");
    int fds0 = count_dir("/proc/self/fd");
    int round;
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBRARY NETNS_PATH SYMBOL...\n", argv[0]);
        return 64;
    }
    for (round = 1; round <= 2; round++)
        round_trip(argv[1], argv[2], argv + 3, argc - 3, round, threads0, fds0);
    printf("dlopen: %s (%d failed)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
