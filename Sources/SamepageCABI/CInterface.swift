// libsamepage: the C interface (samepage.h), a thin layer over SamepageClient. Every function
// returns 0 or a negative errno; Swift errors never cross into C.
import CSamepageABI
import Glibc
import SamepageClient
import SamepageCore

private func client(_ sp: OpaquePointer?) -> SamepageClient? {
    sp.map { Unmanaged<SamepageClient>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

/// Runs `body`, turning a thrown error into a negative errno.
private func call(_ body: () throws(SamepageError) -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch {
        return -errnoValue(error)
    }
}

/// The errno that describes a Samepage error best.
func errnoValue(_ error: SamepageError) -> Int32 {
    switch error {
    // Whether the socket file is missing (ENOENT) or nobody listens (ECONNREFUSED), the server
    // is not running; ENOENT is kept for an unknown object.
    case .serverNotRunning(_, let errno) where errno == .permissionDenied: return EACCES
    case .serverNotRunning: return ECONNREFUSED
    case .server(let code, _):
        switch code {
        case .badRequest, .badStaging: return EINVAL
        case .unsupportedVersion: return EPROTONOSUPPORT
        case .unknownObject: return ENOENT
        case .unknownHandle: return EBADF
        case .regionFull: return ENOSPC
        case .limitExceeded: return EMFILE
        case .notPermitted: return EBUSY
        case .internalError: return EIO
        }
    case .connectionLost: return EPIPE
    case .system(_, let errno): return errno.rawValue
    case .protocolViolation: return EPROTO
    case .invalidArgument: return EINVAL
    }
}

private func objectID(_ id: UnsafePointer<samepage_id_t>) -> ObjectID {
    var high: UInt64 = 0, low: UInt64 = 0
    withUnsafeBytes(of: id.pointee.bytes) { raw in
        for i in 0..<8 { high = high << 8 | UInt64(raw[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(raw[i]) }
    }
    return ObjectID(high: high, low: low)
}

private func store(_ id: ObjectID, into out: UnsafeMutablePointer<samepage_id_t>) {
    withUnsafeMutableBytes(of: &out.pointee.bytes) { raw in
        for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: id.high >> UInt64(56 - 8 * i)) }
        for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: id.low >> UInt64(56 - 8 * i)) }
    }
}

@_cdecl("samepage_connect")
public func samepage_connect(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return -EINVAL }
    return call { () throws(SamepageError) in
        let client = try SamepageClient(socketPath: path.map { String(cString: $0) }, name: "libsamepage")
        out.pointee = OpaquePointer(Unmanaged.passRetained(client).toOpaque())
    }
}

@_cdecl("samepage_disconnect")
public func samepage_disconnect(_ sp: OpaquePointer?) {
    guard let sp else { return }
    Unmanaged<SamepageClient>.fromOpaque(UnsafeRawPointer(sp)).release()
}

@_cdecl("samepage_put")
public func samepage_put(_ sp: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: Int,
                         _ out: UnsafeMutablePointer<samepage_id_t>?) -> Int32 {
    guard let client = client(sp), let out, data != nil || length == 0 else { return -EINVAL }
    return call { () throws(SamepageError) in
        let id = try client.put(UnsafeRawBufferPointer(start: data, count: length))
        store(id, into: out)
    }
}

@_cdecl("samepage_buffer_create")
public func samepage_buffer_create(_ sp: OpaquePointer?, _ length: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                   _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    guard let client = client(sp), let out, let data, length >= 0 else { return -EINVAL }
    return call { () throws(SamepageError) in
        let buffer = try client.makeBuffer(length: length)
        data.pointee = buffer.bytes.baseAddress
        out.pointee = OpaquePointer(Unmanaged.passRetained(buffer).toOpaque())
    }
}

@_cdecl("samepage_put_buffer")
public func samepage_put_buffer(_ sp: OpaquePointer?, _ buffer: OpaquePointer?, _ length: Int,
                                _ out: UnsafeMutablePointer<samepage_id_t>?) -> Int32 {
    guard let client = client(sp), let buffer, let out else { return -EINVAL }
    let shared = Unmanaged<SharedBuffer>.fromOpaque(UnsafeRawPointer(buffer)).takeUnretainedValue()
    return call { () throws(SamepageError) in store(try client.put(shared, length: length), into: out) }
}

@_cdecl("samepage_buffer_free")
public func samepage_buffer_free(_ buffer: OpaquePointer?) {
    guard let buffer else { return }
    Unmanaged<SharedBuffer>.fromOpaque(UnsafeRawPointer(buffer)).release()
}

@_cdecl("samepage_map")
public func samepage_map(_ sp: OpaquePointer?, _ id: UnsafePointer<samepage_id_t>?, _ flags: Int32,
                         _ address: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let client = client(sp), let id, let address, let length,
          flags == SAMEPAGE_MAP_READONLY || flags == SAMEPAGE_MAP_COPY_ON_WRITE else { return -EINVAL }
    return call { () throws(SamepageError) in
        let mapping = try client.map(objectID(id), mode: flags == SAMEPAGE_MAP_READONLY ? .readOnly : .copyOnWrite)
        length.pointee = mapping.length
        address.pointee = mapping.detach()
    }
}

@_cdecl("samepage_unmap")
public func samepage_unmap(_ sp: OpaquePointer?, _ address: UnsafeMutableRawPointer?, _ length: Int) -> Int32 {
    guard let client = client(sp), let address else { return -EINVAL }
    _ = length
    return call { () throws(SamepageError) in try client.unmap(address: address) }
}

