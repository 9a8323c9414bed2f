import CSamepageShim
import Glibc
import SamepageClient
import SamepageSystem

/// `samepage-probe attack SOCKET`: everything a client can try against the region fd it was
/// given, to change what other clients see. Prints "refused NAME: errno" for each attempt that
/// failed, "ALLOWED NAME" for one that succeeded, then "done". A write into a private
/// (copy-on-write) mapping is allowed by design: it changes only this process's copy.
func runAttackProbe(_ args: [String]) -> Never {
    guard args.count == 1 else { die("usage: samepage-probe attack SOCKET") }
    do {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-attack")
        let fd = client.regionFileDescriptor
        let length = 1 << 20
        func report(_ name: String, _ result: Int) {
            say(result < 0 ? "refused \(name): \(errno)" : "ALLOWED \(name)")
        }
        report("reopen read-write through /proc/self/fd", Int(open("/proc/self/fd/\(fd)", O_RDWR)))
        report("ftruncate", Int(ftruncate(fd, 0)))
        report("punch a hole", Int(sp_punch_hole(fd, 0, off_t(length))))
        var byte: UInt8 = 0x66
        report("write", write(fd, &byte, 1))
        report("pwrite", pwrite(fd, &byte, 1, 0))
        let shared = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        report("mmap shared writable", shared == MAP_FAILED ? -1 : 0)
        let readOnly = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
        if readOnly != MAP_FAILED, let readOnly {
            report("mprotect a shared mapping writable", Int(mprotect(readOnly, length, PROT_READ | PROT_WRITE)))
            report("madvise remove (punch) through a mapping", Int(madvise(readOnly, length, MADV_REMOVE)))
        }
        report("add a seal", Int(sp_add_seals(fd, SP_F_SEAL_WRITE)))
        report("grow", Int(ftruncate(fd, off_t(1) << 40)))
        // Copy-on-write: allowed, and private.
        if let cow = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), cow != MAP_FAILED {
            memset(cow, 0x77, length)
            say("private copy written")
        }
        say("done")
        exit(0)
    } catch {
        die("\(error)")
    }
}
