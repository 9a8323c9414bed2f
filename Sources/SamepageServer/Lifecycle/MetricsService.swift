import SamepageSystem
import ServiceLifecycle

/// The metrics endpoint as a `Service`: its blocking responder runs on a thread of its own.
/// samepaged lists it before the loop, and ServiceGroup shuts services down in reverse order,
/// so the endpoint keeps answering (`/healthz` 503) while the loop drains, and stops after.
public struct MetricsService: Service {
    let endpoint: MetricsEndpoint

    public init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    public func run() async throws {
        let endpoint = endpoint
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    do {
                        try NamedThread.start(name: "samepaged-http") {
                            endpoint.serve()
                            continuation.resume()
                        }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } onGracefulShutdown: {
                endpoint.stop()
            }
        } onCancel: {
            endpoint.stop()
        }
    }
}
