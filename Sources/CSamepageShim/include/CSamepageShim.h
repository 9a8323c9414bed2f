// The few Linux facilities that Swift's Glibc module cannot see because it is built without
// _GNU_SOURCE (memfd_create, seals, fallocate, struct ucred) or that are macros (CMSG_*,
// IOSQE_*). Each is a plain function or constant here; the .c file checks the constants.
#ifndef CSAMEPAGE_SHIM_H
#define CSAMEPAGE_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

// memfd_create(2) flags.
#define SP_MFD_CLOEXEC       0x0001U
#define SP_MFD_ALLOW_SEALING 0x0002U

// fcntl(2) sealing.
#define SP_F_SEAL_SEAL         0x0001
#define SP_F_SEAL_SHRINK       0x0002
#define SP_F_SEAL_GROW         0x0004
#define SP_F_SEAL_WRITE        0x0008
#define SP_F_SEAL_FUTURE_WRITE 0x0010

// madvise(2) advice newer than what Swift's Glibc module shows.
#define SP_MADV_POPULATE_READ 22
#define SP_MADV_POPULATE_WRITE 23

// io_uring submission flags (macros in liburing, invisible to Swift).
#define SP_IOSQE_FIXED_FILE    (1U << 0)
#define SP_IOSQE_IO_LINK       (1U << 2)
#define SP_IOSQE_ASYNC         (1U << 4)

int sp_memfd_create(const char *name, unsigned int flags);
int sp_add_seals(int fd, int seals);
int sp_get_seals(int fd);
int sp_dup_cloexec(int fd);
/// fallocate(PUNCH_HOLE | KEEP_SIZE): gives the pages back to the kernel, the file keeps its size.
int sp_punch_hole(int fd, off_t offset, off_t length);

/// SO_PEERCRED of a connected AF_UNIX socket.
int sp_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// Bytes of msg_control needed to carry one fd.
size_t sp_cmsg_space_one_fd(void);
/// Writes one SCM_RIGHTS fd into msg->msg_control (which must hold sp_cmsg_space_one_fd bytes)
/// and sets msg_controllen.
void sp_cmsg_put_fd(struct msghdr *msg, int fd);
/// The first fd carried by a received message, or -1. Every other fd it carried is closed, so a
/// peer cannot make us leak descriptors by sending more than we asked for.
int sp_cmsg_take_fd(struct msghdr *msg);

#endif

#ifndef CSAMEPAGE_SHIM_SIGNALS
#define CSAMEPAGE_SHIM_SIGNALS
/// Blocks SIGINT and SIGTERM in the calling thread (call before starting other threads) and
/// returns a signalfd that becomes readable when one arrives, so the event loop can treat a
/// stop request as one more completion. Also ignores SIGPIPE.
int sp_termination_signalfd(void);
/// The signal number in a struct signalfd_siginfo read from that fd.
int sp_signalfd_signo(const void *siginfo);
size_t sp_signalfd_siginfo_size(void);
#endif

#ifndef CSAMEPAGE_SHIM_RING
#define CSAMEPAGE_SHIM_RING
// io_uring through liburing, behind an opaque type: swift-system's CSystem module includes the
// kernel's <linux/io_uring.h>, whose struct io_uring_sqe differs from liburing's own copy, and a
// Swift module that saw both would not build. So liburing's types stay in shim.c.
typedef struct sp_ring sp_ring;

#define SP_CQE_F_MORE (1U << 1)

/// A ring of `entries` submissions, single-issuer with deferred task running where the kernel
/// has it. NULL with *error set to a positive errno on failure.
sp_ring *sp_ring_create(unsigned entries, int *error);
void sp_ring_destroy(sp_ring *ring);
/// Each prep returns 0, or a negative errno when no submission entry could be had.
int sp_ring_accept_multishot(sp_ring *ring, int fd, uint64_t user_data);
int sp_ring_recvmsg(sp_ring *ring, int fd, struct msghdr *msg, uint64_t user_data);
int sp_ring_sendmsg(sp_ring *ring, int fd, const struct msghdr *msg, uint64_t user_data);
int sp_ring_read(sp_ring *ring, int fd, void *buffer, unsigned length, uint64_t user_data);
/// Submits and waits for `wait_for` completions: >= 0, or a negative errno.
int sp_ring_submit_and_wait(sp_ring *ring, unsigned wait_for);
/// 1 and the completion's fields when one is ready, 0 otherwise.
int sp_ring_pop(sp_ring *ring, uint64_t *user_data, int32_t *result, uint32_t *flags);
#endif

