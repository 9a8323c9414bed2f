/// Walks Kubernetes objects as Yams loads them ([String: Any] all the way down). Pure.
enum PodSpecs {
    typealias Object = [String: Any]

    /// The pod spec of a Pod, or of a workload's pod template.
    static func podSpec(of object: Object) -> Object? {
        if object["kind"] as? String == "Pod" { return object["spec"] as? Object }
        return ((object["spec"] as? Object)?["template"] as? Object)?["spec"] as? Object
    }

    /// Every container of a pod spec: init containers (native sidecars among them) and containers.
    static func containers(of spec: Object) -> [Object] {
        (spec["initContainers"] as? [Object] ?? []) + (spec["containers"] as? [Object] ?? [])
    }

    /// A container's environment as name -> value (plain values only).
    static func environment(of container: Object) -> [String: String] {
        var env: [String: String] = [:]
        for entry in container["env"] as? [Object] ?? [] {
            if let name = entry["name"] as? String { env[name] = "\(entry["value"] ?? "")" }
        }
        return env
    }

    /// Volume name -> mount path of a container's mounts.
    static func mounts(of container: Object) -> [String: String] {
        var mounts: [String: String] = [:]
        for mount in container["volumeMounts"] as? [Object] ?? [] {
            if let name = mount["name"] as? String, let path = mount["mountPath"] as? String { mounts[name] = path }
        }
        return mounts
    }

    /// The pod's volumes by name.
    static func volumes(of spec: Object) -> [String: Object] {
        var volumes: [String: Object] = [:]
        for volume in spec["volumes"] as? [Object] ?? [] {
            if let name = volume["name"] as? String { volumes[name] = volume }
        }
        return volumes
    }

    /// Whether a container runs samepaged: the Samepage image with no command (its ENTRYPOINT)
    /// or a command naming samepaged.
    static func runsSamepaged(_ container: Object, image: String) -> Bool {
        let command = container["command"] as? [String] ?? []
        return (container["image"] as? String == image && command.isEmpty) || command.first?.hasSuffix("samepaged") == true
    }

    /// The directory part of a path (`/run/samepage/samepaged.sock` -> `/run/samepage`).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
