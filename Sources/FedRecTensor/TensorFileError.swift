/// A tensor file that cannot be read or written: names the file and what is wrong.
public struct TensorFileError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case io, truncated, corruptedHeader, unsupportedDType, badOffsets, missingTensor, wrongShape, nonFinite, badMetadata
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The file could not be opened, read, written or renamed.
        public static let io = Code(.io)
        /// The file is shorter than its header says.
        public static let truncated = Code(.truncated)
        /// The JSON header is malformed or has the wrong structure.
        public static let corruptedHeader = Code(.corruptedHeader)
        /// A tensor uses a dtype other than F32.
        public static let unsupportedDType = Code(.unsupportedDType)
        /// Data offsets are out of range, overlapping, not contiguous, or disagree with the shape.
        public static let badOffsets = Code(.badOffsets)
        /// A required tensor is absent.
        public static let missingTensor = Code(.missingTensor)
        /// A tensor has an unexpected shape.
        public static let wrongShape = Code(.wrongShape)
        /// A tensor holds NaN or infinity.
        public static let nonFinite = Code(.nonFinite)
        /// Required metadata is absent or invalid.
        public static let badMetadata = Code(.badMetadata)

        public var description: String { String(describing: wrapped) }
    }

    public var code: Code
    /// Path of the file.
    public var file: String
    public var message: String

    public init(code: Code, file: String, message: String) {
        self.code = code
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
