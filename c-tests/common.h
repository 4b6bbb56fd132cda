/*
 * Shared helpers of the C ABI tests (frames.c, hostile.c): TAP-style check
 * output, a failure counter, and small parsing helpers. Header-only so each
 * test stays a single `cc` invocation.
 */
#ifndef VNET_CTESTS_COMMON_H
#define VNET_CTESTS_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not every test uses every helper. */
#define MAYBE_UNUSED __attribute__((unused))

static unsigned checks_run;
static unsigned checks_failed;

/* Record one check and print one line for it; returns `ok` so callers can
 * skip what depends on it. */
static int check(int ok, const char *fmt, ...)
{
    va_list ap;
    checks_run++;
    if (!ok)
        checks_failed++;
    printf("%s %u - ", ok ? "ok" : "not ok", checks_run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    return ok;
}

MAYBE_UNUSED static void note(const char *fmt, ...)
{
    va_list ap;
    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void die(const char *msg)
{
    fprintf(stderr, "fatal: %s\n", msg);
    exit(2);
}

/* "42:a4:a6:22:80:2e" -> 6 bytes; 0 on success. */
MAYBE_UNUSED static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

#endif /* VNET_CTESTS_COMMON_H */