#ifndef CSAMEPAGE_SHIM_GUARD
#define CSAMEPAGE_SHIM_GUARD
// The merge guard. To merge a run of a process's own pages in place, the scanner write-protects
// the run, confirms its bytes, and maps the region over it. A thread that writes into the run
// meanwhile takes SIGSEGV; the handler waits until the scanner is done and returns, so the write
// is retried on whatever is there then: the merged copy-on-write mapping (the write lands in a
// private copy) or the original page. Where a stretch of the run maps many region pieces, it is
// unmapped first and the pieces mapped into the hole (a split of the private mapping per piece
// costs twice the mapping itself): a thread that reads there meanwhile faults too (SEGV_MAPERR)
// and waits the same way. No write is lost, no thread crashes. Faults anywhere else go to the
// handler that was installed before (or the default action).

/// Installs the SIGSEGV handler once per process; returns 0 or -errno.
int sp_guard_install(void);
/// Starts guarding [start, start + length). One range at a time (one scanner per process).
void sp_guard_begin(const void *start, size_t length);
/// Ends the guard; writers waiting in the handler retry.
void sp_guard_end(void);
/// Publishes the process's mergeable ranges, `count` (start, end) pairs: a fault in them is
/// retried even when it arrives after the guard that caused it has ended.
void sp_guard_set_mergeable(const uintptr_t *pairs, size_t count);
/// Faults the handler absorbed (writes that raced a merge), for tests and statistics.
uint64_t sp_guard_absorbed(void);
#endif

#ifndef CSAMEPAGE_SHIM_VM
#define CSAMEPAGE_SHIM_VM
/// process_vm_readv(2) on the calling process: copies `length` bytes at `source` to
/// `destination`, stopping at the first unreadable page instead of faulting. Returns the bytes
/// copied or -1 with errno.
ssize_t sp_read_own_memory(void *destination, const void *source, size_t length);
/// process_vm_writev(2) of one buffer into process `pid`'s memory at `destination`: a write the
/// process itself takes no fault for (tests of the write tracker use it).
ssize_t sp_write_process_memory(pid_t pid, void *destination, const void *source, size_t length);
/// mremap(2) of one whole mapping to `new_address` (MREMAP_MAYMOVE | MREMAP_FIXED), which the
/// kernel unmaps first. Returns the new address, or MAP_FAILED with errno (mremap is variadic).
void *sp_mremap_fixed(void *old_address, size_t length, void *new_address);
/// Hashes `pages` pages from `start` in place (XXH3-64, seed 0) into `digests`; returns how many
/// it hashed before one could not be read (unmapped, protected or past the end of its file).
/// Needs sp_guard_install() first.
size_t sp_hash_pages_in_place(const void *start, size_t pages, uint64_t *digests);
/// memcmp of two pages that may vanish under the caller: 1 equal, 0 different, -1 one of them
/// could not be read. Needs sp_guard_install() first.
int sp_pages_equal_in_place(const void *a, const void *b);
/// Copies `pages` pages that may vanish under the caller; returns how many were copied before
/// one could not be read. Needs sp_guard_install() first.
size_t sp_copy_pages_in_place(void *destination, const void *source, size_t pages);
#endif

#ifndef CSAMEPAGE_SHIM_TOUCH
#define CSAMEPAGE_SHIM_TOUCH
/// Reads and writes back one byte through a volatile pointer: forces a write fault (breaks
/// copy-on-write) without changing the byte.
int sp_touch_write(unsigned char *p);
/// Reads the word at `p` through a volatile pointer (a read the compiler cannot drop).
uint64_t sp_touch_read(const void *p);
/// mallopt(M_MMAP_THRESHOLD, bytes): allocations of `bytes` and more get mappings of their own
/// (and glibc stops raising the threshold as they are freed). Returns 1 on success.
int sp_set_mmap_threshold(size_t bytes);
#endif

