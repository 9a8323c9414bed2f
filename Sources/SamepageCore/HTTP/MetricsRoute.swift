/// What the metrics endpoint answers, decided from the request head alone (no I/O, so the
/// routing is unit-tested): `GET /metrics` and `GET /healthz`, 404 for other paths, 405 for
/// other methods on those two.
public enum MetricsRoute: Equatable, Sendable {
    case metrics
    case health
    case notFound
    case methodNotAllowed

    public static func route(_ head: HTTPRequestHead) -> MetricsRoute {
        let route: MetricsRoute
        switch head.path {
        case "/metrics": route = .metrics
        case "/healthz": route = .health
        default: return .notFound
        }
        return head.method == "GET" ? route : .methodNotAllowed
    }
}

/// A complete HTTP/1.1 response with a body; the connection closes after it.
public enum HTTPResponse {
    public static func encode(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
