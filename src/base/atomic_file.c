/* See atomic_file.h. */
#include "config.h"

#include "base/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory part of path ("." when it has none), owned by the caller. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

cs_status cs_atomic_open(cs_atomic_file *af, const char *path, cs_err *err)
{
    memset(af, 0, sizeof *af);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base)
        return cs_fail(err, CS_ERR_IO, "cannot write '%s': it names a directory", path);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return cs_fail(err, CS_ERR_IO, "cannot write '%s': it is a directory", path);
    /* Hidden, in the target's directory: rename(2) is atomic only within one
     * file system, and a dot name keeps it out of globs while it exists. */
    size_t dlen = (size_t)(base - path);
    size_t n = dlen + strlen(base) + sizeof "..tmp-XXXXXX";
    af->tmp = malloc(n);
    af->path = strdup(path);
    if (!af->tmp || !af->path) {
        cs_atomic_abort(af);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    snprintf(af->tmp, n, "%.*s.%s.tmp-XXXXXX", (int)dlen, path, base);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        int e = errno;
        free(af->tmp);
        af->tmp = NULL;
        cs_atomic_abort(af);
        return cs_fail(err, CS_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    /* mkstemp makes 0600; the result should look like any file we create,
     * or keep the mode of the file it replaces. */
    mode_t mode;
    if (stat(path, &sb) == 0) {
        mode = sb.st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    (void)fchmod(fd, mode); /* best effort: the data matters more than the mode */
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        cs_atomic_abort(af);
        return cs_fail(err, CS_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    return CS_OK;
}

void cs_atomic_abort(cs_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    if (af->tmp)
        unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

cs_status cs_atomic_commit(cs_atomic_file *af, cs_err *err)
{
    if (!af->f)
        return cs_fail(err, CS_ERR_RUNTIME, "cannot commit '%s': it is not open",
                       af->path ? af->path : "(null)");
    /* ferror catches a short write the caller did not check; fsync makes the
     * data durable before the rename makes it visible (ext4 and others may
     * otherwise show a renamed, empty file after a power cut). */
    errno = 0;
    int bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    if (fclose(af->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    af->f = NULL;
    if (!bad && rename(af->tmp, af->path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        cs_status r = cs_fail(err, CS_ERR_IO, "cannot write '%s': %s", af->path,
                              e ? strerror(e) : "write error");
        cs_atomic_abort(af);
        return r;
    }
    /* The rename is durable once the directory is synced; failing that is
     * not an error worth undoing a complete file for. */
    char *dir = dir_of(af->path);
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    free(af->tmp);
    af->tmp = NULL; /* renamed away: nothing to remove */
    cs_atomic_abort(af);
    return CS_OK;
}

cs_status cs_write_file_atomic(const char *path, const void *buf, size_t len, cs_err *err)
{
    cs_atomic_file af;
    cs_status r = cs_atomic_open(&af, path, err);
    if (r != CS_OK)
        return r;
    if (len && fwrite(buf, 1, len, af.f) != len) {
        int e = errno;
        cs_atomic_abort(&af);
        return cs_fail(err, CS_ERR_IO, "cannot write '%s': %s", path,
                       e ? strerror(e) : "short write");
    }
    return cs_atomic_commit(&af, err);
}
