/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built with
 * ./configure --enable-fuzz, run by `make fuzz`).
 *
 * The data readers take a path, so each input is written to one file in a
 * private temporary folder made at start-up (and removed at exit); the
 * harness then reads it back through the reader under test.  Every harness
 * checks the library's contract on the way: a failure is a status from
 * cs_status with a message, never a crash, and never an error status with
 * an empty message. */
#ifndef CS_TESTS_FUZZ_UTIL_H
#define CS_TESTS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[4096];

static void fuzz_cleanup(void)
{
    char cmd[4200];
    if (fuzz_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
    }
}

/* Make the private folder once; abort the harness (not the library) if
 * that is impossible. */
static const char *fuzz_tmpdir(void)
{
    if (fuzz_dir[0])
        return fuzz_dir;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/cs-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* Write the input to <tmpdir>/<name>; returns the path (static buffer). */
static const char *fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return path;
}

/* The error contract every public call keeps. */
static void fuzz_check_status(const char *call, cs_status st, const cs_err *err)
{
    if (st == CS_OK)
        return;
    if ((int)st < 0 || (int)st > (int)CS_ERR_RUNTIME || !err->msg[0]) {
        fprintf(stderr, "fuzz: %s returned status %d with message '%s'\n", call, (int)st, err->msg);
        abort();
    }
}

#endif
