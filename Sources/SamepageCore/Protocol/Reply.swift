/// What the server answers, one reply per request and in request order. A `map` is answered by
/// `mapped` followed by `runs` frames until one has `more == false`.
public enum Reply: Equatable, Sendable {
    /// Answers `hello`. The region is `regionBytes` long, made of `segmentBytes`-long segments
    /// (one segment unless the server runs `--hardened`), each a memfd of its own.
    case welcome(version: UInt32, regionBytes: UInt64, pageSize: UInt32, segmentBytes: UInt64)
    case pong
    case done
    case committed(ObjectID)
    case mapped(handle: UInt32, length: UInt64, runCount: UInt32)
    case runs([PageRun], more: Bool)
    case statistics([Statistic])
    /// Answers `mergeScan`: one outcome per candidate, and merges the server asks of pages this
    /// client submitted earlier (the other half of a pair found in the unstable tree).
    case mergeResults([MergeOutcome], hints: [MergeHint])
    /// Answers `clients`: the clients of the caller's dedup domain.
    case clientList(ClientList)
    case failure(ErrorCode, String)
    /// Not an answer: pushed before the reply it precedes (same request id). With `attached`, it
    /// carries the read-only fd of segment `index` in its `generation` as SCM_RIGHTS: the reply
    /// that follows names pages in it. Without, the client's copy of that segment is out of date
    /// (the server retired it): the client drops its fd and mappings of it.
    case segment(index: UInt32, generation: UInt32, attached: Bool)

    /// Runs that fit in one reply frame.
    public static let runsPerFrame = Int(FrameHeader.maxReplyPayload - 8) / 8

    public var kind: MessageKind {
        switch self {
        case .welcome: .welcome
        case .pong: .pong
        case .done: .done
        case .committed: .committed
        case .mapped: .mapped
        case .runs: .runs
        case .statistics: .statistics
        case .mergeResults: .mergeResults
        case .clientList: .clientList
        case .failure: .failure
        case .segment: .segment
        }
    }

    public func encode(requestID: UInt64) -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .welcome(let version, let regionBytes, let pageSize, let segmentBytes):
            w.write(version)
            w.write(regionBytes)
            w.write(pageSize)
            w.write(segmentBytes)
        case .segment(let index, let generation, let attached):
            w.write(index)
            w.write(generation)
            w.write(UInt32(attached ? 1 : 0))
        case .pong, .done:
            break
        case .committed(let id):
            w.write(id)
        case .mapped(let handle, let length, let runCount):
            w.write(handle)
            w.write(length)
            w.write(runCount)
        case .runs(let runs, let more):
            w.write(UInt32(runs.count))
            w.write(UInt32(more ? 1 : 0))
            for run in runs {
                w.write(run.start)
                w.write(run.count)
            }
        case .statistics(let stats):
            w.write(UInt16(stats.count))
            for stat in stats {
                w.write(stat.name)
                w.write(stat.value)
            }
        case .mergeResults(let outcomes, let hints):
            w.write(UInt32(outcomes.count))
            w.write(count: outcomes.count) { outcomes[$0].rawValue }
            w.write(UInt32(hints.count))
            for hint in hints {
                w.write(hint.key)
                w.write(hint.page)
            }
        case .clientList(let list):
            list.encode(into: &w)
        case .failure(let code, let message):
            w.write(code.rawValue)
            w.write(message)
        }
        return FrameEncoder.encode(kind: kind.rawValue, requestID: requestID, payload: w.bytes)
    }

    public static func decode(_ frame: Frame) throws(ProtocolError) -> Reply {
        guard let kind = MessageKind(rawValue: frame.header.kind), kind.isReply else {
            throw .unknownKind(frame.header.kind)
        }
        var r = WireReader(frame.payload)
        let reply: Reply
        switch kind {
        case .welcome:
            reply = .welcome(version: try r.read(), regionBytes: try r.read(), pageSize: try r.read(), segmentBytes: try r.read())
        case .segment:
            let index: UInt32 = try r.read()
            let generation: UInt32 = try r.read()
            let attached: UInt32 = try r.read()
            guard attached <= 1 else { throw .badValue("segment flag \(attached)") }
            reply = .segment(index: index, generation: generation, attached: attached == 1)
        case .pong: reply = .pong
        case .done: reply = .done
        case .committed: reply = .committed(try r.readObjectID())
        case .mapped: reply = .mapped(handle: try r.read(), length: try r.read(), runCount: try r.read())
        case .runs:
            let count: UInt32 = try r.read()
            let more: UInt32 = try r.read()
            guard Int(count) <= r.remaining / 8 else { throw .truncated }
            var runs: [PageRun] = []
            runs.reserveCapacity(Int(count))
            for _ in 0..<count { runs.append(PageRun(start: try r.read(), count: try r.read())) }
            reply = .runs(runs, more: more != 0)
        case .statistics:
            let count: UInt16 = try r.read()
            var stats: [Statistic] = []
            for _ in 0..<count { stats.append(Statistic(name: try r.readString(), value: try r.read())) }
            reply = .statistics(stats)
        case .mergeResults:
            let count: UInt32 = try r.read()
            guard Int(count) <= r.remaining / 4 else { throw .truncated }
            var outcomes: [MergeOutcome] = []
            outcomes.reserveCapacity(Int(count))
            for _ in 0..<count { outcomes.append(MergeOutcome(rawValue: try r.read())) }
            let hintCount: UInt32 = try r.read()
            guard Int(hintCount) <= r.remaining / 12 else { throw .truncated }
            var hints: [MergeHint] = []
            for _ in 0..<hintCount { hints.append(MergeHint(key: try r.read(), page: try r.read())) }
            reply = .mergeResults(outcomes, hints: hints)
        case .clientList: reply = .clientList(try ClientList(from: &r))
        case .failure:
            let raw: UInt16 = try r.read()
            reply = .failure(ErrorCode(rawValue: raw) ?? .internalError, try r.readString())
        default: throw .unknownKind(frame.header.kind)
        }
        try r.expectEnd()
        return reply
    }
}

