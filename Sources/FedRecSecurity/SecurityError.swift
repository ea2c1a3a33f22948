/// An error from a libsodium call, from a message that failed to authenticate, or from a key file.
///
/// Each code names one way a message or key can be refused, so callers (and tests) can tell a tampered
/// message from a replayed one, an unenrolled sender from a bad signature.
public struct SecurityError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case libraryInitialisationFailed
            case operationFailed
            case invalidLength
            case authenticationFailed
            case invalidSignature
            case invalidPublicKey
            case malformedMessage
            case unsupportedVersion
            case unexpectedContext
            case replayedMessage
            case outOfOrderMessage
            case insecureKeyFile
            case invalidKeyFile
            case unknownIdentity
            case fileSystem
            case invalidShares
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// `sodium_init()` returned -1.
        public static let libraryInitialisationFailed = Code(.libraryInitialisationFailed)
        /// A libsodium call returned a non-zero code.
        public static let operationFailed = Code(.operationFailed)
        /// A key, nonce or digest had the wrong length.
        public static let invalidLength = Code(.invalidLength)
        /// An AEAD box did not open: tampered or truncated ciphertext, wrong key, nonce or associated data.
        public static let authenticationFailed = Code(.authenticationFailed)
        /// An Ed25519 signature did not verify.
        public static let invalidSignature = Code(.invalidSignature)
        /// A peer's public key is unusable (e.g. an X25519 point of small order).
        public static let invalidPublicKey = Code(.invalidPublicKey)
        /// A message is too short or its header cannot be parsed.
        public static let malformedMessage = Code(.malformedMessage)
        /// A message names a protocol version this build does not speak.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A message's header (client id, kind, round) is not what the receiver expects.
        public static let unexpectedContext = Code(.unexpectedContext)
        /// A message repeats a sequence number already accepted from its sender.
        public static let replayedMessage = Code(.replayedMessage)
        /// A message is older (round or sequence number) than one already accepted from its sender.
        public static let outOfOrderMessage = Code(.outOfOrderMessage)
        /// A secret-key file is readable or writable by group or others.
        public static let insecureKeyFile = Code(.insecureKeyFile)
        /// A key or allow-list file is malformed (names file, line and field).
        public static let invalidKeyFile = Code(.invalidKeyFile)
        /// A public identity is not on the allow-list.
        public static let unknownIdentity = Code(.unknownIdentity)
        /// Reading or writing a file failed.
        public static let fileSystem = Code(.fileSystem)
        /// Secret shares (or a request to split) are unusable: share number 0 or repeated, threshold out of
        /// range, no shares, or shares of different lengths.
        public static let invalidShares = Code(.invalidShares)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// The message alone: each says what failed in words (the code is for programs, `code`).
    public var description: String { message }
}
