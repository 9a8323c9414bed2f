#include "CSamepageShim.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <pthread.h>

_Static_assert(SP_MFD_CLOEXEC == MFD_CLOEXEC, "MFD_CLOEXEC");
_Static_assert(SP_MFD_ALLOW_SEALING == MFD_ALLOW_SEALING, "MFD_ALLOW_SEALING");
_Static_assert(SP_F_SEAL_SEAL == F_SEAL_SEAL, "F_SEAL_SEAL");
_Static_assert(SP_F_SEAL_SHRINK == F_SEAL_SHRINK, "F_SEAL_SHRINK");
_Static_assert(SP_F_SEAL_GROW == F_SEAL_GROW, "F_SEAL_GROW");
_Static_assert(SP_F_SEAL_WRITE == F_SEAL_WRITE, "F_SEAL_WRITE");
_Static_assert(SP_F_SEAL_FUTURE_WRITE == F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE");
_Static_assert(SP_MADV_POPULATE_WRITE == MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE");
_Static_assert(SP_IOSQE_FIXED_FILE == IOSQE_FIXED_FILE, "IOSQE_FIXED_FILE");
_Static_assert(SP_IOSQE_IO_LINK == IOSQE_IO_LINK, "IOSQE_IO_LINK");
_Static_assert(SP_IOSQE_ASYNC == IOSQE_ASYNC, "IOSQE_ASYNC");

int sp_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int sp_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }

int sp_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }
int sp_dup_cloexec(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 0); }

int sp_punch_hole(int fd, off_t offset, off_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

int sp_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

size_t sp_cmsg_space_one_fd(void) { return CMSG_SPACE(sizeof(int)); }

void sp_cmsg_put_fd(struct msghdr *msg, int fd) {
    msg->msg_controllen = CMSG_SPACE(sizeof(int));
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
}

int sp_cmsg_take_fd(struct msghdr *msg) {
    int first = -1;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL; cmsg = CMSG_NXTHDR(msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
            if (first < 0) first = fd; else close(fd);
        }
    }
    return first;
}

#include <signal.h>
#include <sys/signalfd.h>

