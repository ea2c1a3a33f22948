public import Foundation

/// A JSON document's `DecodingError` in words: the dotted path of the field at fault (nil when the decoder names
/// none) and what was wrong with it.
///
/// Foundation's decoder on Linux reports a number that does not fit its field (2.5 or 1e30 where an `Int`
/// belongs) as "The given data was not valid JSON." with no path; when the document does parse as JSON, this
/// says that a number does not fit instead of calling well-formed JSON invalid.
public struct JSONDecodingProblem: Sendable, Equatable, CustomStringConvertible {
    public let field: String?
    public let message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    /// Nil when `error` is not a `DecodingError`.
    public init?(_ error: any Error, json: Data) {
        guard let error = error as? DecodingError else { return nil }
        switch error {
        case .keyNotFound(let key, let context):
            field = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            message = "is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            field = Self.path(context)
            message = context.debugDescription
        case .dataCorrupted(let context):
            field = Self.path(context)
            if field == nil, (try? JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])) != nil {
                message =
                    "a number does not fit its field (a fraction, or a number too large, where a whole number "
                    + "belongs); the JSON itself is well formed"
            } else {
                // The parser's own words (what and where) when the text is not JSON at all.
                message =
                    context.underlyingError.map { "\(context.debugDescription) (\($0))" } ?? context.debugDescription
            }
        @unknown default:
            field = nil
            message = "\(error)"
        }
    }

    public var description: String { (field.map { "field '\($0)': " } ?? "") + message }

    private static func path(_ context: DecodingError.Context) -> String? {
        context.codingPath.isEmpty ? nil : context.codingPath.map(\.stringValue).joined(separator: ".")
    }
}
