#include "base/file.h"

#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int zt_read_file(const char *path, size_t max, struct stat *st, char **buf, size_t *len)
{
    struct stat own;
    char *data = NULL;
    size_t n = 0;
    int rc = 0;

    *buf = NULL;
    *len = 0;
    if (st == NULL)
        st = &own;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0) {
        rc = -errno;
        goto out;
    }
    if (st->st_size < 0 || (unsigned long long)st->st_size > max) {
        rc = ZT_E_TOO_BIG;
        goto out;
    }
    data = malloc((size_t)st->st_size + 1);
    if (data == NULL)
        abort();
    while (n < (size_t)st->st_size) {
        ssize_t got = read(fd, data + n, (size_t)st->st_size - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            goto out;
        }
        if (got == 0)
            break; /* shrank meanwhile: what was there */
        n += (size_t)got;
    }
    data[n] = 0;
    *buf = data;
    *len = n;
    data = NULL;
out:
    free(data);
    close(fd);
    return rc;
}
