/// An error from importing, loading or exporting a data set.
///
/// Errors about file input name the file, the 1-based line and the field where known, both in
/// `message` and in the structured `file`, `line` and `field` properties.
public struct DataError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case fileNotFound
            case emptyFile
            case missingColumn
            case tooFewFields
            case tooManyFields
            case invalidField
            case unknownFormat
            case invalidOptions
            case formatVersionMismatch
            case checksumMismatch
            case corruptDataset
            case outputExists
            case ioFailure
            case tooLarge
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A required input file or data-set file does not exist or cannot be read.
        public static let fileNotFound = Code(.fileNotFound)
        /// A file holds no data (no header, or no rows).
        public static let emptyFile = Code(.emptyFile)
        /// A header lacks a needed column (often a wrong delimiter).
        public static let missingColumn = Code(.missingColumn)
        /// A row has fewer fields than needed.
        public static let tooFewFields = Code(.tooFewFields)
        /// A row has more non-empty fields than its header (or format) names: often a delimiter that should
        /// have been quoted.
        public static let tooManyFields = Code(.tooManyFields)
        /// A field is not valid (non-numeric rating or timestamp, unterminated quote, ...).
        public static let invalidField = Code(.invalidField)
        /// The source folder's format is neither given nor recognisable.
        public static let unknownFormat = Code(.unknownFormat)
        /// Import options are out of range.
        public static let invalidOptions = Code(.invalidOptions)
        /// A data-set folder has another format name or version.
        public static let formatVersionMismatch = Code(.formatVersionMismatch)
        /// A data-set file's SHA-256 differs from the manifest.
        public static let checksumMismatch = Code(.checksumMismatch)
        /// A data-set file is malformed.
        public static let corruptDataset = Code(.corruptDataset)
        /// The output folder exists and is not empty (use `force`).
        public static let outputExists = Code(.outputExists)
        /// Reading or writing the file system failed.
        public static let ioFailure = Code(.ioFailure)
        /// An input larger than fedrec can index (more than 2^31 - 1 interaction rows).
        public static let tooLarge = Code(.tooLarge)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    public var message: String
    /// The file the error is about (its name as given), if any.
    public var file: String?
    /// 1-based line number in `file`, if any.
    public var line: Int?
    /// The field (column name) concerned, if any.
    public var field: String?

    public init(code: Code, message: String, file: String? = nil, line: Int? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
        self.field = field
    }

    /// An error located in a file: the message reads `file, line N, field 'f': detail`.
    static func at(
        _ code: Code, file: String, line: Int? = nil, field: String? = nil, _ detail: String
    ) -> DataError {
        var prefix = file
        if let line { prefix += ", line \(line)" }
        if let field { prefix += ", field '\(field)'" }
        return DataError(code: code, message: "\(prefix): \(detail)", file: file, line: line, field: field)
    }

    public var description: String { message }
}
