/// Who may connect, and which processes share pages: the server's security configuration, as
/// pure logic (the event loop applies it to SO_PEERCRED credentials).
public struct AccessPolicy: Sendable, Equatable {
    /// Peers whose uid is here may connect.
    public var allowedUIDs: Set<UInt32>
    /// Peers whose primary gid is here may connect.
    public var allowedGIDs: Set<UInt32>
    /// Named dedup domains: uid -> domain name. A uid not listed is a domain of its own.
    public var domainOfUID: [UInt32: String]

    /// Only `serverUID` may connect; one domain per uid.
    public init(serverUID: UInt32, allowedUIDs: Set<UInt32> = [], allowedGIDs: Set<UInt32> = [], domains: [String: [UInt32]] = [:]) {
        self.allowedUIDs = allowedUIDs.union([serverUID])
        self.allowedGIDs = allowedGIDs
        var byUID: [UInt32: String] = [:]
        for (name, uids) in domains {
            for uid in uids { byUID[uid] = name }
        }
        self.domainOfUID = byUID
    }

    public func permits(_ peer: PeerIdentity) -> Bool {
        allowedUIDs.contains(peer.uid) || allowedGIDs.contains(peer.gid)
    }

    /// The dedup domain of a peer: a named group it belongs to, else its own uid's.
    public func domain(of peer: PeerIdentity) -> String {
        domainOfUID[peer.uid].map { "domain:" + $0 } ?? "uid:\(peer.uid)"
    }

    /// Parses `NAME=uid,uid,...` (a `--domain` option); nil when malformed.
    public static func parseDomain(_ text: String) -> (name: String, uids: [UInt32])? {
        let parts = text.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty,
              parts[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else { return nil }
        var uids: [UInt32] = []
        for field in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
            guard let uid = UInt32(field) else { return nil }
            uids.append(uid)
        }
        return uids.isEmpty ? nil : (String(parts[0]), uids)
    }
}
