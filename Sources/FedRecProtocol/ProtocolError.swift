public import GRPCCore

/// Why a message was refused at the protocol layer (chunking, decoding, enrolment, sealing). Carries the client
/// and round it concerns, so the coordinator can log it and go on with the round.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case malformedChunk
            case oversized
            case malformedPayload
            case wrongShape
            case nonFinite
            case notEnrolled
            case enrolmentRefused
            case authenticationFailed
            case replayed
            case stalePoll
            case stalledStream
            case unexpectedMessage
            case coordinatorMismatch
            case unavailable
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A chunk stream out of order, with a missing/extra chunk, or a header where data was expected.
        public static let malformedChunk = Code(.malformedChunk)
        /// A payload or chunk larger than the configured limit.
        public static let oversized = Code(.oversized)
        /// The (opened) payload bytes do not decode.
        public static let malformedPayload = Code(.malformedPayload)
        /// Decoded shapes do not match the model.
        public static let wrongShape = Code(.wrongShape)
        /// Decoded values are NaN or infinite.
        public static let nonFinite = Code(.nonFinite)
        /// The sender is not enrolled.
        public static let notEnrolled = Code(.notEnrolled)
        /// Enrolment refused: unknown identity, bad signature, stale challenge.
        public static let enrolmentRefused = Code(.enrolmentRefused)
        /// The envelope did not authenticate (tampered, wrong key, wrong context).
        public static let authenticationFailed = Code(.authenticationFailed)
        /// The envelope was already accepted, or is older than one that was.
        public static let replayed = Code(.replayed)
        /// A long poll stamped too far from the coordinator's clock (`PollBook.window`): a replay, or clocks that
        /// disagree.
        public static let stalePoll = Code(.stalePoll)
        /// A client stream still open past its time limit; the call is cut.
        public static let stalledStream = Code(.stalledStream)
        /// A message that makes no sense now (wrong round, not selected, unknown part).
        public static let unexpectedMessage = Code(.unexpectedMessage)
        /// The coordinator's identity differs from the pinned one.
        public static let coordinatorMismatch = Code(.coordinatorMismatch)
        /// The peer is not reachable or is shutting down.
        public static let unavailable = Code(.unavailable)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String
    public var client: String?
    public var round: Int?

    public init(code: Code, message: String, client: String? = nil, round: Int? = nil) {
        self.code = code
        self.message = message
        self.client = client
        self.round = round
    }

    public var description: String {
        var context: [String] = []
        if let round { context.append("round \(round)") }
        if let client { context.append("client '\(client)'") }
        return context.isEmpty ? "\(code): \(message)" : "\(code) (\(context.joined(separator: ", "))): \(message)"
    }

    /// The same error about `client` and `round` (keeps values already set).
    public func about(client: String?, round: Int?) -> ProtocolError {
        var copy = self
        copy.client = copy.client ?? client
        copy.round = copy.round ?? round
        return copy
    }
}

extension ProtocolError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .notEnrolled, .enrolmentRefused, .coordinatorMismatch: .permissionDenied
        case .authenticationFailed: .unauthenticated
        case .oversized: .resourceExhausted
        case .stalePoll: .outOfRange
        case .stalledStream: .deadlineExceeded
        case .unavailable: .unavailable
        case .replayed, .unexpectedMessage: .failedPrecondition
        default: .invalidArgument
        }
    }

    public var rpcErrorMessage: String { description }
}
