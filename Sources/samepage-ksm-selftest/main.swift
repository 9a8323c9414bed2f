// The kernel's KSM self-tests, ported to Samepage: every case of
// tools/testing/selftests/mm/ksm_functional_tests.c and the counting, unmerge, zero-page,
// max_page_sharing, merge-time and COW-time modes of ksm_tests.c. Each case runs in a fresh
// process against a real samepaged:
//
//     samepage-ksm-selftest SOCKET CASE [PARAMETER=VALUE...]
//
// (parameters as for `samepage`'s merge parameters, e.g. track_writes=0 to decide volatility by
// checksums as the kernel does)
// and prints one line, "ok: ...", "skip: ..." or "fail: ...", exiting 0, 4 or 1. Each case
// states the kernel's expectation; where Samepage must differ, the case says so and checks what
// Samepage does instead (docs/mergeable-memory.md lists the differences).
import CSamepageShim
import Glibc
import SamepageClient
import SamepageCore
import SamepageSystem

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    print("usage: samepage-ksm-selftest SOCKET CASE [PARAMETER=VALUE...]\ncases: \(cases.keys.sorted().joined(separator: " "))")
    exit(2)
}
let socketPath = arguments[1]
let parameterArguments = Array(arguments.dropFirst(3))
guard let body = cases[arguments[2]] else {
    print("fail: unknown case \(arguments[2])")
    exit(1)
}
do {
    let outcome = try body()
    switch outcome {
    case .pass(let message): print("ok: \(message)"); exit(0)
    case .skip(let message): print("skip: \(message)"); exit(4)
    }
} catch let failure as Failure {
    print("fail: \(failure.message)")
    exit(1)
} catch {
    print("fail: \(error)")
    exit(1)
}
