import Testing
import Yams

/// Every manifest under deploy/kubernetes, parsed with Yams and checked field by field: no
/// cluster runs in CI, so this is what stands between a typo and a broken rollout.
@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
    typealias Object = PodSpecs.Object
    static let image = "registry.example.com/samepage/samepage:0.1.0"
    static let knownKinds: Set<String> = ["v1/Namespace", "apps/v1/DaemonSet", "apps/v1/Deployment", "v1/Pod"]

    /// Every document of every manifest file, with its file name.
    func documents() throws -> [(file: String, object: Object)] {
        var all: [(String, Object)] = []
        for file in try RepositoryFiles.yamlFiles(under: "deploy/kubernetes") {
            for document in try Yams.load_all(yaml: try RepositoryFiles.text(file)) {
                let object = try #require(document as? Object, "\(file): a document that is not a mapping")
                all.append((file, object))
            }
        }
        return all
    }

    func pods() throws -> [(file: String, object: Object, spec: Object)] {
        try documents().compactMap { doc in PodSpecs.podSpec(of: doc.object).map { (doc.file, doc.object, $0) } }
    }

    /// The uids the samepaged container of `spec` lets in with --allow-uid.
    func allowedUIDs(_ container: Object) -> Set<Int> {
        let args = container["args"] as? [String] ?? []
        return Set(zip(args, args.dropFirst()).filter { $0.0 == "--allow-uid" }.compactMap { Int($0.1) })
    }

    @Test func everyDocumentHasAKnownKindAndAName() throws {
        let docs = try documents()
        #expect(docs.count >= 4)
        for (file, object) in docs {
            let kind = "\(object["apiVersion"] ?? "?")/\(object["kind"] ?? "?")"
            #expect(Self.knownKinds.contains(kind), "\(file): \(kind)")
            #expect((object["metadata"] as? Object)?["name"] is String, "\(file): metadata.name")
        }
        #expect(docs.filter { $0.object["kind"] as? String == "DaemonSet" }.count == 1)
        #expect(docs.contains { $0.object["kind"] as? String == "Pod" }, "the sidecar example")
    }

    @Test func theDaemonSetSelectsItsOwnPodsAndRunsSamepaged() throws {
        let daemonSet = try #require(try documents().first { $0.object["kind"] as? String == "DaemonSet" }?.object)
        let spec = try #require(daemonSet["spec"] as? Object)
        let selector = try #require((spec["selector"] as? Object)?["matchLabels"] as? [String: String])
        let labels = try #require(((spec["template"] as? Object)?["metadata"] as? Object)?["labels"] as? [String: String])
        #expect(!selector.isEmpty)
        for (key, value) in selector { #expect(labels[key] == value, "selector \(key)=\(value) matches the template") }
        let pod = try #require(PodSpecs.podSpec(of: daemonSet))
        let servers = PodSpecs.containers(of: pod).filter { PodSpecs.runsSamepaged($0, image: Self.image) }
        #expect(servers.count == 1)
        let socketVolume = try #require(PodSpecs.volumes(of: pod).values.first { $0["hostPath"] != nil })
        #expect((socketVolume["hostPath"] as? Object)?["path"] as? String == "/run/samepage")
    }

    @Test func theSocketDirectoryIsMountedWhereSamepageSocketPointsInEveryContainer() throws {
        var socketsSeen = 0
        for (file, _, spec) in try pods() {
            let volumes = PodSpecs.volumes(of: spec)
            for container in PodSpecs.containers(of: spec) {
                guard let socket = PodSpecs.environment(of: container)["SAMEPAGE_SOCKET"] else { continue }
                socketsSeen += 1
                let name = container["name"] as? String ?? "?"
                let directory = PodSpecs.directory(of: socket)
                let mounted = PodSpecs.mounts(of: container).first { $0.value == directory }
                let volume = try #require(mounted.flatMap { volumes[$0.key] }, "\(file) \(name): nothing mounted at \(directory)")
                #expect(volume["hostPath"] != nil || volume["emptyDir"] != nil, "\(file) \(name): a hostPath or emptyDir")
                if let hostPath = volume["hostPath"] as? Object {
                    #expect(hostPath["path"] as? String == "/run/samepage", "\(file) \(name): the DaemonSet's socket directory")
                }
            }
        }
        #expect(socketsSeen >= 4, "DaemonSet, node app, sidecar and its app all name the socket")
    }

    @Test func theSidecarAndTheAppShareOneEmptyDirAndOneSocket() throws {
        let (file, _, spec) = try #require(try pods().first { $0.object["kind"] as? String == "Pod" })
        let containers = PodSpecs.containers(of: spec)
        let server = try #require(containers.first { PodSpecs.runsSamepaged($0, image: Self.image) }, "\(file): no samepaged")
        let apps = containers.filter { !PodSpecs.runsSamepaged($0, image: Self.image) }
        #expect(apps.count == 1)
        let socket = try #require(PodSpecs.environment(of: server)["SAMEPAGE_SOCKET"])
        let volumes = PodSpecs.volumes(of: spec)
        let serverVolume = try #require(PodSpecs.mounts(of: server).first { $0.value == PodSpecs.directory(of: socket) }?.key)
        #expect(volumes[serverVolume]?["emptyDir"] != nil, "the socket is in an emptyDir")
        for app in apps {
            #expect(PodSpecs.environment(of: app)["SAMEPAGE_SOCKET"] == socket, "the same socket path in both")
            #expect(PodSpecs.mounts(of: app)[serverVolume] == PodSpecs.directory(of: socket), "the same volume")
        }
        // A native sidecar: an init container that keeps running, ready before the app starts.
        #expect(server["restartPolicy"] as? String == "Always")
        #expect(server["startupProbe"] != nil)
    }

    @Test func samepagedContainersAreLockedDownProbedAndLimited() throws {
        var servers = 0
        for (file, _, spec) in try pods() {
            for container in PodSpecs.containers(of: spec) where PodSpecs.runsSamepaged(container, image: Self.image) {
                servers += 1
                let name = "\(file) \(container["name"] ?? "?")"
                #expect(container["image"] as? String == Self.image, "\(name): one image everywhere")
                let security = try #require(container["securityContext"] as? Object, "\(name): securityContext")
                #expect(security["runAsNonRoot"] as? Bool == true, "\(name)")
                #expect(security["runAsUser"] as? Int == 10001, "\(name): the image's fixed uid")
                #expect(security["readOnlyRootFilesystem"] as? Bool == true, "\(name)")
                #expect(security["allowPrivilegeEscalation"] as? Bool == false, "\(name)")
                #expect((security["capabilities"] as? Object)?["drop"] as? [String] == ["ALL"], "\(name)")
                #expect(security["privileged"] as? Bool != true, "\(name)")
                let limits = ((container["resources"] as? Object)?["limits"] as? Object)
                #expect(limits?["memory"] != nil, "\(name): a memory limit (the region is charged here)")
                // Probes: the real protocol (samepage ping, a binary the image has) and /healthz
                // on the port named metrics.
                let readiness = try #require(container["readinessProbe"] as? Object, "\(name): readinessProbe")
                #expect((readiness["exec"] as? Object)?["command"] as? [String] == ["samepage", "ping"], "\(name)")
                let liveness = try #require(container["livenessProbe"] as? Object, "\(name): livenessProbe")
                let http = try #require(liveness["httpGet"] as? Object, "\(name): liveness over HTTP")
                #expect(http["path"] as? String == "/healthz")
                let ports = container["ports"] as? [Object] ?? []
                let metrics = try #require(ports.first { $0["name"] as? String == "metrics" }, "\(name): a metrics port")
                #expect(http["port"] as? String == "metrics")
                let listen = PodSpecs.environment(of: container)["SAMEPAGE_METRICS_LISTEN"]
                #expect(listen?.hasSuffix(":\(metrics["containerPort"] ?? "?")") == true, "\(name): listens on its port")
            }
        }
        #expect(servers == 2, "the DaemonSet and the sidecar")
    }

    @Test func podsAreAnnotatedForScrapingOnTheMetricsPort() throws {
        for (file, object, spec) in try pods() {
            guard let server = PodSpecs.containers(of: spec).first(where: { PodSpecs.runsSamepaged($0, image: Self.image) }) else { continue }
            let metadata = object["kind"] as? String == "Pod"
                ? object["metadata"] as? Object
                : ((object["spec"] as? Object)?["template"] as? Object)?["metadata"] as? Object
            let annotations = metadata?["annotations"] as? [String: String] ?? [:]
            let port = (server["ports"] as? [Object])?.first { $0["name"] as? String == "metrics" }?["containerPort"]
            #expect(annotations["prometheus.io/scrape"] == "true", "\(file)")
            #expect(annotations["prometheus.io/port"] == "\(port ?? "?")", "\(file)")
            #expect(annotations["prometheus.io/path"] == "/metrics", "\(file)")
        }
    }

    @Test func appContainersRunAsAUidTheServerLetsIn() throws {
        let all = try pods()
        let daemonSet = try #require(all.first { $0.object["kind"] as? String == "DaemonSet" })
        let nodeServer = try #require(PodSpecs.containers(of: daemonSet.spec).first { PodSpecs.runsSamepaged($0, image: Self.image) })
        for (file, object, spec) in all where object["kind"] as? String != "DaemonSet" {
            let containers = PodSpecs.containers(of: spec)
            // A pod's own sidecar serves it; otherwise the node's DaemonSet does.
            let server = containers.first { PodSpecs.runsSamepaged($0, image: Self.image) } ?? nodeServer
            let serverUID = (server["securityContext"] as? Object)?["runAsUser"] as? Int
            for app in containers where !PodSpecs.runsSamepaged(app, image: Self.image) {
                let name = "\(file) \(app["name"] ?? "?")"
                let uid = (app["securityContext"] as? Object)?["runAsUser"] as? Int ?? (spec["securityContext"] as? Object)?["runAsUser"] as? Int
                let appUID = try #require(uid, "\(name): a fixed uid")
                #expect(appUID != serverUID, "\(name): another uid than the server, so it cannot write the region")
                #expect(allowedUIDs(server).contains(appUID), "\(name): uid \(appUID) needs --allow-uid on its server")
                let security = app["securityContext"] as? Object
                #expect(security?["allowPrivilegeEscalation"] as? Bool == false, "\(name)")
                #expect((security?["capabilities"] as? Object)?["drop"] as? [String] == ["ALL"], "\(name)")
            }
        }
    }

    @Test func environmentVariablesAndArgumentsAreOnesSamepagedDocuments() throws {
        let options = try BuiltSamepaged.documentedOptions()
        for (file, _, spec) in try pods() {
            for container in PodSpecs.containers(of: spec) {
                let name = "\(file) \(container["name"] ?? "?")"
                for variable in PodSpecs.environment(of: container).keys where variable.hasPrefix("SAMEPAGE_") {
                    let option = SamepagedOptions.option(forEnvironmentName: variable)
                    #expect(option.map(options.contains) == true, "\(name): \(variable) sets no samepaged option")
                }
                guard PodSpecs.runsSamepaged(container, image: Self.image) else { continue }
                for argument in container["args"] as? [String] ?? [] where argument.hasPrefix("--") {
                    #expect(options.contains(String(argument.dropFirst(2))), "\(name): samepaged has no \(argument)")
                }
            }
        }
    }

    @Test func theImageIsTheOneTheDockerfileBuilds() throws {
        let dockerfile = try RepositoryFiles.text("Dockerfile")
        #expect(dockerfile.contains("docker build -t \(Self.image) ."), "the Dockerfile's build line tags the manifests' image")
    }
}
