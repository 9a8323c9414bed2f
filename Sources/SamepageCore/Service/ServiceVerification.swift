extension Service {
    /// Recomputes every page's owners from what holds it (object pages, pages of uploads in
    /// progress, merge references of connected clients) and compares them with the store's
    /// counts. A leaked page shows as owners the store has and nothing holds; a missing
    /// reference as the opposite. Empty when all agree.
    public func verify(_ domain: Domain) -> [String] {
        var expected: [PageNumber: UInt32] = [:]
        func hold(_ runs: [PageRun]) {
            for run in runs where !run.isZero {
                for page in run.start..<(run.start + run.count) { expected[page, default: 0] += 1 }
            }
        }
        for object in domain.objects.values { hold(object.runs) }
        for session in domain.sessions.values {
            for upload in session.uploads.values { hold(upload.runs.runs) }
            session.merged.forEach { page, count in expected[page, default: 0] += count }
        }
        var problems: [String] = []
        let store = domain.store
        for page in 0..<store.pageLimit {
            let have = store.owners(of: PageNumber(page)), want = expected[PageNumber(page)] ?? 0
            if have != want { problems.append("page \(page): \(have) owners, \(want) references") }
        }
        for (page, _) in expected where Int(page) >= store.pageLimit {
            problems.append("page \(page) referenced but never stored")
        }
        let inUse = expected.count
        if store.pagesInUse != Int64(inUse) {
            problems.append("\(store.pagesInUse) pages in use, \(inUse) referenced")
        }
        // A region of segments (hardened) frees a segment when its allocated count reaches 0: the
        // count must cover every page in use there, and be exact when no upload holds a
        // placement (pages reserved for a submission under way).
        let allocated = store.allocatedPagesPerSegment
        if !allocated.isEmpty {
            let perSegment = Int(store.backing.segmentPages)
            var used = [UInt32](repeating: 0, count: allocated.count)
            for page in 0..<store.pageLimit where store.owners(of: PageNumber(page)) > 0 { used[page / perSegment] += 1 }
            let uploading = domain.sessions.values.contains { !$0.uploads.isEmpty }
            for (segment, count) in allocated.enumerated()
            where count < used[segment] || (!uploading && count != used[segment]) {
                problems.append("segment \(segment): \(count) pages allocated, \(used[segment]) in use")
            }
        }
        // Unstable entries and promises belong to connected clients, and go with them.
        let promised = domain.sessions.values.reduce(0) { $0 + $1.promisedHashes.count }
        // Every entry is listed under its client, for its leaving (the list may hold more).
        for (id, digests) in domain.unstable.digestsBySession() {
            guard let session = domain.sessions[id] else {
                problems.append("\(digests.count) unstable entries of client \(id), which is not connected")
                continue
            }
            let listed = Set(session.unstableHashes)
            if let missing = digests.first(where: { !listed.contains($0) }) {
                problems.append("client \(id) has an unstable entry under digest \(missing) it does not list")
            }
        }
        if domain.unstable.promiseCount > promised {
            problems.append("\(domain.unstable.promiseCount) promises, \(promised) made by connected clients")
        }
        let allInUse = allDomains.reduce(Int64(0)) { $0 + $1.store.pagesInUse }
        if UInt64(allInUse) != budget.used {
            problems.append("the region budget counts \(budget.used) pages, the domains use \(allInUse)")
        }
        return problems
    }
}
