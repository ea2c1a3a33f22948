// Linux's renameat2(RENAME_EXCHANGE), which Swift's Glibc module does not export: swaps two paths in one step.
#ifndef CFEDRECFILES_SHIM_H
#define CFEDRECFILES_SHIM_H

#include <errno.h>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#endif

/// Swaps the entries `a` and `b` (both must exist; folders or files) atomically. Returns 0, or -1 with errno set:
/// ENOSYS or EINVAL when this kernel or file system cannot exchange, in which case nothing changed.
static inline int fedrec_exchange_paths(const char *a, const char *b) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    (void)a;
    (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

#endif
