extension Service {
    /// The clients connected in the caller's dedup domain, oldest connection first. Only the
    /// caller's domain: pids, uids and names of other domains' clients are theirs alone
    /// (docs/security.md), as are their figures.
    public func clientList(for caller: Session) -> ClientList {
        let sessions = caller.domain.sessions.values.sorted { $0.id < $1.id }
        let shown = sessions.prefix(ClientList.maxEntries).map { session in
            ClientInfo(pid: session.peer.pid, uid: session.peer.uid, name: session.clientName,
                       objectsMapped: UInt32(clamping: session.mappingCount),
                       uploadsOpen: UInt32(clamping: session.uploadCount),
                       mergeablePages: session.scanReport?.rmapItems ?? 0,
                       mergedPages: UInt64(session.mergedReferences),
                       requestsServed: session.requestsServed,
                       connectedSince: session.connectedSince,
                       isCaller: session === caller)
        }
        return ClientList(clients: Array(shown), total: UInt32(clamping: sessions.count))
    }
}
