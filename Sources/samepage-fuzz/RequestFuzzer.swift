// The request fuzzer: arbitrary bytes as they would arrive on a connection, through the frame
// decoder, the message decoder and the service, as the server runs them (with an in-memory
// region). Built two ways:
//   - normally (`swift build`): `samepage-fuzz FILE...` replays inputs, e.g. crashes found;
//   - for libFuzzer (scripts/fuzz): swiftc -sanitize=fuzzer, with FUZZING defined.
import Glibc
import SamepageCore

/// Memory standing in for a region: what the service writes, nothing else.
final class FuzzRegion: RegionBacking {
    let base: UnsafeMutableRawPointer
    let pageCount: UInt32
    init(pages: UInt32) {
        pageCount = pages
        base = .allocate(byteCount: Int(pages) * Page.size, alignment: Page.size)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: Int(pages) * Page.size)
    }
    deinit { base.deallocate() }

    func release(_ extent: ExtentAllocator.Extent) {
        (base + Int(extent.start) * Page.size).initializeMemory(as: UInt8.self, repeating: 0, count: Int(extent.count) * Page.size)
    }
}

/// One server state for a stretch of inputs (as a long-lived server has), fresh sessions per
/// input: what one input leaves behind is what the next client meets. The state starts over
/// every 1024 inputs, so that what they pile up does not slow the run down.
final class FuzzHarness {
    private(set) var service: Service
    let staging: UnsafeMutableRawPointer
    static let stagingPages = 8

    init() {
        service = Self.makeService()
        staging = .allocate(byteCount: Self.stagingPages * Page.size, alignment: Page.size)
    }

    static func makeService() -> Service {
        let service = Service(regionBytes: 256 * UInt64(Page.size), maxPageSharing: 4) { _ in FuzzRegion(pages: 256) }
        service.selfCheck = true
        return service
    }

    func run(_ bytes: UnsafeRawBufferPointer) {
        if runs % 1024 == 1023 { service = Self.makeService() }
        // The first bytes choose the client's uid (two domains) and fill its staging memory.
        guard bytes.count >= 1 else { return }
        let uid = UInt32(bytes[0] & 1)
        let total = Self.stagingPages * Page.size
        var filled = 0
        while filled < total {
            let n = min(bytes.count, total - filled)
            memcpy(staging + filled, bytes.baseAddress!, n)
            filled += n
        }
        guard let session = try? service.openSession(peer: PeerIdentity(pid: 1, uid: uid, gid: uid)) else { return }
        session.staging = UnsafeRawBufferPointer(start: staging, count: Self.stagingPages * Page.size)
        var decoder = FrameDecoder(maxPayload: FrameHeader.maxRequestPayload)
        decoder.append(UnsafeRawBufferPointer(rebasing: bytes[1...]))
        while let frame = try? decoder.next() {
            guard let request = try? Request.decode(frame) else { break }
            for reply in service.handle(request, session: session) {
                _ = reply.encode(requestID: frame.header.requestID)
            }
        }
        service.close(session)
        // Whatever the input did, the bookkeeping must still add up.
        runs += 1
        for domain in service.allDomains {
            let problems = service.verify(domain)
            precondition(problems.isEmpty, "bookkeeping broken: \(problems.prefix(3))")
            // The full structural check hashes every stored page: every 64 inputs.
            if runs % 64 == 0 { domain.store._checkInvariants() }
        }
    }

    private var runs = 0

    /// Inputs that reach deep into the service, to start fuzzing from: valid request sequences.
    static func seeds() -> [[UInt8]] {
        func frames(_ requests: [Request]) -> [UInt8] {
            var bytes: [UInt8] = [0]
            for (i, request) in requests.enumerated() { bytes += request.encode(requestID: UInt64(i + 1)) }
            return bytes
        }
        let id = ObjectID(high: 1, low: 2)
        return [
            frames([.ping, .stats, .clients]),
            frames([.putBegin(upload: 1, length: 3 * 4096 + 5), .putPages(upload: 1, stagingPage: 0, pageCount: 4), .putCommit(upload: 1)]),
            frames([.putBegin(upload: 1, length: 8192), .putPages(upload: 1, stagingPage: 2, pageCount: 2), .putAbort(upload: 1)]),
            frames([.putBegin(upload: 7, length: 4096), .putPages(upload: 7, stagingPage: 1, pageCount: 1), .putCommit(upload: 7),
                    .map(id), .unmap(handle: 1), .delete(id)]),
            frames([.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [0, 4096, 8192, 12288]),
                    .mergeScan(round: 2, flags: [.useZeroPages], stagingPage: 0, keys: [0, 4096]),
                    .mergeRelease(pages: [0, 1]), .scanReport(ScanReport())]),
            frames([.configure(name: "max_page_sharing", value: 2), .verify]),
            frames([.mergeLookup(round: 1, flags: [], keys: [0, 4096], digests: [PageStore.zeroDigest, 1]),
                    .mergeLookup(round: 1, flags: [.useZeroPages], keys: [8192], digests: [PageStore.zeroDigest]),
                    .mergeScan(round: 1, flags: [], stagingPage: 0, keys: [0, 4096]),
                    .mergeLookup(round: 2, flags: [], keys: [0, 4096, 12288], digests: [1, 1, 1], withdrawn: [MergeWithdrawal(key: 4096, digest: 1), MergeWithdrawal(key: 8192, digest: 2)]),
                    .mergeRelease(pages: [0])]),
        ] + regressions()
    }

    /// Inputs that crashed the server once (found by this fuzzer), kept as seeds and as tests.
    static func regressions() -> [[UInt8]] {
        func frames(_ requests: [Request]) -> [UInt8] {
            var bytes: [UInt8] = [0]
            for (i, request) in requests.enumerated() { bytes += request.encode(requestID: UInt64(i + 1)) }
            return bytes
        }
        var huge = ScanReport()
        huge.pagesScanned = .max
        huge.rmapItems = .max
        huge.zeroPages = .max
        // 2026-11-26: a scan report with counters past Int64.max trapped in statistics().
        return [frames([.scanReport(huge), .stats])]
    }
}

nonisolated(unsafe) let harness = FuzzHarness()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    harness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if FUZZING
// SwiftPM links an executable's entry point under this name; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@_cdecl("samepage_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
#else
@main
struct Replay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            for (index, seed) in FuzzHarness.seeds().enumerated() {
                let file = fopen(arguments[1] + "/seed-\(index)", "wb")
                _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
            }
            return
        }
        for path in arguments {
            guard let file = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n <= 0 { break }
                bytes.append(contentsOf: chunk[0..<n])
            }
            fclose(file)
            bytes.withUnsafeBytes { harness.run($0) }
            print("replayed \(path): ok")
        }
    }
}
#endif
