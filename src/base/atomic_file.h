/* Output files that survive faults: written under a temporary name in the
 * target's directory, flushed to disk, then renamed over the target.  A
 * reader (or a crash) sees the old file or the whole new one, never a
 * prefix; a failure leaves the old target untouched and removes the
 * temporary file (a SIGKILL between open and commit can still leave one:
 * nothing runs then).  Every curvscope output goes through here: the
 * fine-tuned model, the HTML report, TensorProto and NPY exports. */
#ifndef CS_BASE_ATOMIC_FILE_H
#define CS_BASE_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "base/status.h"

typedef struct cs_atomic_file {
    FILE *f;      /* write here between open and commit */
    char *tmp;    /* "DIR/.NAME.tmp-XXXXXX", owned */
    char *path;   /* the target, owned copy */
} cs_atomic_file;

/* Create the temporary file beside path (mode: the existing target's, or
 * 0666 less the umask).  On failure nothing is created and *af is zeroed. */
cs_status cs_atomic_open(cs_atomic_file *af, const char *path, cs_err *err) CS_MUST_CHECK;

/* Flush, fsync, close and rename over the target, then fsync the directory
 * so the rename itself is durable.  On failure the temporary file is
 * removed and the target left as it was.  Either way *af is released. */
cs_status cs_atomic_commit(cs_atomic_file *af, cs_err *err) CS_MUST_CHECK;

/* Give up: close and remove the temporary file.  Safe on a zeroed or
 * already released object. */
void cs_atomic_abort(cs_atomic_file *af);

/* The whole of buf[0..len) to path through open / write / commit. */
cs_status cs_write_file_atomic(const char *path, const void *buf, size_t len,
                               cs_err *err) CS_MUST_CHECK;

#endif
