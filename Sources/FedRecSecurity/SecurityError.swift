/// An error from a libsodium call or from misuse of a security primitive.
public struct SecurityError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case libraryInitialisationFailed
            case operationFailed
            case invalidLength
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// `sodium_init()` returned -1.
        public static let libraryInitialisationFailed = Code(.libraryInitialisationFailed)
        /// A libsodium call returned a non-zero code.
        public static let operationFailed = Code(.operationFailed)
        /// A key, nonce or digest had the wrong length.
        public static let invalidLength = Code(.invalidLength)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
