// swift-tools-version: 6.1
import PackageDescription

// The benchmark suite of Samepage, kept in its own package so that the root package's
// `swift build` never resolves or builds ordo-one/benchmark. Run from this directory:
//
//   swift package --disable-sandbox benchmark
//
// See README.md for what each benchmark measures and how to compare against a baseline.
let package = Package(
    name: "SamepageBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Samepage", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "StoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SamepageCore", package: "Samepage"),
            ],
            path: "Benchmarks/StoreBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
