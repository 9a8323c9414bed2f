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
            for (page, count) in session.merged { expected[page, default: 0] += count }
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
        let allInUse = allDomains.reduce(Int64(0)) { $0 + $1.store.pagesInUse }
        if UInt64(allInUse) != budget.used {
            problems.append("the region budget counts \(budget.used) pages, the domains use \(allInUse)")
        }
        return problems
    }
}
