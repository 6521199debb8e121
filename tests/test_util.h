/* Paths to the bundled models, fixtures and system test data for tests. */
#ifndef CS_TESTS_TEST_UTIL_H
#define CS_TESTS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

/* $top_srcdir/rel into buf (top_srcdir from the test environment, else "."). */
static inline const char *test_src_path(char *buf, size_t size, const char *rel)
{
    const char *top = getenv("top_srcdir");
    snprintf(buf, size, "%s/%s", top && *top ? top : ".", rel);
    return buf;
}

/* Environment variable or default. */
static inline const char *test_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

#endif
