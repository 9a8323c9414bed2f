// liburing.h defines _XOPEN_SOURCE/_GNU_SOURCE itself; the system headers must come first or the
// Glibc module and this one disagree on fd_set (design.md section 7).
#include <features.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/select.h>
#include <liburing.h>
