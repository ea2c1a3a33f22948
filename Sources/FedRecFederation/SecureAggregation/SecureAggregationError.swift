/// The four stages of a SecAgg+ round, in order.
public enum SecureAggregationStage: Int, Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    case advertiseKeys = 1
    case shareKeys = 2
    case maskedInput = 3
    case unmask = 4

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .advertiseKeys: "advertise keys"
        case .shareKeys: "share keys"
        case .maskedInput: "masked input"
        case .unmask: "unmask"
        }
    }
}

/// Why a secure-aggregation message was refused, a peer excluded, or a round aborted.
///
/// Rejections (bad signature, tampered share, duplicate, unknown sender, wrong round, malformed bytes) are thrown
/// to the caller, which logs them while the round goes on; `roundAborted` is final for the round. `client` is the
/// participant index the error is about (the sender of a refused message, the owner of an unrecoverable secret),
/// `clientID` its id when known.
public struct SecureAggregationError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidParameters
            case malformedMessage
            case wrongRound
            case wrongStage
            case unknownSender
            case duplicateMessage
            case invalidSignature
            case invalidKey
            case tamperedShare
            case invalidShares
            case invalidInput
            case refusedRequest
            case tooFewNeighbours
            case roundAborted
            case cryptographicFailure
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The round parameters are inconsistent (see `SecureAggregationParameters.validate()`).
        public static let invalidParameters = Code(.invalidParameters)
        /// Bytes that do not parse: truncated, oversized, bad tag or version, a field out of range (names it).
        public static let malformedMessage = Code(.malformedMessage)
        /// The message belongs to another round.
        public static let wrongRound = Code(.wrongRound)
        /// The call or message does not fit the current stage (too late, too early, or after the round ended).
        public static let wrongStage = Code(.wrongStage)
        /// The sender (or a named peer) is not a participant, not in the stage's surviving set, or not a neighbour.
        public static let unknownSender = Code(.unknownSender)
        /// The sender already delivered this stage's message, or a list names someone twice.
        public static let duplicateMessage = Code(.duplicateMessage)
        /// An advertised key pair's Ed25519 signature does not verify against the sender's identity key.
        public static let invalidSignature = Code(.invalidSignature)
        /// A public key is unusable (small-order X25519 point, or a key reflected from the receiver).
        public static let invalidKey = Code(.invalidKey)
        /// An encrypted share failed to authenticate (tampered, re-routed, replayed) or has the wrong length.
        public static let tamperedShare = Code(.tamperedShare)
        /// A set of shares is not what the stage requires (missing, extra, or not addressed to a neighbour).
        public static let invalidShares = Code(.invalidShares)
        /// The client's own input is unusable (wrong length, non-finite values or weight).
        public static let invalidInput = Code(.invalidInput)
        /// A client refused an unmask request (it asks for both secrets of one peer, or drops the client itself).
        public static let refusedRequest = Code(.refusedRequest)
        /// Fewer than `threshold` neighbours are left to hold a client's shares.
        public static let tooFewNeighbours = Code(.tooFewNeighbours)
        /// The round cannot complete (too few survivors, or a secret that cannot be reconstructed).
        public static let roundAborted = Code(.roundAborted)
        /// A libsodium / libgfshare operation failed.
        public static let cryptographicFailure = Code(.cryptographicFailure)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String
    /// The stage the error arose in.
    public var stage: SecureAggregationStage?
    /// The participant index the error is about.
    public var client: Int?
    /// That participant's id, when known.
    public var clientID: ClientID?

    public init(
        code: Code, message: String, stage: SecureAggregationStage? = nil, client: Int? = nil,
        clientID: ClientID? = nil
    ) {
        self.code = code
        self.message = message
        self.stage = stage
        self.client = client
        self.clientID = clientID
    }

    public var description: String {
        var context: [String] = []
        if let stage { context.append("stage '\(stage)'") }
        if let client {
            context.append(clientID.map { "client \(client) '\($0)'" } ?? "client \(client)")
        }
        return context.isEmpty ? "\(code): \(message)" : "\(code) (\(context.joined(separator: ", "))): \(message)"
    }
}
