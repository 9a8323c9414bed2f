import Foundation
import SamepageCore
import SamepageSystem

/// What a merge workload's processes hold: each worker fills its memory the same way, given its
/// index, and so does the least-work measurement (MergeFloor).
struct WorkloadFill {
    var layout: MergeLayout
    var sharedPercent: Int
    /// runs: the files the shared part is loaded from, in order.
    var files: [String] = []

    /// The fill of a workload; for `runs`, the files of `directory` (nil: the toolchain's
    /// shared libraries).
    init(layout: MergeLayout, sharedPercent: Int, filesIn directory: String?) throws {
        self.layout = layout
        self.sharedPercent = sharedPercent
        if layout == .runs { files = try SharedFiles.forRuns(directory) }
    }

    /// Fills `pages` pages of worker `index`.
    func fill(_ memory: UnsafeMutableRawPointer, pages: Int, index: Int) throws {
        let sharedPages = pages * sharedPercent / 100
        func unique(_ page: Int) { PseudoRandomPages.fill(memory + page * 4096, content: UInt64(index + 1) << 40 | UInt64(page), seed: 1) }
        switch layout {
        case .zeros:
            // Anonymous memory reads zero already; a write to every page makes it resident.
            for page in 0..<pages { (memory + page * 4096).storeBytes(of: 0, as: UInt8.self) }
        case .runs:
            try SharedFiles.load(files, into: memory, pages: sharedPages)
            for page in sharedPages..<pages { unique(page) }
        case .churn:
            for page in 0..<pages {
                if page < sharedPages {
                    PseudoRandomPages.fill(memory + page * 4096, content: UInt64(page), seed: 1)
                } else {
                    unique(page)
                }
            }
        case .scattered:
            var random = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
            let pool = UInt64(max(1, sharedPages / 8))
            for page in 0..<pages {
                random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                if page < sharedPages {
                    PseudoRandomPages.fill(memory + page * 4096, content: (random >> 17) % pool, seed: 1)
                } else {
                    unique(page)
                }
            }
        }
    }
}

/// The real files the `runs` workload loads: what processes that load the same libraries or
/// model weights have in common, with the zero pages, padding and repeats real files have.
enum SharedFiles {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Every regular file under `directory`, by path (symbolic links skipped: a library's
    /// versioned names are one file); with `sharedLibrariesOnly`, only names with ".so".
    static func list(_ directory: String, sharedLibrariesOnly: Bool) throws -> [String] {
        guard let walker = FileManager.default.enumerator(at: URL(fileURLWithPath: directory),
                                                          includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey]) else {
            throw Failure(description: "--files \(directory): not a readable directory")
        }
        var files: [String] = []
        for case let url as URL in walker {
            let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
            guard values?.isRegularFile == true, values?.isSymbolicLink != true else { continue }
            if sharedLibrariesOnly && !url.lastPathComponent.contains(".so") { continue }
            guard access(url.path, R_OK) == 0 else { continue }
            files.append(url.path)
        }
        files.sort()
        guard !files.isEmpty else { throw Failure(description: "--files \(directory): no readable files in it") }
        return files
    }

    /// The toolchain's shared libraries: the library directory of the Swift runtime this binary
    /// runs on (…/usr/lib, from libswiftCore.so's place), or the system's (/usr/lib) for a binary
    /// linked statically.
    static func toolchainLibraries() throws -> [String] {
        let maps = String(decoding: (try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd()) ?? Data(), as: UTF8.self)
        let runtime = maps.split(separator: "\n").lazy.compactMap { line -> String? in
            guard let slash = line.firstIndex(of: "/"), line.hasSuffix("/libswiftCore.so") else { return nil }
            return String(line[slash...])
        }.first
        let directory = runtime.map { URL(fileURLWithPath: $0).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path } ?? "/usr/lib"
        return try list(directory, sharedLibrariesOnly: true)
    }

    /// The files of `directory` (every regular file), or the toolchain's shared libraries.
    static func forRuns(_ directory: String?) throws -> [String] {
        try directory.map { try list($0, sharedLibrariesOnly: false) } ?? toolchainLibraries()
    }

    /// Reads the files one after the other into `pages` pages at `memory`, each from a page
    /// boundary (as a loader maps them), from the first again if they end before the pages do.
    static func load(_ files: [String], into memory: UnsafeMutableRawPointer, pages: Int) throws {
        let total = pages * 4096
        var offset = 0
        var loadedAny = false
        while offset < total {
            for path in files where offset < total {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                var got = 0
                while offset + got < total {
                    let n = read(fd, memory + offset + got, total - offset - got)
                    if n <= 0 { break }
                    got += n
                }
                if got > 0 { loadedAny = true }
                offset += (got + 4095) / 4096 * 4096
            }
            guard loadedAny else { throw Failure(description: "none of the \(files.count) files could be read") }
        }
    }
}
