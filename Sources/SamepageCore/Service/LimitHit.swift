/// A cap a request ran into. The service refuses the request either way; the event loop also
/// hears of it (`Service.onLimitHit`) to log it and count it, because an operator who sees
/// clients refused needs to know which knob to turn.
public enum LimitKind: String, Sendable, CaseIterable {
    /// `--max-uploads`
    case uploads
    /// `--max-mappings`
    case mappings
    /// `--max-objects`
    case objects
    /// `--max-unstable`
    case unstable
    /// `--max-upload-pages`
    case uploadPages = "upload_pages"
    /// Shared buffers attached by one connection.
    case buffers
    /// More candidates in one scan request than the protocol allows.
    case scanBatch = "scan_batch"
    /// `--region-size`: the shared page budget is spent.
    case region
}

extension Service {
    /// Reports the hit and makes the failure to send back.
    func limitReached(_ kind: LimitKind, _ session: Session, _ message: String,
                      code: ErrorCode = .limitExceeded) -> RequestFailure {
        onLimitHit?(kind, session)
        return RequestFailure(code, message)
    }
}