int sp_termination_signalfd(void) {
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int sp_signalfd_signo(const void *siginfo) {
    return (int)((const struct signalfd_siginfo *)siginfo)->ssi_signo;
}

size_t sp_signalfd_siginfo_size(void) { return sizeof(struct signalfd_siginfo); }

#include <errno.h>
#include <stdlib.h>

_Static_assert(SP_CQE_F_MORE == IORING_CQE_F_MORE, "IORING_CQE_F_MORE");

struct sp_ring {
    struct io_uring ring;
    struct __kernel_timespec timeout;  /* read by the kernel until the timeout completes */
};

sp_ring *sp_ring_create(unsigned entries, int *error) {
    sp_ring *r = calloc(1, sizeof *r);
    if (r == NULL) { *error = ENOMEM; return NULL; }
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int result = io_uring_queue_init_params(entries, &r->ring, &params);
    if (result == -EINVAL) {  // older kernel: a plain ring does the same work
        memset(&params, 0, sizeof params);
        result = io_uring_queue_init_params(entries, &r->ring, &params);
    }
    if (result < 0) { free(r); *error = -result; return NULL; }
    return r;
}

void sp_ring_destroy(sp_ring *r) {
    io_uring_queue_exit(&r->ring);
    free(r);
}

static struct io_uring_sqe *next_sqe(sp_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    for (int tries = 0; sqe == NULL && tries < 16; tries++) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

int sp_ring_accept_multishot(sp_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int sp_ring_recvmsg(sp_ring *r, int fd, struct msghdr *msg, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_recvmsg(sqe, fd, msg, MSG_CMSG_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int sp_ring_sendmsg(sp_ring *r, int fd, const struct msghdr *msg, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int sp_ring_read(sp_ring *r, int fd, void *buffer, unsigned length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_read(sqe, fd, buffer, length, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int sp_ring_timeout(sp_ring *r, unsigned milliseconds, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (sqe == NULL) return -EBUSY;
    r->timeout.tv_sec = milliseconds / 1000;
    r->timeout.tv_nsec = (long long)(milliseconds % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &r->timeout, 0, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int sp_ring_submit_and_wait(sp_ring *r, unsigned wait_for) {
    return io_uring_submit_and_wait(&r->ring, wait_for);
}

int sp_ring_pop(sp_ring *r, uint64_t *user_data, int32_t *result, uint32_t *flags) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(&r->ring, &cqe) != 0 || cqe == NULL) return 0;
    *user_data = cqe->user_data;
    *result = cqe->res;
    *flags = cqe->flags;
    io_uring_cqe_seen(&r->ring, cqe);
    return 1;
}

// ---- merge guard -------------------------------------------------------------------------
#include <sched.h>
#include <stdatomic.h>

static _Atomic uintptr_t guard_start, guard_end;
static _Atomic int guard_active;
static _Atomic uint64_t guard_absorbed;
static struct sigaction guard_previous;
static _Atomic int guard_installed;

// The mergeable ranges of the process, as an immutable array of (start, end) pairs swapped in
// whole. A fault can be delivered after the guard it hit has moved on to another run (the
// scanner is quick, the faulting thread may be preempted): a fault anywhere in mergeable memory
// is therefore retried, not only one in the current guard. Arrays replaced are kept (never
// freed) because a handler may still be reading one; ranges change rarely.
struct guard_ranges { size_t count; uintptr_t pairs[]; };
static struct guard_ranges *_Atomic guard_mergeable;

// A fault that keeps coming back at the same address is not ours (the application protected
// the page itself): after this many retries it goes to the previous handler.
#define GUARD_MAX_RETRIES 100000
static __thread uintptr_t guard_last_address;
static __thread unsigned guard_retries;

// Hands a fault that is not ours to the handler installed before us.
static void chain_signal(const struct sigaction *previous, int signo, siginfo_t *info, void *context) {
    if ((previous->sa_flags & SA_SIGINFO) && previous->sa_sigaction != NULL) {
        previous->sa_sigaction(signo, info, context);
    } else if (previous->sa_handler == SIG_IGN || previous->sa_handler == SIG_DFL) {
        // Re-executing the faulting instruction with the default action kills the process with
        // the signal it would have died of without us.
        signal(signo, SIG_DFL);
    } else {
        previous->sa_handler(signo);
    }
}

static int guard_in_mergeable(uintptr_t address) {
    struct guard_ranges *ranges = atomic_load(&guard_mergeable);
    if (ranges == NULL) return 0;
    for (size_t i = 0; i < ranges->count; i++) {
        if (address >= ranges->pairs[2 * i] && address < ranges->pairs[2 * i + 1]) return 1;
    }
    return 0;
}

// ---- reading mergeable memory in place ----------------------------------------------------
// The scanner hashes the process's pages where they are, without copying them. The application
// may unmap or protect a mergeable page meanwhile; the read then faults, and the handler jumps
// back into sp_hash_pages_in_place, which reports how far it got. Nothing but C runs between the
// sigsetjmp and the fault, so the jump crosses no Swift frame.
#include <setjmp.h>
#include <xxh_x86dispatch.h>

// While a probe runs, every fault of this thread is the probe's: it reads nothing else.
// sigsetjmp(.., 0): no signal mask to save, because the handlers run with SA_NODEFER (the
// fault's signal is never blocked), and saving it would cost a syscall per page.
static __thread sigjmp_buf *_Atomic probe_jump;

static void probe_recover(void) {
    sigjmp_buf *jump = atomic_load(&probe_jump);
    if (jump == NULL) return;
    atomic_store(&probe_jump, NULL);
    siglongjmp(*jump, 1);
}

size_t sp_hash_pages_in_place(const void *start, size_t pages, uint64_t *digests) {
    volatile size_t done = 0;
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0) return done;
    atomic_store(&probe_jump, &jump);
    while (done < pages) {
        digests[done] = XXH3_64bits_withSeed_dispatch((const char *)start + done * 4096, 4096, 0);
        done = done + 1;
    }
    atomic_store(&probe_jump, NULL);
    return done;
}

int sp_pages_equal_in_place(const void *a, const void *b) {
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0) return -1;
    atomic_store(&probe_jump, &jump);
    int equal = memcmp(a, b, 4096) == 0;
    atomic_store(&probe_jump, NULL);
    return equal;
}

size_t sp_copy_pages_in_place(void *destination, const void *source, size_t pages) {
    volatile size_t done = 0;
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0) return done;
    atomic_store(&probe_jump, &jump);
    while (done < pages) {
        memcpy((char *)destination + done * 4096, (const char *)source + done * 4096, 4096);
        done = done + 1;
    }
    atomic_store(&probe_jump, NULL);
    return done;
}

static struct sigaction bus_previous;

static void bus_handler(int signo, siginfo_t *info, void *context) {
    probe_recover();
    chain_signal(&bus_previous, signo, info, context);
}

static void guard_handler(int signo, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    probe_recover();
    // ACCERR: a write into a run write-protected for its merge; MAPERR: an access to a stretch
    // unmapped while the region is mapped into it piece by piece.
    if (info->si_code == SEGV_ACCERR || info->si_code == SEGV_MAPERR) {
        uintptr_t start = atomic_load(&guard_start), end = atomic_load(&guard_end);
        int in_guard = atomic_load(&guard_active) && address >= start && address < end;
        if (in_guard || guard_in_mergeable(address)) {
            if (address != guard_last_address) { guard_last_address = address; guard_retries = 0; }
            if (guard_retries++ < GUARD_MAX_RETRIES) {
                while (atomic_load(&guard_active) && atomic_load(&guard_start) == start && in_guard) sched_yield();
                if (!in_guard) sched_yield();
                atomic_fetch_add(&guard_absorbed, 1);
                return;
            }
        }
    }
    chain_signal(&guard_previous, signo, info, context);
}

void sp_guard_set_mergeable(const uintptr_t *pairs, size_t count) {
    struct guard_ranges *ranges = malloc(sizeof *ranges + 2 * count * sizeof(uintptr_t));
    if (ranges == NULL) return;
    ranges->count = count;
    memcpy(ranges->pairs, pairs, 2 * count * sizeof(uintptr_t));
    atomic_store(&guard_mergeable, ranges);
}

int sp_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&guard_installed, &expected, 1)) return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = guard_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &guard_previous) != 0) {
        atomic_store(&guard_installed, 0);
        return -errno;
    }
    // A private file mapping whose file shrank raises SIGBUS on read: the in-place hash recovers.
    action.sa_sigaction = bus_handler;
    if (sigaction(SIGBUS, &action, &bus_previous) != 0) return -errno;
    return 0;
}

