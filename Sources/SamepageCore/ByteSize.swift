/// Parses sizes as operators write them: `4096`, `512K`, `512M`, `4G`, `1T` (binary units; an
/// optional trailing `B` or `iB` is accepted, case does not matter).
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        var s = Substring(text.trimmingCharacters(in: " \t")).uppercased()[...]
        if s.hasSuffix("IB"), s.dropLast(2).last.map({ "KMGT".contains($0) }) == true {
            s = s.dropLast(2)
        } else if s.hasSuffix("B") {
            s = s.dropLast()
        }
        var shift: UInt64 = 0
        switch s.last {
        case "K": shift = 10
        case "M": shift = 20
        case "G": shift = 30
        case "T": shift = 40
        default: break
        }
        if shift != 0 { s = s.dropLast() }
        guard !s.isEmpty, let value = UInt64(s) else { return nil }
        let (result, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : result
    }

    /// `1.5 GiB`-style text for humans.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        return "\(rounded) \(units[unit])"
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
