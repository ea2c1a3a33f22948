/// Errors of the recall module: bad user input (unknown items, empty histories without a fallback) and
/// index files (stale, corrupted, faiss failures). Codes are a struct over a private enum so they can grow.
public struct RecallError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case unknownItem, ambiguousTitle, noChannel, invalidRequest, staleIndex, corruptIndex, index, io, corruptModel
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A history or exclude entry names no catalogue item.
        public static let unknownItem = Code(.unknownItem)
        /// A title matches several catalogue items.
        public static let ambiguousTitle = Code(.ambiguousTitle)
        /// No recall channel can serve the request (e.g. an empty history and a model file without popularity
        /// or content features).
        public static let noChannel = Code(.noChannel)
        /// K <= 0, an unknown channel, quotas that do not add up, and the like.
        public static let invalidRequest = Code(.invalidRequest)
        /// An index file built from a different item matrix.
        public static let staleIndex = Code(.staleIndex)
        /// An index file that cannot be parsed.
        public static let corruptIndex = Code(.corruptIndex)
        /// The HNSW graph (or faiss, in the benchmark) reported an error.
        public static let index = Code(.index)
        public static let io = Code(.io)
        /// The model's weights gave a non-finite user embedding (a damaged file whose values are finite but absurd).
        public static let corruptModel = Code(.corruptModel)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String
    /// Closest catalogue titles or ids, for unknown or ambiguous names.
    public var candidates: [String]

    public init(code: Code, message: String, candidates: [String] = []) {
        self.code = code
        self.message = message
        self.candidates = candidates
    }

    public var description: String { message }
}
