extension Reply {
    /// Calls `body(start, count)` for each run of region pages this reply tells the client to map
    /// or read (runs of an object, pages to merge into, hint pages to compare). The server makes
    /// sure the client has the current fd of every segment they touch before the reply goes out.
    public func forEachRegionRun(_ body: (PageNumber, UInt32) -> Void) {
        switch self {
        case .runs(let runs, _):
            for run in runs where !run.isZero && run.count > 0 { body(run.start, run.count) }
        case .mergeResults(let outcomes, let hints):
            for outcome in outcomes { if let page = outcome.page { body(page, 1) } }
            for hint in hints { body(hint.page, 1) }
        default:
            break
        }
    }
}
