// A client process for the end-to-end tests: it does one thing a real application would do and
// reports on stdout, so tests can check outcomes across process boundaries.
//
//   samepage-probe hold SOCKET ID        map ID read-only, print "ready", wait for stdin to close
//   samepage-probe cow SOCKET ID         map ID copy-on-write, overwrite it, check that the store
//                                        and a second mapping still hold the original bytes
import Glibc
import SamepageClient
import SamepageCore

func die(_ message: String) -> Never {
    var bytes = Array("samepage-probe: \(message)\n".utf8)
    _ = write(2, &bytes, bytes.count)
    exit(1)
}

func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(1, &bytes, bytes.count)
}

let arguments = CommandLine.arguments
guard arguments.count == 4, let id = ObjectID(arguments[3]) else {
    die("usage: samepage-probe hold|cow SOCKET ID")
}
do {
    let client = try SamepageClient(socketPath: arguments[2], name: "samepage-probe")
    switch arguments[1] {
    case "hold":
        let mapping = try client.map(id)
        var sum: UInt64 = 0
        for byte in mapping.bytes { sum = sum &* 31 &+ UInt64(byte) }
        say("ready \(mapping.length) \(sum)")
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
        try mapping.unmap()
    case "cow":
        let original = try client.get(id)
        let writable = try client.map(id, mode: .copyOnWrite)
        let bytes = writable.mutableBytes
        for i in 0..<bytes.count { bytes[i] = 0xAB }
        guard bytes.allSatisfy({ $0 == 0xAB }) else { die("copy-on-write mapping did not keep its writes") }
        let second = try client.map(id)
        guard second.bytes.elementsEqual(original) else { die("a write to a copy-on-write mapping changed another mapping") }
        guard try client.get(id) == original else { die("a write to a copy-on-write mapping changed the store") }
        try second.unmap()
        try writable.unmap()
        say("ok \(original.count)")
    default:
        die("unknown probe \(arguments[1])")
    }
} catch {
    die("\(error)")
}