@_cdecl("samepage_delete")
public func samepage_delete(_ sp: OpaquePointer?, _ id: UnsafePointer<samepage_id_t>?) -> Int32 {
    guard let client = client(sp), let id else { return -EINVAL }
    return call { () throws(SamepageError) in try client.delete(objectID(id)) }
}

@_cdecl("samepage_madvise")
public func samepage_madvise(_ sp: OpaquePointer?, _ address: UnsafeMutableRawPointer?, _ length: Int, _ advice: Int32) -> Int32 {
    guard let client = client(sp), let address else { return -EINVAL }
    let kind: SamepageClient.MergeAdvice
    switch advice {
    case SAMEPAGE_MADV_MERGEABLE: kind = .mergeable
    case SAMEPAGE_MADV_UNMERGEABLE: kind = .unmergeable
    default: return -EINVAL
    }
    return call { () throws(SamepageError) in try client.advise(address, length: length, kind) }
}

@_cdecl("samepage_set_memory_merge")
public func samepage_set_memory_merge(_ sp: OpaquePointer?, _ on: Int32) -> Int32 {
    guard let client = client(sp), on == 0 || on == 1 else { return -EINVAL }
    return call { () throws(SamepageError) in try client.setMemoryMerge(on == 1) }
}

@_cdecl("samepage_get_memory_merge")
public func samepage_get_memory_merge(_ sp: OpaquePointer?) -> Int32 {
    guard let client = client(sp) else { return -EINVAL }
    return client.memoryMerge ? 1 : 0
}

@_cdecl("samepage_alloc")
public func samepage_alloc(_ sp: OpaquePointer?, _ length: Int) -> UnsafeMutableRawPointer? {
    guard let client = client(sp) else {
        errno = EINVAL
        return nil
    }
    do {
        return try client.allocate(length)
    } catch {
        errno = errnoValue(error)
        return nil
    }
}

@_cdecl("samepage_free")
public func samepage_free(_ sp: OpaquePointer?, _ address: UnsafeMutableRawPointer?, _ length: Int) {
    guard let client = client(sp), let address else { return }
    try? client.free(address, length: length)
}

@_cdecl("samepage_scan")
public func samepage_scan(_ sp: OpaquePointer?, _ fullScans: UInt32) -> Int32 {
    guard let client = client(sp) else { return -EINVAL }
    return call { () throws(SamepageError) in try client.scan(fullScans: Int(fullScans)) }
}

@_cdecl("samepage_set_param")
public func samepage_set_param(_ sp: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ value: UInt64) -> Int32 {
    guard let client = client(sp), let name else { return -EINVAL }
    return call { () throws(SamepageError) in try client.setMergeParameter(String(cString: name), value) }
}

@_cdecl("samepage_stats")
public func samepage_stats(_ sp: OpaquePointer?, _ out: UnsafeMutablePointer<samepage_stats_t>?) -> Int32 {
    guard let client = client(sp), let out else { return -EINVAL }
    return call { () throws(SamepageError) in
        let stats = Dictionary(try client.statistics().map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        var s = samepage_stats_t()
        s.pages_shared = stats["pages_shared"] ?? 0
        s.pages_sharing = stats["pages_sharing"] ?? 0
        s.pages_unshared = stats["pages_unshared"] ?? 0
        s.pages_volatile = stats["pages_volatile"] ?? 0
        s.pages_scanned = stats["pages_scanned"] ?? 0
        s.pages_skipped = stats["pages_skipped"] ?? 0
        s.full_scans = stats["full_scans"] ?? 0
        s.stable_node_chains = stats["stable_node_chains"] ?? 0
        s.stable_node_dups = stats["stable_node_dups"] ?? 0
        s.ksm_zero_pages = stats["ksm_zero_pages"] ?? 0
        s.general_profit = stats["general_profit"] ?? 0
        out.pointee = s
    }
}

@_cdecl("samepage_process_stats")
public func samepage_process_stats(_ sp: OpaquePointer?, _ out: UnsafeMutablePointer<samepage_process_stats_t>?) -> Int32 {
    guard let client = client(sp), let out else { return -EINVAL }
    let stats = client.processStatistics()
    var s = samepage_process_stats_t()
    s.ksm_rmap_items = Int64(stats.rmapItems)
    s.ksm_zero_pages = Int64(stats.zeroPages)
    s.ksm_merging_pages = Int64(stats.mergingPages)
    s.ksm_process_profit = Int64(stats.processProfit)
    s.ksm_merge_any = stats.mergeAny ? 1 : 0
    out.pointee = s
    return 0
}

@_cdecl("samepage_strerror")
public func samepage_strerror(_ err: Int32) -> UnsafePointer<CChar> {
    let code = err < 0 ? -err : err
    switch code {
    case 0: return staticString("success")
    case ENOENT: return staticString("unknown object")
    case ENOSPC: return staticString("region full")
    case EBADF: return staticString("unknown handle or mapping")
    case EPIPE: return staticString("connection to samepaged lost")
    case ECONNREFUSED: return staticString("samepaged is not running at that socket")
    case EPROTO: return staticString("protocol violation")
    case EBUSY: return staticString("not permitted now (max_page_sharing changes only while no pages are stored)")
    case EMFILE: return staticString("limit exceeded")
    default: return UnsafePointer(strerror(code))
    }
}

private func staticString(_ text: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
