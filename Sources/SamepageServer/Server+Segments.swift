import SamepageCore
import SamepageSystem

// Region segments on the wire (docs/protocol.md): a client holds a read-only fd of each segment
// it maps from, sent in a `segment` frame just before the first reply that names pages in it.
extension Server {
    /// Before a reply that names region pages: tells the client which of its segment fds are out
    /// of date (retired since), and sends the fd of every segment the reply names that the client
    /// does not hold in its current generation. A region of one segment sends it with welcome.
    func sendSegments(for reply: Reply, requestID: UInt64, on connection: Connection) {
        guard let region = connection.region, region.segmentCount > 1 else { return }
        if region.retirements != connection.retirementsSeen {
            connection.retirementsSeen = region.retirements
            for (index, generation) in connection.segmentGenerations where region.generation(ofSegment: index) != generation {
                connection.segmentGenerations[index] = nil
                connection.enqueue(.segment(index: index, generation: generation, attached: false), requestID: requestID)
            }
        }
        let segmentPages = UInt32(region.segmentBytes / UInt64(Page.size))
        reply.forEachRegionRun { start, count in
            var segment = start / segmentPages
            let last = (start + count - 1) / segmentPages
            while segment <= last {
                sendSegment(segment, of: region, requestID: requestID, on: connection)
                segment += 1
            }
        }
    }

    func sendSegment(_ index: UInt32, of region: any ServedRegion, requestID: UInt64, on connection: Connection) {
        let generation = region.generation(ofSegment: index)
        guard connection.segmentGenerations[index] != generation else { return }
        do {
            let fd = OwnedDescriptor(taking: try Syscall.duplicate(region.descriptor(ofSegment: index)))
            connection.enqueue(.segment(index: index, generation: generation, attached: true), requestID: requestID, passing: fd)
            connection.segmentGenerations[index] = generation
        } catch {
            // Out of fds: the client's call that needs this segment fails with a clear error
            // ("no fd for region segment"); the next reply naming it tries again.
            logger.warning("cannot send a region segment", metadata: ["connection": "\(connection.id)", "error": "\(error)"])
        }
    }
}
