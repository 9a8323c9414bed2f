// Mergeable memory, server side: the stable/unstable tree search for candidates that clients'
// scanners submit, and the references that merged pages hold.
//
// A client's scanner submits pages whose checksum did not change since its previous scan (KSM's
// volatility rule is applied on the client, which can read its memory). It submits them by
// digest first (`mergeLookup`, 16 bytes a page, see PageStore+Digests.swift):
//   1. the zero page's digest (use_zero_pages) -> `.zero`: the client checks the page is zeros and
//      discards it (MADV_DONTNEED), no region page;
//   2. a stored page filed under the digest  -> `.merge(p)` with a reference taken for the client,
//      which compares its page with p before it maps p (a wrong digest only fails that compare);
//   3. an unstable entry of another page has the digest -> `.needContent`: the client sends the
//      bytes (`mergeScan`) and the pair is made there; until its next request, the client holds
//      the digest's promise, and another client's page of that digest is filed as an entry
//      (`.unstable`) rather than asked for bytes that would only repeat the first's;
//   4. otherwise -> `.unstable`: filed in the unstable tree (by digest) until a partner comes,
//      the client withdraws it (`withdrawn`: its page changed or went away), or the client leaves.
// With `.stableOnly` (pages read for the first time or changed since the last scan, which KSM
// still searches its stable tree for) only step 2 applies; anything else is `.unstable`, unfiled.
// With the bytes (`mergeScan`), copied into memory the server owns:
//   1. all zeros           -> `.zero`;
//   2. equal stored page   -> `.merge(p)` with a reference taken for the client (stable tree);
//   3. its digest equal to an unstable entry of another page -> the candidate is stored as a new
//      stable page p; the submitter gets `.merge(p)`, the other page's owner a hint to merge with
//      p, each with a reference taken for it, and so does the owner of every further entry of the
//      digest (up to max_page_sharing). The other owners check equality with memcmp before
//      mapping.
//   4. otherwise           -> `.unstable`.
// Pages stored or shared here are filed by digest, so later lookups find them.
// A reference taken for a client is dropped by `mergeRelease` (unmerge, broken COW, a merge the
// client could not complete) or when the client goes away.

extension Service {
    /// The most candidates one `mergeScan` may carry.
    public static let maxMergeBatch = 4096
    /// The most hints one `mergeResults` carries, so that a reply with a full batch of outcomes
    /// stays within `FrameHeader.maxReplyPayload`; further hints wait for the next scan request.
    public static let maxHintsPerReply = (Int(FrameHeader.maxReplyPayload) - 8 - 4 * maxMergeBatch) / 12

    func mergeScan(flags: MergeFlags, stagingPage: UInt32, keys: [UInt64], session: Session) throws(RequestFailure) -> [Reply] {
        guard let staging = session.staging else { throw RequestFailure(.badStaging, "no staging memory") }
        let stagingPages = staging.count / Page.size
        guard keys.count <= Self.maxMergeBatch else {
            throw limitReached(.scanBatch, session, "more than \(Self.maxMergeBatch) candidates in one scan request")
        }
        guard Int(stagingPage) + keys.count <= stagingPages else {
            throw RequestFailure(.badRequest, "candidates \(stagingPage)+\(keys.count) outside the staging memory (\(stagingPages) pages)")
        }
        let domain = session.domain
        let store = domain.store
        try beginScanRequest(candidates: keys.count, withdrawn: [], session: session)
        var outcomes: [MergeOutcome] = []
        outcomes.reserveCapacity(keys.count)
        var hints = session.pendingHints
        session.pendingHints = []
        var placement: PageStore.Placement?
        defer { store.finish(&placement) }
        let source = staging.baseAddress! + Int(stagingPage) * Page.size
        for (index, key) in keys.enumerated() {
            let (content, hash) = store.copyToScratch(source + index * Page.size)
            if flags.contains(.useZeroPages), store.hasher.isZero(content, hash: hash) {
                outcomes.append(.zero)
                continue
            }
            let found = store.share(content, hash: hash)
            if let page = found.page {
                store.fileDigest(page)
                session.merged.add(1, to: page)
                outcomes.append(.merge(page))
                continue
            }
            let digest = PageStore.digest(content)
            let me = UnstableTree.Entry(session: session.id, key: key)
            if let partner = domain.unstable.takePartner(hash: digest, excluding: me) {
                let page: PageNumber
                do {
                    page = try store.insert(content, hash: hash, copies: found.copies, placement: &placement,
                                            wantedAhead: UInt64(keys.count - index), readAgain: false)
                } catch {
                    // Region full: nothing merges; both stay candidates.
                    if let owner = partner.session == session.id ? session : domain.sessions[partner.session] {
                        fileUnstable(partner, digest: digest, session: owner)
                    }
                    fileUnstable(me, digest: digest, session: session)
                    outcomes.append(.unstable)
                    continue
                }
                store.fileDigest(page, digest: digest)
                session.merged.add(1, to: page)
                outcomes.append(.merge(page))
                // The partner, then every other page filed under the digest: they waited for
                // these bytes (see UnstableTree's promises).
                var waiter: UnstableTree.Entry? = partner
                while let entry = waiter {
                    if let owner = entry.session == session.id ? session : domain.sessions[entry.session] {
                        store.addOwner(page)
                        owner.merged.add(1, to: page)
                        let hint = MergeHint(key: entry.key, page: page)
                        if owner === session { hints.append(hint) } else { owner.pendingHints.append(hint) }
                    }
                    guard store.owners(of: page) < store.maxPageSharing else { break }
                    waiter = domain.unstable.takePartner(hash: digest, excluding: me)
                }
                continue
            }
            fileUnstable(me, digest: digest, session: session)
            outcomes.append(.unstable)
        }
        return [.mergeResults(outcomes, hints: takeHints(hints, session: session))]
    }

