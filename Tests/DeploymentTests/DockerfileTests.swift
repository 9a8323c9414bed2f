import Testing

/// The Dockerfile, checked without a container engine: its stages, what the runtime stage
/// installs (exactly what ldd says the built binaries need from Debian), and that the binaries
/// ENTRYPOINT and HEALTHCHECK run are the ones it copies in.
@Suite("Dockerfile")
struct DockerfileTests {
    /// What debian:bookworm-slim already has: libc6 and libgcc-s1 are Essential, libstdc++6
    /// comes with apt. Anything else the binaries load must be installed by the runtime stage.
    static let inTheBaseImage: Set<String> = ["libc6", "libgcc-s1", "libstdc++6"]

    func dockerfile() throws -> Dockerfile { Dockerfile(try RepositoryFiles.text("Dockerfile")) }

    @Test func aSwiftBuildStageAndASlimDebianRuntime() throws {
        let file = try dockerfile()
        #expect(file.stages.count == 2)
        let build = try #require(file.stage(named: "build"))
        #expect(build.base.hasPrefix("swift:6.") && build.base.hasSuffix("-bookworm"), "\(build.base)")
        #expect(Set(build.aptPackages).isSuperset(of: ["libxxhash-dev", "liburing-dev"]))
        let builds = build.all("RUN").joined(separator: " ")
        for product in ["samepaged", "samepage"] {
            #expect(builds.contains("swift build -c release --static-swift-stdlib --product \(product)"), "\(product), release, static Swift")
        }
        let runtime = try #require(file.stages.last)
        #expect(runtime.base == "debian:bookworm-slim")
    }

    @Test func theRuntimeInstallsExactlyTheDebianLibrariesTheBinariesLoad() throws {
        var needed: Set<String> = []
        for binary in ["samepaged", "samepage"] { needed.formUnion(try BuiltSamepaged.debianPackages(of: binary)) }
        #expect(needed.isSuperset(of: ["libxxhash0", "liburing2"]), "ldd found Debian's libraries: \(needed)")
        let installed = Set(try #require(try dockerfile().stages.last).aptPackages)
        #expect(installed == needed.subtracting(Self.inTheBaseImage),
                "runtime installs \(installed.sorted()); the binaries need \(needed.subtracting(Self.inTheBaseImage).sorted())")
    }

    @Test func entrypointAndHealthcheckRunBinariesTheRuntimeCopiesIn() throws {
        let file = try dockerfile()
        let runtime = try #require(file.stages.last)
        let copies = runtime.copiesFromStages
        let copied = Set(copies.map(\.destination))
        let entrypoint = try #require(runtime.entrypoint, "ENTRYPOINT in exec form")
        let health = try #require(runtime.healthcheck, "HEALTHCHECK CMD in exec form")
        #expect(entrypoint == ["samepaged"])
        #expect(health == ["samepage", "ping"])
        for binary in [entrypoint[0], health[0]] {
            #expect(copied.contains("/usr/local/bin/\(binary)"), "\(binary) is copied into the PATH: \(copied)")
        }
        // Each copy's source is made by the stage it names.
        for copy in copies {
            let stage = try #require(file.stage(named: copy.from), "COPY --from=\(copy.from) names a stage")
            #expect(stage.all("RUN").contains { $0.contains(copy.source) }, "\(copy.source) is built in \(copy.from)")
        }
    }

    @Test func theRuntimeRunsAsAFixedUserWithTheSocketInAVolume() throws {
        let runtime = try #require(try dockerfile().stages.last)
        let user = try #require(runtime.all("USER").last)
        #expect(user == "10001:10001", "a numeric non-root uid, so Kubernetes can verify runAsNonRoot")
        #expect(runtime.all("VOLUME").contains { $0.contains("/run/samepage") })
        #expect(runtime.all("ENV").contains("SAMEPAGE_SOCKET=/run/samepage/samepaged.sock"))
        #expect(runtime.all("RUN").contains { $0.contains("useradd") && $0.contains("--uid 10001") })
    }

    @Test func theBuildContextLeavesOutBuildsAndHistory() throws {
        let ignored = Set(try RepositoryFiles.text(".dockerignore").split(separator: "\n").map(String.init))
        #expect(ignored.isSuperset(of: [".build", ".git", "Package.resolved"]))
        #expect(!ignored.contains("Sources") && !ignored.contains("Tests"), "SwiftPM needs every target's folder")
    }
}
