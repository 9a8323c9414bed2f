import SamepageCore
import Testing

@Suite("AccessPolicy")
struct AccessPolicyTests {
    func peer(_ uid: UInt32, _ gid: UInt32 = 100) -> PeerIdentity { PeerIdentity(pid: 1, uid: uid, gid: gid) }

    @Test func onlyTheServersUIDByDefault() {
        let policy = AccessPolicy(serverUID: 1000)
        #expect(policy.permits(peer(1000)))
        #expect(!policy.permits(peer(1001)))
        #expect(!policy.permits(peer(0)), "not even root, unless allowed")
    }

    @Test func allowListsByUIDAndByGID() {
        let policy = AccessPolicy(serverUID: 0, allowedUIDs: [1000], allowedGIDs: [50])
        #expect(policy.permits(peer(0)))
        #expect(policy.permits(peer(1000)))
        #expect(policy.permits(peer(2000, 50)))
        #expect(!policy.permits(peer(2000, 51)))
    }

    @Test func domainsAreOneUIDEachUnlessGrouped() {
        let policy = AccessPolicy(serverUID: 0, domains: ["team": [1000, 1001]])
        #expect(policy.domain(of: peer(1000)) == policy.domain(of: peer(1001)))
        #expect(policy.domain(of: peer(1002)) != policy.domain(of: peer(1000)))
        #expect(policy.domain(of: peer(1002)) != policy.domain(of: peer(1003)))
        // A uid's own domain and a group named like it are never the same domain.
        let tricky = AccessPolicy(serverUID: 0, domains: ["uid:5": [6]])
        #expect(tricky.domain(of: peer(6)) != tricky.domain(of: peer(5)))
    }

    @Test func parsesDomainOptions() {
        #expect(AccessPolicy.parseDomain("team=1000,1001")?.name == "team")
        #expect(AccessPolicy.parseDomain("team=1000,1001")?.uids == [1000, 1001])
        for bad in ["team", "team=", "=1", "team=1,,2", "team=x", "a b=1", "team=99999999999"] {
            #expect(AccessPolicy.parseDomain(bad) == nil, "\(bad)")
        }
    }
}