    func mergeLookup(round: UInt32, flags: MergeFlags, keys: [UInt64], digests: [UInt64], withdrawn: [MergeWithdrawal],
                     session: Session) throws(RequestFailure) -> [Reply] {
        guard keys.count <= Self.maxMergeBatch else {
            throw limitReached(.scanBatch, session, "more than \(Self.maxMergeBatch) candidates in one scan request")
        }
        let domain = session.domain
        let store = domain.store
        let stableOnly = flags.contains(.stableOnly)
        try beginScanRequest(candidates: stableOnly ? 0 : keys.count, withdrawn: withdrawn, session: session)
        var outcomes: [MergeOutcome] = []
        outcomes.reserveCapacity(keys.count)
        for (index, (key, digest)) in zip(keys, digests).enumerated() {
            if index + PageStore.prefetchDistance < digests.count {
                let ahead = digests[index + PageStore.prefetchDistance]
                store.prefetch(digest: ahead)
                domain.unstable.prefetch(hash: ahead)
            }
            if digest == PageStore.zeroDigest, flags.contains(.useZeroPages), !stableOnly {
                outcomes.append(.zero)
                continue
            }
            if let page = store.page(forDigest: digest) {
                store.addOwner(page)
                session.merged.add(1, to: page)
                outcomes.append(.merge(page))
                continue
            }
            if stableOnly {
                outcomes.append(.unstable)
                continue
            }
            let me = UnstableTree.Entry(session: session.id, key: key)
            if domain.unstable.hasPartner(hash: digest, excluding: me) {
                if domain.unstable.holdsUp(hash: digest, session: session.id, round: round) {
                    // Another client is sending these bytes: wait for the pair as an entry.
                    fileUnstable(me, digest: digest, session: session)
                    outcomes.append(.unstable)
                    continue
                }
                domain.unstable.promise(hash: digest, by: session.id)
                session.promisedHashes.append(digest)
                outcomes.append(.needContent)
                continue
            }
            fileUnstable(me, digest: digest, session: session)
            outcomes.append(.unstable)
        }
        let hints = session.pendingHints
        session.pendingHints = []
        return [.mergeResults(outcomes, hints: takeHints(hints, session: session))]
    }

    /// The checks and bookkeeping every scan request starts with: the cap on entries filed,
    /// checked against the candidates sent (a client at the cap sends its withdrawals alone),
    /// then the entries the client withdraws (their pages changed or went away; entries not
    /// filed are ignored).
    private func beginScanRequest(candidates: Int, withdrawn: [MergeWithdrawal], session: Session) throws(RequestFailure) {
        withdrawPromises(of: session)
        if session.unstableHashes.count + candidates > limits.maxUnstableEntries { compactUnstableHashes(session) }
        guard session.unstableHashes.count + candidates <= limits.maxUnstableEntries else {
            throw limitReached(.unstable, session, "more than \(limits.maxUnstableEntries) candidates filed at once")
        }
        guard !withdrawn.isEmpty else { return }
        for w in withdrawn { session.domain.unstable.remove(hash: w.digest, UnstableTree.Entry(session: session.id, key: w.key)) }
        session.domain.unstable.shrinkIfSparse()
    }

