#include "CSamepageShim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

// The ABI of include/uapi/linux/fs.h (6.7) and userfaultfd.h (6.7), for older headers.
struct sp_page_region { __u64 start, end, categories; };
struct sp_pm_scan_arg {
    __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
    __u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define SP_PAGEMAP_SCAN _IOWR('f', 16, struct sp_pm_scan_arg)
#define SP_PM_SCAN_WP_MATCHING (1ULL << 0)
#define SP_PAGE_IS_WRITTEN (1ULL << 1)
#define SP_PAGE_IS_FILE (1ULL << 2)
#define SP_PAGE_IS_PRESENT (1ULL << 3)
#define SP_PAGE_IS_PFNZERO (1ULL << 5)
#define SP_UFFD_FEATURE_WP_UNPOPULATED (1ULL << 13)
#define SP_UFFD_FEATURE_WP_ASYNC (1ULL << 15)
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int sp_write_tracking_register(int uffd, uintptr_t start, size_t length) {
    struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = UFFDIO_REGISTER_MODE_WP};
    return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0 ? 0 : -errno;
}

int sp_write_tracking_unregister(int uffd, uintptr_t start, size_t length) {
    struct uffdio_range range = {.start = start, .len = length};
    return ioctl(uffd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : -errno;
}

int sp_page_states(int pagemap_fd, uintptr_t start, size_t pages, int mode, uint8_t *states) {
    struct sp_page_region regions[256];
    uintptr_t end = start + pages * 4096, from = start;
    int arm = mode == SP_PAGES_COLLECT;
    memset(states, 0, pages);
    while (from < end) {
        // Armed: only present pages written since they were last armed are reported, and armed
        // again (so pages never touched get no marker, and no page table is made for them).
        // Not armed: every present page is reported.
        struct sp_pm_scan_arg arg = {
            .size = sizeof arg, .flags = arm ? SP_PM_SCAN_WP_MATCHING : 0, .start = from, .end = end,
            .vec = (uintptr_t)regions, .vec_len = 256,
            .category_mask = SP_PAGE_IS_PRESENT | (arm ? SP_PAGE_IS_WRITTEN : 0),
            .return_mask = SP_PAGE_IS_WRITTEN | SP_PAGE_IS_PRESENT | SP_PAGE_IS_PFNZERO | SP_PAGE_IS_FILE,
        };
        int found = ioctl(pagemap_fd, SP_PAGEMAP_SCAN, &arg);
        if (found < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        for (int r = 0; r < found; r++) {
            uintptr_t a = regions[r].start < start ? start : regions[r].start;
            uintptr_t b = regions[r].end > end ? end : regions[r].end;
            uint8_t state = (regions[r].categories & SP_PAGE_IS_PFNZERO) ? 0 : SP_PAGE_RESIDENT;
            if (mode != SP_PAGES_RESIDENCY && (regions[r].categories & SP_PAGE_IS_WRITTEN)) state |= SP_PAGE_WRITTEN;
            if (regions[r].categories & SP_PAGE_IS_FILE) state |= SP_PAGE_FILE;
            if (b > a) memset(states + (a - start) / 4096, state, (b - a) / 4096);
        }
        // A full vector stops the walk early; walk_end says where.
        if (arg.walk_end <= from) return -EIO;
        from = arg.walk_end;
    }
    return 0;
}

int sp_write_tracking_create(int pagemap_fd) {
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0) return -errno;
    struct uffdio_api api = {.api = UFFD_API, .features = SP_UFFD_FEATURE_WP_ASYNC | SP_UFFD_FEATURE_WP_UNPOPULATED};
    int error = 0;
    if (ioctl(uffd, UFFDIO_API, &api) != 0) error = -errno;
    // A kernel may know the features but not PAGEMAP_SCAN, or refuse write-protection of
    // anonymous memory (no PTE markers): try the whole cycle on one page of our own.
    void *probe = error == 0 ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (error == 0 && probe == MAP_FAILED) error = -errno;
    if (error == 0) {
        uint8_t state = 0;
        *(volatile char *)probe = 1;
        error = sp_write_tracking_register(uffd, (uintptr_t)probe, 4096);
        if (error == 0) error = sp_page_states(pagemap_fd, (uintptr_t)probe, 1, SP_PAGES_COLLECT, &state);
        if (error == 0 && state != (SP_PAGE_RESIDENT | SP_PAGE_WRITTEN)) error = -ENOSYS;
        if (error == 0) {
            // Armed now: a write must be seen, and only once.
            error = sp_page_states(pagemap_fd, (uintptr_t)probe, 1, SP_PAGES_COLLECT, &state);
            if (error == 0 && state != 0) error = -ENOSYS;
            *(volatile char *)probe = 2;
            if (error == 0) error = sp_page_states(pagemap_fd, (uintptr_t)probe, 1, SP_PAGES_COLLECT, &state);
            if (error == 0 && state != (SP_PAGE_RESIDENT | SP_PAGE_WRITTEN)) error = -ENOSYS;
        }
    }
    if (probe != MAP_FAILED) munmap(probe, 4096);
    if (error != 0) {
        close(uffd);
        return error;
    }
    return uffd;
}