void sp_guard_begin(const void *start, size_t length) {
    atomic_store(&guard_active, 1);
    atomic_store(&guard_end, (uintptr_t)start + length);
    atomic_store(&guard_start, (uintptr_t)start);
}

void sp_guard_end(void) { atomic_store(&guard_active, 0); }

uint64_t sp_guard_absorbed(void) { return atomic_load(&guard_absorbed); }

// ---- reading our own memory without faulting ----------------------------------------------
#include <sys/uio.h>

void *sp_mremap_fixed(void *old_address, size_t length, void *new_address) {
    return mremap(old_address, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, new_address);
}

ssize_t sp_read_own_memory(void *destination, const void *source, size_t length) {
    struct iovec local = { destination, length };
    struct iovec remote = { (void *)source, length };
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

ssize_t sp_write_process_memory(pid_t pid, void *destination, const void *source, size_t length) {
    struct iovec local = { (void *)source, length };
    struct iovec remote = { destination, length };
    return process_vm_writev(pid, &local, 1, &remote, 1, 0);
}

uint64_t sp_touch_read(const void *p) { return *(const volatile uint64_t *)p; }

#include <malloc.h>
int sp_set_mmap_threshold(size_t bytes) { return mallopt(M_MMAP_THRESHOLD, (int)bytes); }

int sp_touch_write(unsigned char *p) {
    volatile unsigned char *v = p;
    unsigned char c = *v;
    *v = c;
    return c;
}

// ---- service wrapper and metrics endpoint ------------------------------------------------
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

int sp_eventfd(unsigned initial) { return eventfd(initial, EFD_CLOEXEC); }

int sp_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

void sp_set_thread_name(const char *name) {
    char shortened[16];
    strncpy(shortened, name, sizeof shortened - 1);
    shortened[sizeof shortened - 1] = 0;
    pthread_setname_np(pthread_self(), shortened);
}

int sp_stat_mode(const char *path, unsigned *mode) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    *mode = st.st_mode;
    return 0;
}
