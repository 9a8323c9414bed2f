#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-for-byte page equality: the only thing that decides whether two pages are shared.
@inline(__always)
public func memcmpPage(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> Bool {
    memcmp(a, b, Page.size) == 0
}

@inline(__always)
func copyPage(to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer) {
    memcpy(destination, source, Page.size)
}
