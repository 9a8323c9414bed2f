import ArgumentParser
import Foundation

/// The kernel's KSM, driven through /sys/kernel/mm/ksm for a side-by-side run. Every tunable it
/// touches is saved first and put back by `restore()`, which the benchmark also calls on SIGINT
/// and SIGTERM.
final class KernelKSM: @unchecked Sendable {
    static let directory = "/sys/kernel/mm/ksm"
    static let tunables = ["run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages", "smart_scan"]

    private var saved: [String: String] = [:]
    private let lock = NSLock()
    private var restored = false

    /// Nil when KSM is missing or its files are not writable (not root): the reason.
    static func unavailableReason() -> String? {
        guard FileManager.default.fileExists(atPath: directory + "/run") else { return "this kernel has no KSM (\(directory) is missing)" }
        guard access(directory + "/run", W_OK) == 0 else { return "\(directory) is not writable (run as root to compare with the kernel's KSM)" }
        return nil
    }

    init() throws {
        for name in Self.tunables {
            if let value = Self.read(name) { saved[name] = value }
        }
    }

    static func read(_ name: String) -> String? {
        (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func value(_ name: String) -> Int {
        Int(read(name)?.split(separator: " ").first ?? "") ?? 0
    }

    /// Bytes of the kernel's own bookkeeping for what it merges now, by its own count:
    /// general_profit is the bytes saved less ksm_rmap_items times the size of an rmap item (its
    /// stable tree nodes are not counted). Kernel slab, so in no process's Pss. 0 where the kernel
    /// has no general_profit (before 6.1).
    static func bookkeepingBytes() -> Double {
        guard let profit = read("general_profit").flatMap({ Int($0) }) else { return 0 }
        let saved = (value("pages_sharing") + value("ksm_zero_pages")) * 4096
        return Double(max(0, saved - profit))
    }

    func set(_ name: String, _ value: String) throws {
        guard let handle = FileHandle(forWritingAtPath: Self.directory + "/" + name) else {
            throw ValidationError("cannot open \(Self.directory)/\(name)")
        }
        defer { try? handle.close() }
        try handle.write(contentsOf: Data(value.utf8))
    }

    /// Unmerges everything (run=2) and puts every saved tunable back, once.
    func restore() {
        lock.lock()
        defer { lock.unlock() }
        guard !restored else { return }
        restored = true
        try? set("run", "2")
        for name in Self.tunables where name != "run" {
            if let value = saved[name] { try? set(name, value) }
        }
        if let run = saved["run"] { try? set("run", run) }
    }

    /// CPU seconds ksmd has used.
    static func ksmdCPUSeconds() -> Double {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
        for entry in entries where Int32(entry) != nil {
            if (try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "ksmd" {
                return cpuSeconds(Int32(entry)!)
            }
        }
        return 0
    }
}
