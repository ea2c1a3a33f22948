/// Why a differential-privacy configuration was refused or a privacy budget stops training.
///
/// `field` names the configuration field at fault (`"clipNorm"`, `"adaptiveClipping.targetQuantile"`, ...),
/// and the message names it too, so a CLI can print the message as it is.
public struct PrivacyError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidConfiguration
            case budgetExhausted
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A configuration value is out of range or inconsistent with another one.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// Running the requested steps would take the privacy loss past the budget (target epsilon).
        public static let budgetExhausted = Code(.budgetExhausted)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String
    /// The configuration field the error is about, if any.
    public var field: String?

    public init(code: Code, message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(code): \(message)" }
}
