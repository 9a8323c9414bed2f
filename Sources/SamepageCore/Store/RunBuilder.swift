/// Collects the pages of an object in order and keeps them as runs: consecutive region pages
/// (or consecutive zero pages) become one run, which is one `mmap` for the client.
public struct RunBuilder: Sendable {
    public private(set) var runs: [PageRun] = []
    public private(set) var pageCount: UInt64 = 0

    public init() {}

    public mutating func append(_ page: PageNumber) {
        append(PageRun(start: page, count: 1))
    }

    public mutating func appendZero() {
        append(PageRun(start: PageRun.zeroStart, count: 1))
    }

    public mutating func append(_ run: PageRun) {
        pageCount += UInt64(run.count)
        if var last = runs.last, last.count <= UInt32.max - run.count,
           (last.isZero && run.isZero) || (!last.isZero && !run.isZero && UInt64(last.start) + UInt64(last.count) == UInt64(run.start)) {
            last.count += run.count
            runs[runs.count - 1] = last
        } else {
            runs.append(run)
        }
    }
}