#ifndef CSAMEPAGE_SHIM_TIMEOUT
#define CSAMEPAGE_SHIM_TIMEOUT
/// A completion after `milliseconds` (IORING_OP_TIMEOUT). The ring keeps the time in a slot
/// of its own, so only one such timer may be pending at a time.
int sp_ring_timeout(sp_ring *ring, unsigned milliseconds, uint64_t user_data);
#endif

#ifndef CSAMEPAGE_SHIM_SERVICE
#define CSAMEPAGE_SHIM_SERVICE
// For the service wrapper and the metrics endpoint: GNU extensions Swift's Glibc module hides.
/// eventfd(initial, EFD_CLOEXEC): blocking reads.
int sp_eventfd(unsigned initial);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int sp_accept_cloexec(int fd);
/// Names the calling thread (at most 15 bytes are kept).
void sp_set_thread_name(const char *name);
/// stat(2)'s st_mode of path (following links), into *mode; 0 or -1 with errno.
int sp_stat_mode(const char *path, unsigned *mode);
#endif

#ifndef CSAMEPAGE_SHIM_WRITE_TRACKING
#define CSAMEPAGE_SHIM_WRITE_TRACKING
// Which pages a process wrote since it last looked: userfaultfd in asynchronous write-protect
// mode (Linux 6.7: the kernel resolves the write faults itself and sends no message) read and
// re-armed with the PAGEMAP_SCAN ioctl of /proc/self/pagemap. Debian's headers may predate
// both, so write_tracking.c spells out the ABI.
/// A userfaultfd (user-mode faults only: no privilege needed) with asynchronous write-protection
/// of populated and unpopulated pages, checked to work with PAGEMAP_SCAN on `pagemap_fd`.
/// Returns the fd, or -errno when the kernel lacks any part of it.
int sp_write_tracking_create(int pagemap_fd);
/// Registers [start, start + length) for write-protect tracking; 0 or -errno (-EBUSY: another
/// userfaultfd of the process owns part of it).
int sp_write_tracking_register(int uffd, uintptr_t start, size_t length);
/// Stops tracking [start, start + length); 0 or -errno.
int sp_write_tracking_unregister(int uffd, uintptr_t start, size_t length);
/// A page that holds memory of its own: present, and not the kernel's shared zero page.
#define SP_PAGE_RESIDENT 1
/// Written since it was last write-protected (or never write-protected).
#define SP_PAGE_WRITTEN 2
/// A page of a file (a merged page: the region's, mapped copy-on-write), of a page reported.
#define SP_PAGE_FILE 4
/// What sp_page_states reports and does.
enum sp_page_states_mode {
    /// SP_PAGE_RESIDENT for each resident page, 0 for the others.
    SP_PAGES_RESIDENCY = 0,
    /// (Registered mappings.) Only the present pages written since they were last armed are
    /// reported, SP_PAGE_WRITTEN (and SP_PAGE_RESIDENT unless it is the zero page), and armed
    /// again; every other page is 0, resident or not.
    SP_PAGES_COLLECT = 1,
    /// Every present page, SP_PAGE_RESIDENT as in SP_PAGES_RESIDENCY, with SP_PAGE_WRITTEN if it
    /// was written since it was last armed (or is in a mapping not registered); nothing armed.
    SP_PAGES_PEEK = 2,
};
/// The state of each of the `pages` pages from `start` in one page-table walk (PAGEMAP_SCAN,
/// Linux 6.7; -ENOTTY before), by `mode` (sp_page_states_mode). A reported page that a file
/// backs has SP_PAGE_FILE. 0 or -errno.
int sp_page_states(int pagemap_fd, uintptr_t start, size_t pages, int mode, uint8_t *states);
#endif