    /// Drops from a client's list of digests those it has no entry under any more (taken by
    /// pairs, withdrawn) and the repeats; done when the list has grown fourfold since the last
    /// time (and past `unstableHashesSlack`), or would pass the cap on entries: a probe per
    /// entry filed at most, none at all for a client that files fewer than the slack.
    func compactUnstableHashes(_ session: Session) {
        let domain = session.domain, id = session.id
        var seen = Set<UInt64>()
        session.unstableHashes.removeAll { !domain.unstable.hasEntry(of: id, hash: $0) || !seen.insert($0).inserted }
        session.unstableHashesCompacted = session.unstableHashes.count
    }

    private func withdrawPromises(of session: Session) {
        guard !session.promisedHashes.isEmpty else { return }
        session.domain.unstable.withdrawPromises(of: session.id, hashes: session.promisedHashes)
        session.promisedHashes.removeAll(keepingCapacity: true)
    }

    private func fileUnstable(_ entry: UnstableTree.Entry, digest: UInt64, session: Session) {
        guard session.domain.unstable.insert(hash: digest, entry) else { return }
        session.unstableHashes.append(digest)
        if session.unstableHashes.count >= max(unstableHashesSlack, 4 * session.unstableHashesCompacted) { compactUnstableHashes(session) }
    }

    /// The hints one reply carries; the rest wait for the next scan request.
    private func takeHints(_ hints: [MergeHint], session: Session) -> [MergeHint] {
        guard hints.count > Self.maxHintsPerReply else { return hints }
        // Pending hints are bounded only by this client's unstable entries: a reply carrying
        // them all could exceed the frame limit and end the connection.
        session.pendingHints = Array(hints[Self.maxHintsPerReply...]) + session.pendingHints
        return Array(hints[..<Self.maxHintsPerReply])
    }

    func mergeRelease(_ pages: [PageNumber], session: Session) throws(RequestFailure) -> [Reply] {
        // Validate everything first: a bad list changes nothing. In page order, the references
        // to drop are counted per page and freed as runs.
        let wanted = Self.counted(pages.sorted())
        for (page, count) in wanted where session.merged[page] ?? 0 < count {
            throw RequestFailure(.badRequest, "this connection holds no reference on region page \(page)")
        }
        for (page, count) in wanted {
            let left = session.merged[page]! - count
            session.merged[page] = left == 0 ? nil : left
        }
        // A process that unmerged most of its memory keeps no table sized for it.
        session.merged.shrinkIfSparse()
        session.domain.store.release(Self.runs(of: wanted))
        return [.done]
    }

    /// Sorted pages, each with how many times it occurs.
    static func counted(_ sortedPages: [PageNumber]) -> [(key: PageNumber, value: UInt32)] {
        var counts: [(key: PageNumber, value: UInt32)] = []
        for page in sortedPages {
            if let last = counts.last, last.key == page {
                counts[counts.count - 1].value += 1
            } else {
                counts.append((page, 1))
            }
        }
        return counts
    }

    /// References to drop (pages in order, with counts), as runs: the store frees consecutive
    /// pages as one extent, so a process that leaves with 100k merged pages costs a few hole
    /// punches, not 100k (one each took ~30 µs: a second of the event loop).
    static func runs(of references: [(key: PageNumber, value: UInt32)]) -> [PageRun] {
        var runs: [PageRun] = []
        runs.reserveCapacity(references.count)
        for (page, count) in references {
            for _ in 0..<count { runs.append(PageRun(start: page, count: 1)) }
        }
        return runs
    }

    func scanReport(_ report: ScanReport, session: Session) -> [Reply] {
        session.domain.record(report, from: session)
        return [.done]
    }

    /// Drops every merge reference and unstable entry a closing connection held.
    func closeMerging(_ session: Session) {
        let domain = session.domain
        domain.unstable.removeAll(of: session.id, hashes: session.unstableHashes)
        session.unstableHashes.removeAll()
        withdrawPromises(of: session)
        domain.store.release(Self.runs(of: session.merged.sortedByKey))
        session.merged.removeAll()
        session.pendingHints.removeAll()
        domain.forget(session)
    }
}
