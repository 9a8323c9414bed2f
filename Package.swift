// swift-tools-version: 6.1
import PackageDescription

// Layers, bottom up (see docs/design.md):
//   CXXHash, CURing, CSamepageShim  C libraries and the _GNU_SOURCE shim
//   CPrefetch                       a cache prefetch hint for the core's tables
//   SamepageCore                    no I/O: codec, stable tree, allocator, store, statistics
//   SamepageSystem                  every syscall, fd and mapping owners, io_uring ring
//   SamepageServer, SamepageClient  the two ends of the socket
//   samepaged, samepage             executables
// Benchmarks/ is a separate package so that `swift build` never pays for ordo-one/benchmark.
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Samepage",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SamepageClient", targets: ["SamepageClient"]),
        .library(name: "SamepageCore", targets: ["SamepageCore"]),
        .library(name: "SamepageServer", targets: ["SamepageServer"]),
        // The C interface (samepage.h). SwiftPM names it libSamepageC.so (a product may not share
        // the CLI's name); scripts/install-c-library installs it as libsamepage.so.
        .library(name: "SamepageC", type: .dynamic, targets: ["SamepageCABI"]),
        .executable(name: "samepage", targets: ["samepage"]),
        .executable(name: "samepaged", targets: ["samepaged"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Test-only: DeploymentTests parse the Kubernetes manifests.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CXXHash", pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(
            name: "CURing", pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]),
        .target(
            name: "CSamepageShim",
            dependencies: ["CURing", "CXXHash"],
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2"])]),
        .target(name: "CPrefetch"),
        .target(
            name: "SamepageCore",
            dependencies: ["CXXHash", "CPrefetch"],
            // The store's per-page loops touch its arrays through `self`; in release, the
            // run-time exclusivity checks of those accesses cost ~15% of a duplicate put
            // (samepage bench --workload put). Debug builds, which the tests run, keep them.
            swiftSettings: strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .target(
            name: "SamepageSystem",
            dependencies: [
                "CSamepageShim",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .target(
            name: "SamepageServer",
            dependencies: [
                "SamepageCore", "SamepageSystem", "CSamepageShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .target(
            name: "SamepageClient",
            dependencies: [
                "SamepageCore", "SamepageSystem", "CSamepageShim",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            // The scanner's per-page loops over a range's state arrays: the same reason as
            // SamepageCore's (exclusivity checks were ~2% of a scan in the runs profile).
            swiftSettings: strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .target(name: "CSamepageABI"),
        .target(
            name: "SamepageCABI",
            dependencies: ["CSamepageABI", "SamepageClient", "SamepageCore"],
            swiftSettings: strict),
        .executableTarget(
            name: "samepaged",
            dependencies: [
                "SamepageServer", "SamepageSystem", "SamepageCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // What the operators' commands show, as text: tables, rates, `top` frames. No I/O.
        .target(
            name: "SamepageOperator",
            dependencies: ["SamepageCore"],
            swiftSettings: strict),
        .executableTarget(
            name: "samepage",
            dependencies: [
                "SamepageClient", "SamepageOperator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "samepage-probe",
            dependencies: ["SamepageClient", "SamepageSystem", "SamepageCore", "CSamepageShim"],
            swiftSettings: strict),
        .executableTarget(
            name: "samepage-ksm-selftest",
            dependencies: ["SamepageClient", "SamepageSystem", "CSamepageShim"],
            swiftSettings: strict),
        .executableTarget(
            name: "samepage-fuzz",
            dependencies: ["SamepageCore"],
            swiftSettings: strict),
        .testTarget(
            name: "SamepageCoreTests",
            dependencies: ["SamepageCore"],
            swiftSettings: strict),
        .testTarget(
            name: "SamepageOperatorTests",
            dependencies: ["SamepageOperator", "SamepageCore"],
            swiftSettings: strict),
        // The Dockerfile, the Kubernetes manifests and the systemd unit, checked without a
        // container engine (none runs in CI): parsed and compared with the built binaries.
        .testTarget(
            name: "DeploymentTests",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        .testTarget(
            name: "SamepageEndToEndTests",
            dependencies: ["SamepageClient", "SamepageCore", "SamepageSystem"],
            swiftSettings: strict),
    ]
)
