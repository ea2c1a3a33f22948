import FedRecTensor
import Foundation

/// Options of an import; stored in the manifest so a data set records how it was made.
public struct ImportOptions: Codable, Sendable, Equatable {
    /// Hash buckets for title tokens (FNV-1a 64 of the lower-cased word, modulo this). At least 1.
    public var titleBuckets: Int
    /// Hash buckets for tags (FNV-1a 64 of the lower-cased, trimmed tag, modulo this). At least 1.
    public var tagBuckets: Int
    /// Skip malformed rows (counted in the manifest) instead of failing.
    public var skipInvalid: Bool
    /// Generic format only: an items file (`item`, `title`, `genres`/`tags`, optional `year`).
    public var itemsFile: String?

    public init(titleBuckets: Int = 256, tagBuckets: Int = 256, skipInvalid: Bool = false, itemsFile: String? = nil) {
        self.titleBuckets = titleBuckets
        self.tagBuckets = tagBuckets
        self.skipInvalid = skipInvalid
        self.itemsFile = itemsFile
    }

    /// Throws `DataError.Code.invalidOptions` for out-of-range values.
    public func validate() throws {
        guard (1...1 << 24).contains(titleBuckets) else {
            throw DataError(
                code: .invalidOptions, message: "title buckets must be in 1...16777216, got \(titleBuckets)")
        }
        guard (1...1 << 24).contains(tagBuckets) else {
            throw DataError(code: .invalidOptions, message: "tag buckets must be in 1...16777216, got \(tagBuckets)")
        }
    }
}

/// `manifest.json` of a data-set folder (format `fedrec-dataset`, version 2; version 1 kept ml-latest-small tags
/// applied after their user's fit period, see `Counts.tagsAfterFitPeriod`).
///
/// `checksum` is the SHA-256 (lower-case hex) of the text made of one line `<sha256>  <name>\n` per
/// data file (every file of the folder except `manifest.json`), in byte order of the file name —
/// the output of `sha256sum` over the sorted files. `files` lists the same digests per file.
public struct DatasetManifest: Codable, Sendable, Equatable {
    public static let formatName = "fedrec-dataset"
    public static let currentVersion = 2

    /// A file with its SHA-256 and size.
    public struct FileDigest: Codable, Sendable, Equatable {
        public var name: String
        public var sha256: String
        public var bytes: Int
        public init(name: String, sha256: String, bytes: Int) {
            self.name = name
            self.sha256 = sha256
            self.bytes = bytes
        }
    }

    /// A reason rows were skipped, with how many and where.
    public struct SkipReason: Codable, Sendable, Equatable {
        /// The most line numbers kept per reason.
        public static let listedLines = 5

        public var reason: String
        public var count: Int
        /// The first (at most `listedLines`) skipped rows' line numbers in their file, ascending; nil in manifests
        /// written before they were kept.
        public var lines: [Int]?
        public init(reason: String, count: Int, lines: [Int]? = nil) {
            self.reason = reason
            self.count = count
            self.lines = lines
        }
    }

    /// What the import kept and dropped.
    public struct Counts: Codable, Sendable, Equatable {
        /// Non-blank data rows of the interaction file (including skipped and filtered rows).
        public var rawRows = 0
        /// Interaction rows skipped as invalid (`--skip-invalid`).
        public var skippedRows = 0
        /// Rows of the items/users/tags files skipped as invalid.
        public var skippedContentRows = 0
        /// ml-latest-small: tags left out because their user applied them after the fit period (held-out
        /// behaviour; see the README's data section).
        public var tagsAfterFitPeriod = 0
        /// Generic format: rows dropped by the `value > 0` filter.
        public var nonPositiveValueRows = 0
        /// Later duplicates of a `(user, item)` pair.
        public var duplicatesRemoved = 0
        /// Interactions of users dropped by the <5 filter (after de-duplication).
        public var interactionsOfDroppedUsers = 0
        public var interactionsKept = 0
        public var usersKept = 0
        public var usersDropped = 0
        public var catalogueItems = 0
        public var contentOnlyItems = 0
        public var itemFeatureColumns = 0
        public var userFeatureColumns = 0
        public init() {}
    }

    public var format: String
    public var formatVersion: Int
    public var sourceFormat: SourceFormat
    public var sourceFiles: [FileDigest]
    public var hasTimestamps: Bool
    public var counts: Counts
    /// Why rows were skipped: `"<file>: <reason>"` with a count, sorted by reason.
    public var skippedReasons: [SkipReason]
    public var options: ImportOptions
    /// Digests of the data files (all but `manifest.json`), by name.
    public var files: [FileDigest]
    public var checksum: String

    public init(
        sourceFormat: SourceFormat, sourceFiles: [FileDigest], hasTimestamps: Bool, counts: Counts,
        skippedReasons: [SkipReason], options: ImportOptions, files: [FileDigest] = [], checksum: String = ""
    ) {
        self.format = Self.formatName
        self.formatVersion = Self.currentVersion
        self.sourceFormat = sourceFormat
        self.sourceFiles = sourceFiles
        self.hasTimestamps = hasTimestamps
        self.counts = counts
        self.skippedReasons = skippedReasons
        self.options = options
        self.files = files
        self.checksum = checksum
    }

    /// Deterministic JSON (sorted keys, snake_case, pretty-printed, trailing LF).
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return Array(try encoder.encode(self)) + [0x0A]
    }

    /// Decodes `manifest.json`; `file` names it in errors.
    public static func decode(_ bytes: [UInt8], file: String) throws -> DatasetManifest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        // Check the format header first so that a newer version reports a version mismatch.
        struct Header: Decodable {
            var format: String?
            var formatVersion: Int?
        }
        guard let header = try? decoder.decode(Header.self, from: Data(bytes)) else {
            throw DataError.at(.corruptDataset, file: file, "not a JSON object")
        }
        guard header.format == formatName else {
            throw DataError.at(
                .formatVersionMismatch, file: file, field: "format",
                "expected format '\(formatName)', found '\(header.format ?? "none")'")
        }
        guard header.formatVersion == currentVersion else {
            throw DataError.at(
                .formatVersionMismatch, file: file, field: "format_version",
                "expected format version \(currentVersion), found \(header.formatVersion.map(String.init) ?? "none")"
                    + (header.formatVersion.map { $0 < currentVersion } == true
                        ? " (an older import: run `fedrec data import` on its source again)" : ""))
        }
        do {
            return try decoder.decode(DatasetManifest.self, from: Data(bytes))
        } catch let error as DecodingError {
            guard let problem = JSONDecodingProblem(error, json: Data(bytes)) else {
                throw DataError.at(.corruptDataset, file: file, "\(error)")
            }
            throw DataError.at(.corruptDataset, file: file, field: problem.field, problem.message)
        } catch {
            throw DataError.at(.corruptDataset, file: file, "\(error)")
        }
    }
}
