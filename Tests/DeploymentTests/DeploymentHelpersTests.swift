import Testing

/// The helpers the deployment checks stand on, on small inputs.
@Suite("deployment check helpers")
struct DeploymentHelpersTests {
    @Test func dockerfileStagesPackagesCopiesAndExecForms() {
        let file = Dockerfile("""
            # comment
            ARG V=6.3
            FROM swift:${V}-bookworm AS build
            RUN apt-get update \\
             && apt-get install -y --no-install-recommends libxxhash-dev \\
                liburing-dev && rm -rf /x
            FROM debian:bookworm-slim
            RUN apt-get install -y a b
            COPY --from=build /out/x /usr/local/bin/x
            COPY local /etc/local
            HEALTHCHECK --interval=5s CMD ["x", "ping"]
            ENTRYPOINT ["x"]
            """)
        #expect(file.stages.count == 2)
        #expect(file.stages[0].base == "swift:6.3-bookworm" && file.stages[0].name == "build")
        #expect(file.stages[0].aptPackages == ["libxxhash-dev", "liburing-dev"])
        let runtime = file.stages[1]
        #expect(runtime.base == "debian:bookworm-slim" && runtime.name == nil)
        #expect(runtime.aptPackages == ["a", "b"])
        #expect(runtime.copiesFromStages.map(\.destination) == ["/usr/local/bin/x"])
        #expect(runtime.copiesFromStages.map(\.from) == ["build"])
        #expect(runtime.healthcheck == ["x", "ping"])
        #expect(runtime.entrypoint == ["x"])
        #expect(Dockerfile.execForm("x ping") == nil, "shell form")
    }

    @Test func longOptionsComeFromTheOptionsSection() {
        let help = """
            USAGE: samepaged [--socket <socket>]

            OPTIONS:
              --socket <socket>       Socket path (default: $SAMEPAGE_SOCKET, else ...)
              --region-size <region-size>
                                      Region memory (e.g. 512M, 4G).
              -v, --verbose           Say more.
              -h, --help              Show help information.
            """
        #expect(SamepagedOptions.longOptions(inHelp: help) == ["socket", "region-size", "verbose", "help"])
    }

    @Test func environmentNamesMapToOptionsAndBack() {
        #expect(SamepagedOptions.environmentName("region-size") == "SAMEPAGE_REGION_SIZE")
        #expect(SamepagedOptions.option(forEnvironmentName: "SAMEPAGE_METRICS_LISTEN") == "metrics-listen")
        #expect(SamepagedOptions.option(forEnvironmentName: "SAMEPAGE_") == nil)
        #expect(SamepagedOptions.option(forEnvironmentName: "OTHER_SOCKET") == nil)
    }

    @Test func podSpecHelpers() {
        let pod: [String: Any] = ["kind": "Pod", "spec": [
            "initContainers": [["name": "a", "env": [["name": "X", "value": 1]]]],
            "containers": [["name": "b", "volumeMounts": [["name": "v", "mountPath": "/m"]]]],
            "volumes": [["name": "v", "emptyDir": [String: Any]()]],
        ] as [String: Any]]
        let spec = PodSpecs.podSpec(of: pod)!
        #expect(PodSpecs.containers(of: spec).compactMap { $0["name"] as? String } == ["a", "b"])
        #expect(PodSpecs.environment(of: PodSpecs.containers(of: spec)[0]) == ["X": "1"])
        #expect(PodSpecs.mounts(of: PodSpecs.containers(of: spec)[1]) == ["v": "/m"])
        #expect(PodSpecs.volumes(of: spec).keys.sorted() == ["v"])
        #expect(PodSpecs.directory(of: "/run/samepage/samepaged.sock") == "/run/samepage")
        #expect(PodSpecs.directory(of: "/s.sock") == "/")
    }
}
