import Foundation

/// A one-line progress display on a terminal (stderr), silent otherwise.
final class Progress: @unchecked Sendable {
    private let enabled = isatty(2) == 1
    private var last = Date.distantPast

    func update(_ phase: String, seconds: Double, savedMiB: Double) {
        guard enabled, Date().timeIntervalSince(last) > 0.2 else { return }
        last = Date()
        let width = 30
        let filled = min(width, Int(seconds * 4) % (width + 1))
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(Data(String(format: "\r%@ [%@] %6.1f s %8.1f MiB saved ", phase, bar, seconds, savedMiB).utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// The side-by-side table of merge results, with ratios to the kernel's KSM at full speed.
enum MergeTable {
    static func render(_ results: [MergeBenchmark.Result], title: String, note: String?, floor: MergeFloor? = nil) -> String {
        var lines = [title, ""]
        let header = ["", "converge s", "CPU s", "saved MiB", "saved MiB (Pss)", "(Pss, net)", "VMAs added/proc"]
        var rows: [[String]] = [header]
        for r in results {
            rows.append([r.name + (r.converged ? "" : " (timed out)"), String(format: "%.2f", r.convergeSeconds),
                         String(format: "%.2f", r.cpuSeconds), String(format: "%.1f", r.savedByCounters / 1_048_576),
                         String(format: "%.1f", r.savedByPss / 1_048_576), String(format: "%.1f", r.savedNet / 1_048_576),
                         String(format: "%.0f", Double(r.vmasAdded.reduce(0, +)) / Double(max(1, r.vmasAdded.count)))])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max()! + 2 }
        for row in rows {
            lines.append(zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined())
        }
        if let samepage = results.first(where: { $0.name == "samepage" }),
           let kernel = results.first(where: { $0.name == "ksm full speed" }) {
            lines.append("")
            func ratio(_ a: Double, _ b: Double) -> String { b > 0 ? String(format: "%.2f", a / b) : "-" }
            lines.append("samepage / ksm full speed: converge \(ratio(samepage.convergeSeconds, kernel.convergeSeconds)), "
                         + "CPU \(ratio(samepage.cpuSeconds, kernel.cpuSeconds)), "
                         + "saved \(ratio(samepage.savedByCounters, kernel.savedByCounters)) "
                         + "(Pss \(ratio(samepage.savedByPss, kernel.savedByPss)), "
                         + "net \(ratio(samepage.savedNet, kernel.savedNet)))")
            if kernel.bookkeepingOutsidePss > 0 {
                lines.append(String(format: "net: Pss less bookkeeping no Pss shows (the kernel's rmap items, %.1f MiB by its general_profit)",
                                    kernel.bookkeepingOutsidePss / 1_048_576))
            }
        }
        for r in results where r.name == "samepage" {
            lines.append(String(format: "samepage CPU: %.2f s clients + %.2f s server", r.clientCPUSeconds, r.engineCPUSeconds))
        }
        if let floor {
            lines.append(floor.summary)
            var against: [String] = []
            for r in results where r.cpuSeconds > 0 && r.convergeSeconds > 0 {
                against.append(String(format: "%@ %.1fx its CPU, %.1fx its time", r.name, r.cpuSeconds / floor.cpuSeconds,
                                      r.convergeSeconds / floor.wallSeconds))
            }
            lines.append("against it: " + against.joined(separator: "; "))
        }
        if let note { lines += ["", note] }
        return lines.joined(separator: "\n")
    }

    static func json(_ results: [MergeBenchmark.Result], baselines: [String: Double], note: String?) -> String {
        func number(_ x: Double) -> String { x.isFinite ? String(format: "%.4f", x) : "null" }
        let entries = results.map { r in
            "{\"name\": \"\(r.name)\", \"converge_seconds\": \(number(r.convergeSeconds)), \"wall_seconds\": \(number(r.wallSeconds)), "
                + "\"cpu_seconds\": \(number(r.cpuSeconds)), \"client_cpu_seconds\": \(number(r.clientCPUSeconds)), "
                + "\"engine_cpu_seconds\": \(number(r.engineCPUSeconds)), \"saved_bytes\": \(number(r.savedByCounters)), "
                + "\"saved_bytes_pss\": \(number(r.savedByPss)), \"bookkeeping_outside_pss_bytes\": \(number(r.bookkeepingOutsidePss)), "
                + "\"saved_bytes_net\": \(number(r.savedNet)), \"vmas_added\": \(r.vmasAdded), \"converged\": \(r.converged)}"
        }
        let base = baselines.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \(number($0.value))" }.joined(separator: ", ")
        let noteField = note.map { ", \"note\": \"\($0)\"" } ?? ""
        return "{\"results\": [\(entries.joined(separator: ", "))], \"baselines\": {\(base)}\(noteField)}"
    }
}

/// MiB saved over time, one line per engine, as an SVG file.
enum SavingsPlot {
    static func svg(_ results: [MergeBenchmark.Result], title: String) -> String {
        let width = 720.0, height = 400.0, left = 60.0, bottom = 40.0, top = 30.0, right = 150.0
        let maxT = max(0.1, results.flatMap { $0.samples.map(\.0) }.max() ?? 1)
        let maxY = max(1, results.flatMap { $0.samples.map { $0.1 / 1_048_576 } }.max() ?? 1)
        let colors = ["#1b7f3b", "#c0392b", "#2c6fbb", "#8e44ad"]
        func x(_ t: Double) -> Double { left + t / maxT * (width - left - right) }
        func y(_ v: Double) -> Double { height - bottom - v / maxY * (height - bottom - top) }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(left)\" y=\"18\" font-size=\"14\">\(title)</text>\n"
        out += "<line x1=\"\(left)\" y1=\"\(y(0))\" x2=\"\(width - right)\" y2=\"\(y(0))\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(left)\" y1=\"\(y(0))\" x2=\"\(left)\" y2=\"\(top)\" stroke=\"black\"/>\n"
        for i in 0...4 {
            let v = maxY * Double(i) / 4, t = maxT * Double(i) / 4
            out += "<text x=\"\(left - 8)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(Int(v.rounded()))</text>\n"
            out += "<text x=\"\(x(t))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(String(format: "%.1f", t))</text>\n"
        }
        out += "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 6)\" text-anchor=\"middle\">seconds</text>\n"
        out += "<text x=\"14\" y=\"\((top + height - bottom) / 2)\" transform=\"rotate(-90 14 \((top + height - bottom) / 2))\" text-anchor=\"middle\">MiB saved</text>\n"
        for (i, r) in results.enumerated() {
            let color = colors[i % colors.count]
            let points = r.samples.map { String(format: "%.1f,%.1f", x($0.0), y($0.1 / 1_048_576)) }.joined(separator: " ")
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points)\"/>\n"
            out += "<text x=\"\(width - right + 10)\" y=\"\(top + 20 + Double(i) * 18)\" fill=\"\(color)\">\(r.name)</text>\n"
        }
        out += "</svg>\n"
        return out
    }
}
