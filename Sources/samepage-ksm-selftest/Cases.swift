/// Every case, by the name the tests run it with.
let cases: [String: @Sendable () throws -> Outcome] = [
    // ksm_functional_tests.c
    "unmerge": testUnmerge,
    "unmerge-zero-pages": testUnmergeZeroPages,
    "unmerge-discarded": testUnmergeDiscarded,
    "unmerge-uffd-wp": testUnmergeUffdWp,
    "prot-none": testProtNone,
    "prctl": testPrctl,
    "prctl-fork": testPrctlFork,
    "prctl-fork-exec": testPrctlForkExec,
    "prctl-unmerge": testPrctlUnmerge,
    "fork-merging-page-count": testForkMergingPageCount,
    "child-ksm": { try childKsm() },
    // ksm_tests.c
    "merge-count": testMergeCount,
    "unmerge-count": testUnmergeCount,
    "zero-page-merge": testZeroPageMerge,
    "max-page-sharing": testMaxPageSharing,
    "volatile": testVolatile,
    "merge-time": testMergeTime,
    "cow-time": testCowTime,
    // Samepage's own
    "vma-budget": testVMABudget,
    "quiet-scans": testQuietScans,
    "idle-rest": testIdleRest,
    "hot-slices": testHotSlices,
    "poke": poke,
]
