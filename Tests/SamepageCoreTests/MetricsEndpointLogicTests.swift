import Testing
@testable import SamepageCore

/// The metrics endpoint's pure parts: Prometheus names, the HTTP request line, routing.
@Suite("Metrics naming and HTTP parsing")
struct MetricsEndpointLogicTests {
    @Test func statisticsBecomePrefixedMetricNames() {
        #expect(PrometheusNaming.metricName(forStatistic: "pages_sharing") == "samepage_pages_sharing")
        #expect(PrometheusNaming.metricName(forStatistic: "ksm_zero_pages") == "samepage_ksm_zero_pages")
        #expect(PrometheusNaming.sanitized("a-b.c") == "a_b_c")
        #expect(PrometheusNaming.sanitized("9lives") == "_lives")
        #expect(PrometheusNaming.sanitized("") == "_")
    }

    @Test func everyStatisticHasAValidNameAndItsOwnHelp() throws {
        let harness = ServiceHarness()
        let client = try harness.client(uid: 1000)
        for statistic in harness.service.statistics(of: client.session.domain) {
            let name = PrometheusNaming.metricName(forStatistic: statistic.name)
            #expect(name == "samepage_" + statistic.name, "KSM's names are already valid metric names")
            #expect(!PrometheusNaming.help(forStatistic: statistic.name).hasPrefix("Samepage statistic"), "\(statistic.name)")
        }
    }

    @Test func requestKindsAreSnakeCase() {
        #expect(PrometheusNaming.snakeCase(String(describing: MessageKind.putPages)) == "put_pages")
        #expect(PrometheusNaming.snakeCase(String(describing: MessageKind.stats)) == "stats")
        #expect(PrometheusNaming.snakeCase("mergeScan") == "merge_scan")
    }

    @Test func aCompleteGetIsParsed() {
        let request = Array("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n".utf8)
        #expect(HTTPRequestHead.parse(request) == .request(HTTPRequestHead(method: "GET", path: "/metrics")))
        #expect(HTTPRequestHead.parse(Array("GET /healthz HTTP/1.0\n\n".utf8)) == .request(HTTPRequestHead(method: "GET", path: "/healthz")))
    }

    @Test func aPartialHeadAsksForMore() {
        #expect(HTTPRequestHead.parse(Array("GET /metrics HTTP/1.1\r\nHost:".utf8)) == .incomplete)
        #expect(HTTPRequestHead.parse(Array("GET /met".utf8)) == .incomplete)
        #expect(HTTPRequestHead.parse([UInt8]()) == .incomplete)
    }

    @Test("garbage is malformed, as soon as its first line is in", arguments: [
        "garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "\u{1}\u{2}\u{3}\n", "GET /\u{7f} HTTP/1.1\r\n\r\n",
    ])
    func garbage(_ text: String) {
        #expect(HTTPRequestHead.parse(Array(text.utf8)) == .malformed)
    }

    @Test func routes() {
        #expect(MetricsRoute.route(HTTPRequestHead(method: "GET", path: "/metrics")) == .metrics)
        #expect(MetricsRoute.route(HTTPRequestHead(method: "GET", path: "/healthz")) == .health)
        #expect(MetricsRoute.route(HTTPRequestHead(method: "POST", path: "/metrics")) == .methodNotAllowed)
        #expect(MetricsRoute.route(HTTPRequestHead(method: "GET", path: "/")) == .notFound)
        #expect(MetricsRoute.route(HTTPRequestHead(method: "DELETE", path: "/other")) == .notFound)
    }

    @Test func responsesCarryLengthAndClose() {
        let text = String(decoding: HTTPResponse.encode(status: 503, body: Array("draining\n".utf8)), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(text.contains("Content-Length: 9\r\n"))
        #expect(text.contains("Connection: close\r\n"))
        #expect(text.hasSuffix("\r\n\r\ndraining\n"))
    }
}
