import CSamepageShim
import Glibc
import SamepageClient
import SamepageCore
import SamepageSystem

/// `samepage-probe attack SOCKET [OBJECT_ID]`: everything a client can try against the region
/// fd it was given, to change what other clients see. Prints "refused NAME: errno" for each
/// attempt that failed, "ALLOWED NAME" for one that succeeded, then "done". A write into a
/// private (copy-on-write) mapping is allowed by design: it changes only this process's copy.
///
/// With OBJECT_ID (a hardened server, whose region is several segment memfds: there is no one
/// region fd), the probe maps that object and attacks the segment fd it was sent, found the way
/// any process would, in /proc/self/fd. When reopening the file read-write succeeds (a client
/// of the server's own uid, or root), every write attempt is repeated on the reopened fd.
func runAttackProbe(_ args: [String]) -> Never {
    guard args.count == 1 || args.count == 2 else { die("usage: samepage-probe attack SOCKET [OBJECT_ID]") }
    do {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-attack")
        var fd = client.regionFileDescriptor
        var keep: ObjectMapping?
        if args.count == 2 {
            guard let id = ObjectID(args[1]) else { die("not an object id: \(args[1])") }
            keep = try client.map(id)
            fd = findRegionDescriptor()
        }
        guard fd >= 0 else { die("no region fd to attack") }
        let length = 1 << 20
        func report(_ name: String, _ result: Int) {
            say(result < 0 ? "refused \(name): \(errno)" : "ALLOWED \(name)")
        }
        report("make the file writable (fchmod 0660)", Int(fchmod(fd, 0o660)))
        let reopened = open("/proc/self/fd/\(fd)", O_RDWR)
        report("reopen read-write through /proc/self/fd", Int(reopened))
        attackWrites(fd, length: length, prefix: "", report)
        if reopened >= 0 { attackWrites(reopened, length: length, prefix: "reopened: ", report) }
        // Copy-on-write: allowed, and private.
        if let cow = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), cow != MAP_FAILED {
            memset(cow, 0x77, length)
            say("private copy written")
        }
        _ = keep
        say("done")
        exit(0)
    } catch {
        die("\(error)")
    }
}

private func attackWrites(_ fd: Int32, length: Int, prefix: String, _ report: (String, Int) -> Void) {
    report(prefix + "ftruncate", Int(ftruncate(fd, 0)))
    report(prefix + "punch a hole", Int(sp_punch_hole(fd, 0, off_t(length))))
    var byte: UInt8 = 0x66
    report(prefix + "write", write(fd, &byte, 1))
    report(prefix + "pwrite", pwrite(fd, &byte, 1, 0))
    let shared = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if let shared, shared != MAP_FAILED { memset(shared, 0x66, length) }
    report(prefix + "mmap shared writable", shared == MAP_FAILED ? -1 : 0)
    let readOnly = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
    if readOnly != MAP_FAILED, let readOnly {
        let protected = mprotect(readOnly, length, PROT_READ | PROT_WRITE)
        if protected == 0 { memset(readOnly, 0x66, length) }
        report(prefix + "mprotect a shared mapping writable", Int(protected))
        report(prefix + "madvise remove (punch) through a mapping", Int(madvise(readOnly, length, MADV_REMOVE)))
    }
    report(prefix + "add a seal", Int(sp_add_seals(fd, SP_F_SEAL_WRITE)))
    report(prefix + "grow", Int(ftruncate(fd, off_t(1) << 40)))
}

/// The first region segment memfd among this process's fds.
private func findRegionDescriptor() -> Int32 {
    for fd in Int32(3)..<Int32(1024) {
        var target = [UInt8](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        guard n > 0 else { continue }
        if String(decoding: target[0..<max(0, n)], as: UTF8.self).hasPrefix("/memfd:samepage-region-") { return fd }
    }
    return -1
}
