/// One connected client as the `clients` request reports it, to clients of the same dedup domain
/// only (docs/security.md: a client never learns about other domains).
public struct ClientInfo: Equatable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    /// The name the client sent in hello, made printable (`ClientInfo.printableName`).
    public var name: String
    public var objectsMapped: UInt32
    public var uploadsOpen: UInt32
    /// Pages the client's scanner tracks (its last scan report's `ksm_rmap_items`).
    public var mergeablePages: UInt64
    /// Region-page references the server holds for the client's merged memory.
    public var mergedPages: UInt64
    /// Requests answered on this connection after hello.
    public var requestsServed: UInt64
    /// When the server accepted the client's hello, in seconds since the Unix epoch.
    public var connectedSince: Int64
    /// The connection that asked.
    public var isCaller: Bool

    public init(pid: Int32, uid: UInt32, name: String, objectsMapped: UInt32 = 0, uploadsOpen: UInt32 = 0,
                mergeablePages: UInt64 = 0, mergedPages: UInt64 = 0, requestsServed: UInt64 = 0,
                connectedSince: Int64 = 0, isCaller: Bool = false) {
        self.pid = pid
        self.uid = uid
        self.name = name
        self.objectsMapped = objectsMapped
        self.uploadsOpen = uploadsOpen
        self.mergeablePages = mergeablePages
        self.mergedPages = mergedPages
        self.requestsServed = requestsServed
        self.connectedSince = connectedSince
        self.isCaller = isCaller
    }

    /// Longest name kept, in UTF-8 bytes.
    public static let maxNameBytes = 64
    /// Bytes of an entry with an empty name: the decoder's bound on a claimed count.
    static let minimumEncodedSize = 4 + 4 + 2 + 4 + 4 + 8 + 8 + 8 + 8 + 1

    /// A client chooses its name, and operators print it on their terminals: control and format
    /// characters (escape sequences, bidi overrides) are dropped, and the name is cut to
    /// `maxNameBytes` at a character boundary, so that no client can write to an operator's
    /// screen or make one entry's reply unbounded.
    public static func printableName(_ name: String) -> String {
        var result = String.UnicodeScalarView()
        var bytes = 0
        for scalar in name.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                continue
            default:
                break
            }
            let size = String(scalar).utf8.count
            guard bytes + size <= maxNameBytes else { break }
            bytes += size
            result.append(scalar)
        }
        return String(result)
    }

    func encode(into w: inout WireWriter) {
        w.write(pid)
        w.write(uid)
        w.write(name)
        w.write(objectsMapped)
        w.write(uploadsOpen)
        w.write(mergeablePages)
        w.write(mergedPages)
        w.write(requestsServed)
        w.write(connectedSince)
        w.write(UInt8(isCaller ? 1 : 0))
    }

    init(from r: inout WireReader) throws(ProtocolError) {
        pid = try r.read()
        uid = try r.read()
        name = try r.readString()
        objectsMapped = try r.read()
        uploadsOpen = try r.read()
        mergeablePages = try r.read()
        mergedPages = try r.read()
        requestsServed = try r.read()
        connectedSince = try r.read()
        let caller: UInt8 = try r.read()
        guard caller <= 1 else { throw .badValue("caller flag \(caller)") }
        isCaller = caller == 1
    }
}

/// The answer to `clients`: the domain's connected clients (at most `maxEntries`, oldest
/// connections first) and how many there are in all.
public struct ClientList: Equatable, Sendable {
    public var clients: [ClientInfo]
    public var total: UInt32

    public init(clients: [ClientInfo], total: UInt32? = nil) {
        self.clients = clients
        self.total = total ?? UInt32(clients.count)
    }

    /// Entries that fit in one reply frame whatever their names (each at most `maxNameBytes`).
    public static let maxEntries = (Int(FrameHeader.maxReplyPayload) - 8)
        / (ClientInfo.minimumEncodedSize + ClientInfo.maxNameBytes)

    func encode(into w: inout WireWriter) {
        w.write(total)
        w.write(UInt32(clients.count))
        for client in clients { client.encode(into: &w) }
    }

    init(from r: inout WireReader) throws(ProtocolError) {
        total = try r.read()
        let count: UInt32 = try r.read()
        // A count the payload cannot hold is refused before anything is allocated for it.
        guard Int(count) <= r.remaining / ClientInfo.minimumEncodedSize else { throw .truncated }
        guard count <= total else { throw .badValue("\(count) clients listed of \(total)") }
        clients = []
        clients.reserveCapacity(Int(count))
        for _ in 0..<count { clients.append(try ClientInfo(from: &r)) }
    }
}