/// One named statistic. Values are signed because `general_profit` can be negative.
public struct Statistic: Equatable, Sendable {
    public var name: String
    public var value: Int64

    public init(name: String, value: Int64) {
        self.name = name
        self.value = value
    }
}

/// Why a request failed. The connection stays open for all of these; only protocol violations
/// (malformed frames) close it.
public enum ErrorCode: UInt16, Sendable, Equatable {
    case badRequest = 1
    case unsupportedVersion = 2
    case unknownObject = 3
    case unknownHandle = 4
    case regionFull = 5
    case limitExceeded = 6
    case notPermitted = 7
    case badStaging = 8
    case internalError = 99
}

/// What became of one merge candidate.
public struct MergeOutcome: Equatable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Map region page `page` over the candidate (the server holds a reference for this client).
    public static func merge(_ page: PageNumber) -> MergeOutcome { MergeOutcome(rawValue: page) }
    /// The page is all zeros: give it back to the kernel (MADV_DONTNEED), no region page needed.
    public static let zero = MergeOutcome(rawValue: .max)
    /// Nothing equal yet: the candidate waits in the unstable tree.
    public static let unstable = MergeOutcome(rawValue: .max - 1)
    /// (Answering `mergeLookup`.) Another page with this digest waits in the unstable tree: send
    /// this page's bytes with `mergeScan`, so the pair can become a stable page.
    public static let needContent = MergeOutcome(rawValue: .max - 2)

    public var page: PageNumber? { rawValue < .max - 2 ? rawValue : nil }

    public var description: String {
        switch self {
        case .zero: "zero"
        case .unstable: "unstable"
        case .needContent: "needContent"
        default: "merge(\(rawValue))"
        }
    }
}

/// A merge the server asks of a page the client submitted in an earlier request: its pair has
/// been stored as region page `page` (the server holds a reference for this client).
public struct MergeHint: Equatable, Sendable {
    public var key: UInt64
    public var page: PageNumber
    public init(key: UInt64, page: PageNumber) {
        self.key = key
        self.page = page
    }
}
