/// A configuration that samepaged refuses, naming the key and where its value came from, so
/// the operator knows which line, variable or flag to fix.
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The option (config key) at fault, when one is.
    public var key: String?
    public var message: String

    public init(key: String?, _ message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { message }
}
