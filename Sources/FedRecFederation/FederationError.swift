/// The id a coordinator knows a client by (its identity name, `PublicIdentity.name`).
public typealias ClientID = String

/// Why an update, a client or a round was refused. Carries the client and round it is about, so the caller
/// can log it and go on.
public struct FederationError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case wrongShape
            case nonFinite
            case normTooLarge
            case noExamples
            case tooManyExamples
            case notInCohort
            case duplicateUpdate
            case droppedOut
            case wrongRound
            case roundNotOpen
            case tooFewUpdates
            case retriesExhausted
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The delta or item-embedding gradient has the wrong length or shape.
        public static let wrongShape = Code(.wrongShape)
        /// The update holds NaN or infinity (or a non-finite loss).
        public static let nonFinite = Code(.nonFinite)
        /// An L2 norm exceeds the configured bound.
        public static let normTooLarge = Code(.normTooLarge)
        /// The example count is not positive.
        public static let noExamples = Code(.noExamples)
        /// The example count exceeds the configured bound.
        public static let tooManyExamples = Code(.tooManyExamples)
        /// The sender is not in the round's cohort.
        public static let notInCohort = Code(.notInCohort)
        /// The sender already delivered an update this round.
        public static let duplicateUpdate = Code(.duplicateUpdate)
        /// The sender was marked as dropped out this round.
        public static let droppedOut = Code(.droppedOut)
        /// The update names another round than the open one.
        public static let wrongRound = Code(.wrongRound)
        /// No round is collecting updates.
        public static let roundNotOpen = Code(.roundNotOpen)
        /// The deadline passed (or every member answered) with fewer updates than the minimum.
        public static let tooFewUpdates = Code(.tooFewUpdates)
        /// A round failed more often than allowed.
        public static let retriesExhausted = Code(.retriesExhausted)

        public var description: String { String(describing: wrapped) }

        /// Whether `UpdateValidator` raises this code (the update itself is bad; its sender is excluded).
        public var isValidationFailure: Bool {
            switch wrapped {
            case .wrongShape, .nonFinite, .normTooLarge, .noExamples, .tooManyExamples: true
            default: false
            }
        }
    }

    public var code: Code
    public var message: String
    /// The client the error is about, if any.
    public var client: ClientID?
    /// The round the error is about, if any.
    public var round: Int?

    public init(code: Code, message: String, client: ClientID? = nil, round: Int? = nil) {
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
}
