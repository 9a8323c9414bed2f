import Glibc
import SamepageClient
import SamepageCore

/// `samepage-probe chaos SOCKET SEED [OPERATIONS]`: mixed requests (forever, or OPERATIONS of
/// them, then "done"), at random (puts of pages from a
/// small pool so that they share, maps read-only and copy-on-write, unmaps, deletes, mergeable
/// memory scanned and written and unmerged, statistics). Says "running" once connected. Tests
/// kill it at random points and then check that the server's bookkeeping holds.
func runChaosProbe(_ args: [String]) -> Never {
    guard args.count == 2 || args.count == 3, let seed = UInt64(args[1]) else {
        die("usage: samepage-probe chaos SOCKET SEED [OPERATIONS]")
    }
    let operations = args.count == 3 ? Int(args[2]) ?? 0 : Int.max
    var state = seed | 1
    func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((state >> 33) % UInt64(bound))
    }
    do {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-chaos", stagingBytes: 4 << 20)
        try client.setMergeParameter("run", 0)
        say("running")
        var ids: [ObjectID] = []
        var mapped: [UnsafeMutableRawPointer] = []
        let mergePages = 64
        let memory = try client.allocate(mergePages * 4096)
        for page in 0..<mergePages { PseudoRandomPages.fill(memory + page * 4096, content: UInt64(page % 8), seed: 3) }
        var mergeable = false
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 256 * 4096, alignment: 4096)
        var done = 0
        while done < operations {
            done += 1
            switch next(10) {
            case 0, 1, 2:
                let pages = 1 + next(256)
                for page in 0..<pages { PseudoRandomPages.fill(buffer + page * 4096, content: UInt64(next(64)), seed: 5) }
                let id = try client.put(UnsafeRawBufferPointer(start: buffer, count: pages * 4096 - next(4096)))
                ids.append(id)
                if ids.count > 16 { try client.delete(ids.removeFirst()) }
            case 3, 4:
                guard !ids.isEmpty else { continue }
                let mapping = try client.map(ids[next(ids.count)], mode: next(2) == 0 ? .readOnly : .copyOnWrite)
                if mapping.mode == .copyOnWrite, mapping.length > 0 { mapping.mutableBytes[0] = 1 }
                mapped.append(mapping.detach())
                if mapped.count > 8 { try client.unmap(address: mapped.removeFirst()) }
            case 5:
                guard !ids.isEmpty else { continue }
                try client.delete(ids.remove(at: next(ids.count)))
            case 6, 7:
                if !mergeable {
                    try client.advise(memory, length: mergePages * 4096, .mergeable)
                    mergeable = true
                }
                try client.scan(fullScans: 1)
                if next(3) == 0 { (memory + next(mergePages) * 4096).storeBytes(of: UInt8(next(256)), as: UInt8.self) }
            case 8:
                if mergeable {
                    try client.advise(memory, length: mergePages * 4096, .unmergeable)
                    mergeable = false
                }
            default:
                _ = try client.statistics()
            }
        }
        for address in mapped { try client.unmap(address: address) }
        if mergeable { try client.advise(memory, length: mergePages * 4096, .unmergeable) }
        say("done")
        exit(0)
    } catch {
        die("\(error)")
    }
}
