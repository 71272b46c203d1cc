/*
 * tsan_criterion.c -- lets Criterion's runner start under ThreadSanitizer.
 * Linked into every unit test of a TSan build (CMakeLists.txt); empty
 * otherwise.
 */
/* libhiredis.pc adds -D_FILE_OFFSET_BITS=64, which renames mmap to mmap64 and
 * would clash with the interceptor below. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef STRATA_TSAN
/*
 * Criterion 2.4 cannot start under ThreadSanitizer (Criterion issue #274):
 * its BoxFort arena probes random addresses in [0x2000_0000_0000,
 * 0x7f00_0000_0000) with mincore() for a free spot and maps it MAP_FIXED, but
 * TSan has reserved nearly all of that range for shadow memory and refuses
 * fixed mappings outside application memory, so every run aborts with "Could
 * not initialize inheritable arena". Only in TSan builds (STRATA_TSAN, set by
 * CMake), this binary answers those probes itself and moves the arena into
 * the part of that range TSan treats as application memory. Nothing else is
 * touched: every other call goes to TSan's own interceptor. Not instrumented,
 * because TSan's initialisation itself calls mmap.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define BXF_ARENA_LO 0x200000000000ull /* BoxFort's mmap_base */
#define BXF_ARENA_HI 0x7f0000000000ull /* BoxFort's mmap_max */
#define TSAN_APP_HI 0x7e8000000000ull  /* TSan's high application range starts here */

void *__interceptor_mmap(void *addr, size_t len, int prot, int flags, int fd,
                         off_t off);

__attribute__((no_sanitize_thread)) static int bxf_probe(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return a >= BXF_ARENA_LO && a < TSAN_APP_HI;
}

__attribute__((no_sanitize_thread)) int mincore(void *addr, size_t len,
                                                unsigned char *vec)
{
    if (bxf_probe(addr)) {
        errno = ENOMEM; /* "not mapped": mmap below puts the arena elsewhere */
        return -1;
    }
    return (int)syscall(SYS_mincore, addr, len, vec);
}

__attribute__((no_sanitize_thread)) void *mmap(void *addr, size_t len, int prot,
                                               int flags, int fd, off_t off)
{
    if ((flags & MAP_FIXED) && (flags & MAP_SHARED) && fd >= 0 && bxf_probe(addr)) {
        flags = (flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE;
        for (uintptr_t a = TSAN_APP_HI; a + len < BXF_ARENA_HI;
             a += (uintptr_t)1 << 30) {
            void *p = __interceptor_mmap((void *)a, len, prot, flags, fd, off);
            if (p != MAP_FAILED) return p;
        }
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __interceptor_mmap(addr, len, prot, flags, fd, off);
}

__attribute__((no_sanitize_thread)) void *mmap64(void *addr, size_t len, int prot,
                                                 int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}
#endif /* STRATA_TSAN */
