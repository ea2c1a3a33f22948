import FedRecSecurity
import FedRecTensor
import Foundation

/// The outcome of an import, held in memory: content, split and manifest (whose `files` and
/// `checksum` are filled in when the data set is encoded or written, see `encode()` and `write(to:force:)`).
public struct ImportResult: Sendable {
    public var manifest: DatasetManifest
    public var content: DatasetContent
    /// The `fedrec-eval-v1` split of `content`.
    public var split: Split
}

/// Imports MovieLens 100k, MovieLens latest-small and generic CSV/TSV interaction files.
///
/// Cleaning follows `fedrec-eval-v1`: ids are the original strings without surrounding whitespace
/// and CR; MovieLens keeps every rating row, generic files keep rows with `value > 0` (all rows without
/// a value column); per `(user, item)` the earliest interaction is kept (smallest integer timestamp;
/// equal or absent: first in file order); users with fewer than 5 interactions after de-duplication
/// are dropped once; items are never dropped. The catalogue is every distinct item id of the kept
/// rows (before the user filter) in order of first appearance.
public enum DatasetImporter {
    /// Users with fewer interactions (after de-duplication) are dropped.
    public static let minimumUserInteractions = 5

    /// The format of the source at `path`: a folder with `u.data` is ml-100k, one with `ratings.csv`
    /// and `movies.csv` ml-latest-small, one with `interactions.tsv`/`.csv` (or a single file) generic.
    public static func detectFormat(at path: String) throws -> SourceFormat {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError.at(.fileNotFound, file: path, "no such file or folder")
        }
        guard isDirectory.boolValue else { return .generic }
        let has = { (name: String) in FileManager.default.fileExists(atPath: join(path, name)) }
        if has("u.data") { return .ml100k }
        if has("ratings.csv") && has("movies.csv") { return .mlLatestSmall }
        if has("interactions.tsv") || has("interactions.csv") { return .generic }
        throw DataError(
            code: .unknownFormat,
            message: "\(path): unknown source format: expected u.data (ml-100k), ratings.csv + movies.csv "
                + "(ml-latest-small) or interactions.tsv/.csv (generic); give --format to choose",
            file: path)
    }

    /// Reads, cleans and featurises a source and computes its split, without writing anything.
    ///
    /// - Parameters:
    ///   - format: the source format, or nil to detect it (`detectFormat(at:)`).
    ///   - source: a source folder, or for the generic format also the interactions file itself.
    public static func importDataset(
        format: SourceFormat? = nil, source: String, options: ImportOptions = ImportOptions()
    ) throws -> ImportResult {
        try options.validate()
        let format = try format ?? detectFormat(at: source)
        var reader = SourceReader(options: options)
        let content: DatasetContent
        switch format {
        case .ml100k: content = try reader.readML100k(folder: source)
        case .mlLatestSmall: content = try reader.readMLLatestSmall(folder: source)
        case .generic: content = try reader.readGeneric(source: source)
        }
        guard !content.userIDs.isEmpty else {
            let dropped = reader.counts.usersDropped
            throw DataError.at(
                .emptyFile, file: source,
                "no user is left to train on: \(dropped) user(s) had fewer than \(minimumUserInteractions) "
                    + "distinct interactions, \(reader.counts.skippedRows) row(s) were skipped")
        }
        let split = Split(content: content)
        var counts = reader.counts
        counts.usersKept = content.userIDs.count
        counts.interactionsKept = content.interactions.count
        counts.catalogueItems = content.itemIDs.count
        counts.contentOnlyItems = content.contentOnlyItems.count
        counts.itemFeatureColumns = content.itemFeatures.columns
        counts.userFeatureColumns = content.userFeatures.columns
        let manifest = DatasetManifest(
            sourceFormat: format, sourceFiles: reader.sourceFiles, hasTimestamps: content.hasTimestamps,
            counts: counts,
            skippedReasons: reader.skipped.sorted { $0.key < $1.key }.map {
                DatasetManifest.SkipReason(reason: $0.key, count: $0.value.count, lines: $0.value.lines)
            },
            options: options)
        return ImportResult(manifest: manifest, content: content, split: split)
    }
}

@inline(__always) func join(_ folder: String, _ name: String) -> String {
    folder.hasSuffix("/") ? folder + name : folder + "/" + name
}

/// Reads the files of one source; accumulates counts, skip reasons and source digests.
struct SourceReader {
    let options: ImportOptions
    /// Most interaction rows read: rows, users and items are indexed with Int32 from here on (and this target
    /// is built without overflow checks), so a larger file is refused rather than wrapped.
    var maximumInteractionRows = Int(Int32.max)
    var counts = DatasetManifest.Counts()
    /// Per reason (`"<file>: <reason>"`): how many rows, and the first `SkipReason.listedLines` line numbers.
    var skipped: [String: (count: Int, lines: [Int])] = [:]
    var sourceFiles: [DatasetManifest.FileDigest] = []

    init(options: ImportOptions) {
        self.options = options
    }

    // MARK: Files

    /// The bytes of `path`, recording its digest; throws `fileNotFound` / `emptyFile`.
    mutating func read(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw DataError.at(.fileNotFound, file: path, "no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.at(.fileNotFound, file: path, "cannot be read")
        }
        var bytes = [UInt8](data)
        sourceFiles.append(
            DatasetManifest.FileDigest(
                name: (path as NSString).lastPathComponent, sha256: SHA256.hex(try SHA256.hash(bytes)),
                bytes: bytes.count))
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            throw DataError.at(
                .invalidField, file: path, line: 1,
                "the file is UTF-16; convert it to UTF-8 (e.g. with iconv -f UTF-16 -t UTF-8)")
        }
        // A UTF-8 byte-order mark (editors' "UTF-8 with BOM") is not part of the first id or column name.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard bytes.contains(where: { !ByteTable.Row.isSpace($0) && $0 != 0x0A }) else {
            throw DataError.at(.emptyFile, file: path, line: 1, "the file is empty")
        }
        return bytes
    }

    /// Reads `path` when it exists, else nil.
    mutating func readIfPresent(_ path: String) throws -> [UInt8]? {
        FileManager.default.fileExists(atPath: path) ? try read(path) : nil
    }

    /// Rethrows `error` unless `skipInvalid` is set and it is a `DataError` about a row, which is counted.
    mutating func skipOrThrow(_ error: any Error, file: String, content: Bool) throws {
        guard options.skipInvalid, let error = error as? DataError, error.line != nil else { throw error }
        do {
            let reason: String
            if error.code == .tooFewFields {
                reason = "too few fields"
            } else if error.code == .tooManyFields {
                reason = "too many fields"
            } else if let field = error.field {
                reason = "invalid '\(field)'"
            } else {
                reason = "invalid row"
            }
            let key = "\((file as NSString).lastPathComponent): \(reason)"
            var entry = skipped[key, default: (0, [])]
            entry.count += 1
            // Rows are read in file order, so the first lines seen are the first in the file.
            if entry.lines.count < DatasetManifest.SkipReason.listedLines, let line = error.line {
                entry.lines.append(line)
            }
            skipped[key] = entry
            if content { counts.skippedContentRows += 1 } else { counts.skippedRows += 1 }
        }
    }

    // MARK: Headers and fields

    /// Column positions found in a header.
    struct Header {
        var positions: [String: Int] = [:]
        /// Column names by position (as written), for messages.
        var names: [String] = []
    }

    /// Reads the header row; `required` canonical names must be present (aliases accepted).
    static func header(
        _ row: ByteTable.Row, file: String, aliases: [String: [String]], required: [String]
    ) throws -> Header {
        var header = Header()
        for index in 0..<row.count {
            var name = row.string(index)
            // A UTF-8 byte-order mark (spreadsheets' "CSV UTF-8") is not part of the first column's name.
            if index == 0 && row.line == 1 && name.hasPrefix("\u{FEFF}") { name.removeFirst() }
            header.names.append(name)
            let lower = name.lowercased()
            for (canonical, names) in aliases where names.contains(lower) {
                // Two columns for one role (`user,item,user`, or `rating` beside `value`): which to read is not
                // for the import to guess.
                if let earlier = header.positions[canonical] {
                    throw DataError.at(
                        .invalidField, file: file, line: row.line, field: name,
                        "columns \(earlier + 1) (\(header.names[earlier].debugDescription)) and \(index + 1) "
                            + "(\(name.debugDescription)) both give the '\(canonical)' column; keep one")
                }
                header.positions[canonical] = index
            }
        }
        for name in required where header.positions[name] == nil {
            let delimiter = row.table.delimiterName
            let found = header.names.map { $0.debugDescription }.joined(separator: ", ")
            throw DataError.at(
                .missingColumn, file: file, line: row.line, field: name,
                "the header has no column '\(name)' (found \(header.names.count) \(delimiter)-separated "
                    + "column(s): \(found)); check the delimiter and the column names")
        }
        return header
    }

    /// Throws when the row is malformed, shorter than `needed` fields, or has a non-empty field beyond the
    /// `names.count` its header (or format) names; `names` name fields by position.
    static func checkFields(_ row: ByteTable.Row, needed: Int, names: [String], file: String) throws {
        if let bad = row.malformedField {
            throw DataError.at(
                .invalidField, file: file, line: row.line, field: fieldName(names, bad),
                row.textAfterQuote
                    ? "text after the closing quote (a quoted field ends at its quote; double quotes inside it)"
                    : "unterminated quoted field (fields cannot span lines)")
        }
        let delimiter = row.table.delimiterName
        if row.count < needed {
            throw DataError.at(
                .tooFewFields, file: file, line: row.line, field: fieldName(names, row.count),
                "expected \(needed) \(delimiter)-separated fields, found \(row.count)")
        }
        // Empty trailing fields (a delimiter at the end of the line) are tolerated.
        if row.count > names.count, let extra = (names.count..<row.count).first(where: { !row.isEmpty($0) }) {
            throw DataError.at(
                .tooManyFields, file: file, line: row.line, field: fieldName(names, extra),
                "expected \(names.count) \(delimiter)-separated fields, found \(row.count) (quote a field that holds "
                    + "the delimiter)")
        }
    }

    static func fieldName(_ names: [String], _ index: Int) -> String {
        index < names.count ? names[index] : "#\(index + 1)"
    }

    /// The id in field `index`, which must not be empty.
    static func requireNonEmpty(_ row: ByteTable.Row, _ index: Int, name: String, file: String) throws {
        if row.isEmpty(index) {
            throw DataError.at(.invalidField, file: file, line: row.line, field: name, "empty id")
        }
    }

    /// Ids are compared as UTF-8 text: bytes that are not UTF-8 would be replaced by U+FFFD and could merge
    /// distinct ids, so they are refused.
    static func requireValidID(_ row: ByteTable.Row, _ index: Int, name: String, file: String) throws {
        if let problem = row.idProblem(index) {
            throw DataError.at(.invalidField, file: file, line: row.line, field: name, problem)
        }
    }

    static func number(_ row: ByteTable.Row, _ index: Int, name: String, file: String) throws -> Double {
        guard let value = row.double(index) else {
            throw DataError.at(
                .invalidField, file: file, line: row.line, field: name,
                "expected a number, got \(row.string(index).debugDescription)")
        }
        return value
    }

    static func integer(_ row: ByteTable.Row, _ index: Int, name: String, file: String) throws -> Int64 {
        guard let value = row.int64(index) else {
            throw DataError.at(
                .invalidField, file: file, line: row.line, field: name,
                "expected an integer, got \(row.string(index).debugDescription)")
        }
        return value
    }

    // MARK: Interactions

    /// Where the interaction fields are.
    struct InteractionLayout {
        var user: Int
        var item: Int
        var value: Int?
        var timestamp: Int?
        var names: [String]
        /// Generic format: keep only rows with `value > 0`.
        var positiveValuesOnly: Bool
        /// Fields a row must have.
        let needed: Int

        init(user: Int, item: Int, value: Int?, timestamp: Int?, names: [String], positiveValuesOnly: Bool) {
            self.user = user
            self.item = item
            self.value = value
            self.timestamp = timestamp
            self.names = names
            self.positiveValuesOnly = positiveValuesOnly
            self.needed = max(user, item, value ?? 0, timestamp ?? 0) + 1
        }
    }

    /// Raw, validated interaction rows before cleaning.
    struct RawInteractions {
        var users = IDInterner(capacity: 1 << 12)
        var items = IDInterner(capacity: 1 << 12)
        var rowUsers: [Int32] = []
        var rowItems: [Int32] = []
        var valueTexts: [String] = []
        var timestampTexts: [String] = []
        var timestamps: [Int64] = []
    }

    /// Parses the interaction table; the first row is a header when `layout` is nil (then `header`
    /// builds the layout from it).
    mutating func readInteractions(
        _ table: ByteTable, layout fixed: InteractionLayout?,
        header makeLayout: (ByteTable.Row) throws -> InteractionLayout
    ) throws -> RawInteractions {
        var raw = RawInteractions()
        let estimate = table.bytes.count / 16
        raw.rowUsers.reserveCapacity(estimate)
        raw.rowItems.reserveCapacity(estimate)
        raw.valueTexts.reserveCapacity(estimate)
        raw.timestampTexts.reserveCapacity(estimate)
        raw.timestamps.reserveCapacity(estimate)
        var layout = fixed
        var valueInterner = IDInterner(capacity: 64)
        let file = table.name
        try table.forEachRow { row in
            guard let layout else {
                layout = try makeLayout(row)
                return
            }
            counts.rawRows += 1
            guard raw.rowUsers.count < maximumInteractionRows else {
                throw DataError.at(
                    .tooLarge, file: file, line: row.line,
                    "more than \(maximumInteractionRows) interaction rows (fedrec indexes rows, users and items with "
                        + "32-bit integers)")
            }
            do {
                // Hot path: field names are looked up only when a check fails.
                if row.count < layout.needed || row.count > layout.names.count || row.malformedField != nil {
                    try Self.checkFields(row, needed: layout.needed, names: layout.names, file: file)
                }
                if row.isEmpty(layout.user) || row.isEmpty(layout.item) {
                    try Self.requireNonEmpty(row, layout.user, name: layout.names[layout.user], file: file)
                    try Self.requireNonEmpty(row, layout.item, name: layout.names[layout.item], file: file)
                }
                var valueText = ""
                if let column = layout.value {
                    guard let value = row.double(column) else {
                        _ = try Self.number(row, column, name: layout.names[column], file: file)
                        return
                    }
                    if layout.positiveValuesOnly && !(value > 0) {
                        counts.nonPositiveValueRows += 1
                        return
                    }
                    // Few distinct value texts: interning avoids a String per row.
                    let interned = row.intern(column, into: &valueInterner)
                    valueText = valueInterner.ids[Int(interned)]
                }
                var timestamp: Int64 = 0
                var timestampText = ""
                if let column = layout.timestamp {
                    guard let value = row.int64(column) else {
                        _ = try Self.integer(row, column, name: layout.names[column], file: file)
                        return
                    }
                    timestamp = value
                    timestampText = row.string(column)
                }
                try Self.requireValidID(row, layout.user, name: layout.names[layout.user], file: file)
                try Self.requireValidID(row, layout.item, name: layout.names[layout.item], file: file)
                raw.rowUsers.append(row.intern(layout.user, into: &raw.users))
                raw.rowItems.append(row.intern(layout.item, into: &raw.items))
                raw.valueTexts.append(valueText)
                raw.timestampTexts.append(timestampText)
                raw.timestamps.append(timestamp)
            } catch {
                try skipOrThrow(error, file: file, content: false)
            }
        }
        if layout == nil || counts.rawRows == 0 {
            throw DataError.at(.emptyFile, file: file, "no data rows")
        }
        return raw
    }

    /// De-duplicates, drops users with fewer than 5 interactions, orders users by id bytes.
    mutating func clean(_ raw: RawInteractions, hasTimestamps: Bool) -> (userIDs: [String], interactions: Interactions)
    {
        let n = raw.rowUsers.count
        var keep = [Bool](repeating: true, count: n)
        var firstRow: [UInt64: Int32] = [:]
        firstRow.reserveCapacity(n)
        for r in 0..<n {
            let key = UInt64(UInt32(bitPattern: raw.rowUsers[r])) << 32 | UInt64(UInt32(bitPattern: raw.rowItems[r]))
            if let k = firstRow[key] {
                counts.duplicatesRemoved += 1
                if hasTimestamps && raw.timestamps[r] < raw.timestamps[Int(k)] {
                    keep[Int(k)] = false
                    firstRow[key] = Int32(r)
                } else {
                    keep[r] = false
                }
            } else {
                firstRow[key] = Int32(r)
            }
        }
        var perUser = [Int](repeating: 0, count: raw.users.count)
        for r in 0..<n where keep[r] { perUser[Int(raw.rowUsers[r])] += 1 }
        let keptRaw = (0..<raw.users.count).filter { perUser[$0] >= DatasetImporter.minimumUserInteractions }
        let sorted = keptRaw.sorted { byteLess(raw.users.ids[$0], raw.users.ids[$1]) }
        var newIndex = [Int32](repeating: -1, count: raw.users.count)
        for (position, user) in sorted.enumerated() { newIndex[user] = Int32(position) }
        counts.usersDropped = raw.users.count - sorted.count
        var interactions = Interactions()
        interactions.reserveCapacity(n)
        for r in 0..<n where keep[r] {
            let user = newIndex[Int(raw.rowUsers[r])]
            guard user >= 0 else {
                counts.interactionsOfDroppedUsers += 1
                continue
            }
            interactions.append(
                user: user, item: raw.rowItems[r], value: raw.valueTexts[r], timestampText: raw.timestampTexts[r],
                timestamp: raw.timestamps[r])
        }
        return (sorted.map { raw.users.ids[$0] }, interactions)
    }

    // MARK: Item content

    /// Content of one entry of an items file.
    struct ItemMeta: Equatable {
        var id: String
        var title: String
        var genres: [String]
        var year: Int?
    }

    /// Items-file entries in file order (first occurrence of an id wins) and tags by item id.
    struct ItemContent {
        var metas: [ItemMeta] = []
        var indexByID: [String: Int] = [:]
        var tags: [String: [String]] = [:]

        /// Lines the items were read from, for messages.
        var lineByID: [String: Int] = [:]

        /// Adds an item's content. A repeated id with the same content is kept once; with other content it is an
        /// error naming both lines (which one to believe is not for the import to guess).
        mutating func add(_ meta: ItemMeta, file: String, line: Int) throws {
            if let index = indexByID[meta.id] {
                guard metas[index] == meta else {
                    throw DataError.at(
                        .invalidField, file: file, line: line, field: "id",
                        "item \(meta.id.debugDescription) is listed again with other content (first on line "
                            + "\(lineByID[meta.id] ?? 0))")
                }
                return
            }
            indexByID[meta.id] = metas.count
            lineByID[meta.id] = line
            metas.append(meta)
        }
    }

    /// Builds catalogue columns, item features and content-only items.
    func assembleItems(
        itemIDs: [String], content: ItemContent, builder: ItemFeatureBuilder
    ) throws -> (
        titles: [String], genres: [[String]], years: [Int?], features: SparseMatrix, contentOnly: [ContentItem]
    ) {
        var titles: [String] = []
        var genres: [[String]] = []
        var years: [Int?] = []
        var rows: [[(column: Int, value: Float)]] = []
        var inCatalogue = Set<String>()
        var entries = 0
        for id in itemIDs {
            inCatalogue.insert(id)
            let meta = content.indexByID[id].map { content.metas[$0] }
            titles.append(meta?.title ?? "")
            genres.append(meta?.genres ?? [])
            years.append(meta?.year)
            let row = builder.row(
                genres: meta?.genres ?? [], year: meta?.year, title: meta?.title, tags: content.tags[id] ?? [])
            rows.append(row.map { (Int($0.column), $0.value) })
            entries += row.count
        }
        // The feature matrix indexes its entries with Int32 (and this target has no overflow checks).
        guard entries < Int(Int32.max), content.metas.count < Int(Int32.max) else {
            throw DataError(
                code: .tooLarge,
                message: "the items' content features have \(entries) entries over \(content.metas.count) items: more "
                    + "than 32-bit indices can address")
        }
        var contentOnly: [ContentItem] = []
        for meta in content.metas where !inCatalogue.contains(meta.id) {
            contentOnly.append(
                ContentItem(
                    id: meta.id, title: meta.title, genres: meta.genres, year: meta.year,
                    features: builder.row(
                        genres: meta.genres, year: meta.year, title: meta.title, tags: content.tags[meta.id] ?? [])))
        }
        return (titles, genres, years, SparseMatrix(columns: builder.columns, rows: rows), contentOnly)
    }

    /// Reads a tags file (`userId,movieId,tag,timestamp` with a header) into `content.tags`, leaving out every
    /// tag applied after its user's fit period (`cutoffs`, see `fitCutoffs`): such a tag is behaviour from the
    /// held-out slices (the validation and test periods of that user), and as item content it would reach the
    /// model in every fold. Tags of users without kept interactions are kept.
    mutating func readTags(_ path: String, cutoffs: [String: Int64], into content: inout ItemContent) throws {
        let table = ByteTable(name: path, bytes: try read(path), delimiter: 0x2C, quoting: true)
        var header: Header?
        try table.forEachRow { row in
            guard let found = header else {
                header = try Self.header(
                    row, file: path,
                    aliases: [
                        "user": ["userid", "user", "user_id"], "item": ["movieid", "item", "item_id"],
                        "tag": ["tag"], "timestamp": ["timestamp"],
                    ],
                    required: ["user", "item", "tag", "timestamp"])
                return
            }
            let (user, item, tag, time) =
                (found.positions["user"]!, found.positions["item"]!, found.positions["tag"]!,
                 found.positions["timestamp"]!)
            do {
                try Self.checkFields(row, needed: max(user, item, tag, time) + 1, names: found.names, file: path)
                try Self.requireNonEmpty(row, user, name: found.names[user], file: path)
                try Self.requireNonEmpty(row, item, name: found.names[item], file: path)
                let timestamp = try Self.integer(row, time, name: found.names[time], file: path)
                if let cutoff = cutoffs[row.string(user)], timestamp > cutoff {
                    counts.tagsAfterFitPeriod += 1
                    return
                }
                content.tags[row.string(item), default: []].append(row.string(tag))
            } catch {
                try skipOrThrow(error, file: path, content: true)
            }
        }
    }

    /// Per kept user id, the timestamp of the last interaction of their fit period (train minus validation, in
    /// protocol order); `Int64.min` for a user whose fit period is empty. What comes later is held out in some
    /// fold.
    static func fitCutoffs(userIDs: [String], itemIDs: [String], interactions: Interactions) -> [String: Int64] {
        let order = ProtocolOrder(
            interactions: interactions, userIDs: userIDs, itemIDs: itemIDs, hasTimestamps: true)
        var cutoffs: [String: Int64] = [:]
        cutoffs.reserveCapacity(userIDs.count)
        for u in userIDs.indices {
            let n = order.offsets[u + 1] - order.offsets[u]
            let train = n - ProtocolOrder.testCount(n)
            let fit = train - ProtocolOrder.validationCount(train)
            cutoffs[userIDs[u]] =
                fit > 0 ? interactions.timestamps[Int(order.rows[order.offsets[u] + fit - 1])] : Int64.min
        }
        return cutoffs
    }

    // MARK: ml-100k

    static let ml100kGenres = [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
        "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
    ]

    static let ageBuckets = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]

    static func ageBucket(_ age: Int64) -> Int {
        switch age {
        case ..<18: 0
        case 18...24: 1
        case 25...34: 2
        case 35...44: 3
        case 45...49: 4
        case 50...55: 5
        default: 6
        }
    }

    mutating func readML100k(folder: String) throws -> DatasetContent {
        let dataPath = join(folder, "u.data")
        let data = ByteTable(name: dataPath, bytes: try read(dataPath), delimiter: 0x09, quoting: false)
        let layout = InteractionLayout(
            user: 0, item: 1, value: 2, timestamp: 3, names: ["user id", "item id", "rating", "timestamp"],
            positiveValuesOnly: false)
        let raw = try readInteractions(data, layout: layout) { _ in layout }
        let (userIDs, interactions) = clean(raw, hasTimestamps: true)

        // Genres (u.genre: name|index), optional.
        var genreNames = Self.ml100kGenres
        let genrePath = join(folder, "u.genre")
        if let bytes = try readIfPresent(genrePath) {
            var names: [String] = []
            try ByteTable(name: genrePath, bytes: bytes, delimiter: 0x7C, quoting: false).forEachRow { row in
                do {
                    try Self.requireNonEmpty(row, 0, name: "genre", file: genrePath)
                    names.append(row.string(0))
                } catch {
                    try skipOrThrow(error, file: genrePath, content: true)
                }
            }
            genreNames = names
        }

        // Items (u.item, Latin-1): id|title|release date|video release|URL|genre flags.
        var content = ItemContent()
        let itemPath = join(folder, "u.item")
        if let bytes = try readIfPresent(itemPath) {
            let names = ["movie id", "title", "release date", "video release date", "IMDb URL"] + genreNames
            try ByteTable(name: itemPath, bytes: bytes, delimiter: 0x7C, quoting: false).forEachRow { row in
                do {
                    try Self.checkFields(row, needed: names.count, names: names, file: itemPath)
                    try Self.requireNonEmpty(row, 0, name: names[0], file: itemPath)
                    var genres: [String] = []
                    for (offset, genre) in genreNames.enumerated() {
                        let flag = row.int64(5 + offset)
                        guard flag == 0 || flag == 1 else {
                            throw DataError.at(
                                .invalidField, file: itemPath, line: row.line, field: genre,
                                "expected a genre flag 0 or 1, got \(row.string(5 + offset).debugDescription)")
                        }
                        if flag == 1 { genres.append(genre) }
                    }
                    let title = row.string(1, latin1: true)
                    let release = row.string(2, latin1: true)
                    var year = Int(release.suffix(4))
                    if release.count < 4 || year == nil { year = ItemFeatureBuilder.trailingYear(title) }
                    try content.add(
                        ItemMeta(id: row.string(0), title: title, genres: genres, year: year), file: itemPath,
                        line: row.line)
                } catch {
                    try skipOrThrow(error, file: itemPath, content: true)
                }
            }
        }
        let builder = ItemFeatureBuilder(
            genreNames: genreNames, hasYear: true, titleBuckets: options.titleBuckets, tagBuckets: nil)
        let items = try assembleItems(itemIDs: raw.items.ids, content: content, builder: builder)

        // Users (u.user: id|age|gender|occupation|zip) and occupations (u.occupation), optional.
        var occupations: [String] = []
        let occupationPath = join(folder, "u.occupation")
        if let bytes = try readIfPresent(occupationPath) {
            try ByteTable(name: occupationPath, bytes: bytes, delimiter: 0x7C, quoting: false).forEachRow { row in
                let name = row.string(0)
                if !occupations.contains(name) { occupations.append(name) }
            }
        }
        let attributeNames = ["age", "gender", "occupation", "zip"]
        var attributesByUser: [String: [String]] = [:]
        var featuresByUser: [String: [FeatureEntry]] = [:]
        let userPath = join(folder, "u.user")
        let userBytes = try readIfPresent(userPath)
        var userFeatureNames: [String] = []
        var userFeatures = SparseMatrix.empty(rows: userIDs.count)
        var userAttributeNames: [String] = []
        var userAttributes = [[String]](repeating: [], count: userIDs.count)
        if let userBytes {
            var parsed: [(id: String, age: Int64, gender: String, occupation: String, row: [String])] = []
            var userLines: [String: (index: Int, line: Int)] = [:]
            let names = ["user id"] + attributeNames
            try ByteTable(name: userPath, bytes: userBytes, delimiter: 0x7C, quoting: false).forEachRow { row in
                do {
                    try Self.checkFields(row, needed: 4, names: names, file: userPath)
                    try Self.requireNonEmpty(row, 0, name: names[0], file: userPath)
                    let age = try Self.integer(row, 1, name: "age", file: userPath)
                    guard (0...150).contains(age) else {
                        throw DataError.at(
                            .invalidField, file: userPath, line: row.line, field: "age",
                            "expected an age in 0...150, got \(age)")
                    }
                    let gender = row.string(2)
                    guard gender == "M" || gender == "F" else {
                        throw DataError.at(
                            .invalidField, file: userPath, line: row.line, field: "gender",
                            "expected M or F, got \(gender.debugDescription)")
                    }
                    let attributes = (1..<5).map { $0 < row.count ? row.string($0) : "" }
                    let id = row.string(0)
                    if !occupations.isEmpty, !occupations.contains(row.string(3)) {
                        throw DataError.at(
                            .invalidField, file: userPath, line: row.line, field: "occupation",
                            "\(row.string(3).debugDescription) is not listed in \(occupationPath)")
                    }
                    if let first = userLines[id] {
                        // The same row again is harmless; other attributes leave no way to tell which is right.
                        guard parsed[first.index].row == attributes else {
                            throw DataError.at(
                                .invalidField, file: userPath, line: row.line, field: "user id",
                                "user \(id.debugDescription) is listed again with other attributes (first on line "
                                    + "\(first.line))")
                        }
                        return
                    }
                    userLines[id] = (parsed.count, row.line)
                    parsed.append((id, age, gender, row.string(3), attributes))
                } catch {
                    try skipOrThrow(error, file: userPath, content: true)
                }
            }
            if occupations.isEmpty {
                occupations = Set(parsed.map(\.occupation)).sorted(by: byteLess)
            }
            var occupationColumn: [String: Int] = [:]
            for (index, name) in occupations.enumerated() { occupationColumn[name] = index }
            for user in parsed where attributesByUser[user.id] == nil {
                attributesByUser[user.id] = user.row
                var row = [
                    FeatureEntry(column: Int32(Self.ageBucket(user.age)), value: 1),
                    FeatureEntry(column: Int32(7 + (user.gender == "F" ? 0 : 1)), value: 1),
                ]
                if let column = occupationColumn[user.occupation] {
                    row.append(FeatureEntry(column: Int32(9 + column), value: 1))
                }
                featuresByUser[user.id] = row
            }
            userFeatureNames =
                Self.ageBuckets.map { "age:\($0)" } + ["gender:F", "gender:M"] + occupations.map { "occupation:\($0)" }
            userFeatures = SparseMatrix(
                columns: userFeatureNames.count,
                rows: userIDs.map { id in (featuresByUser[id] ?? []).map { (Int($0.column), $0.value) } })
            userAttributeNames = attributeNames
            userAttributes = userIDs.map { attributesByUser[$0] ?? ["", "", "", ""] }
        }
        return DatasetContent(
            sourceFormat: .ml100k, userIDs: userIDs, userAttributeNames: userAttributeNames,
            userAttributes: userAttributes, itemIDs: raw.items.ids, titles: items.titles, genres: items.genres,
            years: items.years, itemFeatures: items.features, itemFeatureNames: builder.names,
            userFeatures: userFeatures, userFeatureNames: userFeatureNames, interactions: interactions,
            hasTimestamps: true, contentOnlyItems: items.contentOnly)
    }

    // MARK: ml-latest-small

    mutating func readMLLatestSmall(folder: String) throws -> DatasetContent {
        let ratingsPath = join(folder, "ratings.csv")
        let ratings = ByteTable(name: ratingsPath, bytes: try read(ratingsPath), delimiter: 0x2C, quoting: true)
        let raw = try readInteractions(ratings, layout: nil) { row in
            let header = try Self.header(
                row, file: ratingsPath,
                aliases: [
                    "userId": ["userid"], "movieId": ["movieid"], "rating": ["rating"], "timestamp": ["timestamp"],
                ],
                required: ["userId", "movieId", "rating", "timestamp"])
            return InteractionLayout(
                user: header.positions["userId"]!, item: header.positions["movieId"]!,
                value: header.positions["rating"]!, timestamp: header.positions["timestamp"]!,
                names: header.names, positiveValuesOnly: false)
        }
        let (userIDs, interactions) = clean(raw, hasTimestamps: true)

        var content = ItemContent()
        let moviesPath = join(folder, "movies.csv")
        let movies = ByteTable(name: moviesPath, bytes: try read(moviesPath), delimiter: 0x2C, quoting: true)
        var header: Header?
        var genreSet = Set<String>()
        try movies.forEachRow { row in
            guard let found = header else {
                header = try Self.header(
                    row, file: moviesPath,
                    aliases: ["movieId": ["movieid"], "title": ["title"], "genres": ["genres"]],
                    required: ["movieId", "title", "genres"])
                return
            }
            let (id, title, genresColumn) =
                (found.positions["movieId"]!, found.positions["title"]!, found.positions["genres"]!)
            do {
                try Self.checkFields(
                    row, needed: max(id, title, genresColumn) + 1, names: found.names, file: moviesPath)
                try Self.requireNonEmpty(row, id, name: found.names[id], file: moviesPath)
                let titleText = row.string(title)
                let genres = Self.splitList(row.string(genresColumn)).filter { $0 != "(no genres listed)" }
                genreSet.formUnion(genres)
                try Self.requireValidID(row, id, name: found.names[id], file: moviesPath)
                try content.add(
                    ItemMeta(
                        id: row.string(id), title: titleText, genres: genres,
                        year: ItemFeatureBuilder.trailingYear(titleText)), file: moviesPath, line: row.line)
            } catch {
                try skipOrThrow(error, file: moviesPath, content: true)
            }
        }
        let tagsPath = join(folder, "tags.csv")
        let hasTags = FileManager.default.fileExists(atPath: tagsPath)
        if hasTags {
            let cutoffs = Self.fitCutoffs(userIDs: userIDs, itemIDs: raw.items.ids, interactions: interactions)
            try readTags(tagsPath, cutoffs: cutoffs, into: &content)
        }
        let builder = ItemFeatureBuilder(
            genreNames: genreSet.sorted(by: byteLess), hasYear: true, titleBuckets: options.titleBuckets,
            tagBuckets: hasTags ? options.tagBuckets : nil)
        let items = try assembleItems(itemIDs: raw.items.ids, content: content, builder: builder)
        return DatasetContent(
            sourceFormat: .mlLatestSmall, userIDs: userIDs, userAttributeNames: [],
            userAttributes: [[String]](repeating: [], count: userIDs.count), itemIDs: raw.items.ids,
            titles: items.titles, genres: items.genres, years: items.years, itemFeatures: items.features,
            itemFeatureNames: builder.names, userFeatures: .empty(rows: userIDs.count), userFeatureNames: [],
            interactions: interactions, hasTimestamps: true, contentOnlyItems: items.contentOnly)
    }

    /// `a|b|c` → `["a", "b", "c"]` (trimmed, empty parts dropped).
    static func splitList(_ text: String) -> [String] {
        text.split(separator: "|").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

    // MARK: Generic

    static let interactionAliases: [String: [String]] = [
        "user": ["user", "user_id", "userid"],
        "item": ["item", "item_id", "itemid", "movieid"],
        "value": ["value", "rating", "weight"],
        "timestamp": ["timestamp", "time", "ts"],
    ]

    /// A delimited table whose delimiter (tab, else comma) is detected from its first non-blank line.
    static func detectTable(name: String, bytes: [UInt8]) -> ByteTable {
        var start = 0
        while start < bytes.count && (ByteTable.Row.isSpace(bytes[start]) || bytes[start] == 0x0A) { start += 1 }
        var end = start
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        let tab = bytes[start..<end].contains(0x09)
        return ByteTable(name: name, bytes: bytes, delimiter: tab ? 0x09 : 0x2C, quoting: !tab)
    }

    mutating func readGeneric(source: String) throws -> DatasetContent {
        var isDirectory: ObjCBool = false
        var interactionsPath = source
        var itemsPath = options.itemsFile
        if FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory), isDirectory.boolValue {
            let tsv = join(source, "interactions.tsv")
            interactionsPath = FileManager.default.fileExists(atPath: tsv) ? tsv : join(source, "interactions.csv")
            if itemsPath == nil {
                for name in ["items.tsv", "items.csv"] where FileManager.default.fileExists(atPath: join(source, name))
                {
                    itemsPath = join(source, name)
                    break
                }
            }
        }
        let table = Self.detectTable(name: interactionsPath, bytes: try read(interactionsPath))
        var hasTimestamps = false
        let raw = try readInteractions(table, layout: nil) { row in
            let header = try Self.header(
                row, file: interactionsPath, aliases: Self.interactionAliases, required: ["user", "item"])
            hasTimestamps = header.positions["timestamp"] != nil
            return InteractionLayout(
                user: header.positions["user"]!, item: header.positions["item"]!, value: header.positions["value"],
                timestamp: header.positions["timestamp"], names: header.names, positiveValuesOnly: true)
        }
        let (userIDs, interactions) = clean(raw, hasTimestamps: hasTimestamps)

        var content = ItemContent()
        var genreSet = Set<String>()
        var hasTitles = false
        var hasTags = false
        if let itemsPath {
            let items = Self.detectTable(name: itemsPath, bytes: try read(itemsPath))
            var header: Header?
            try items.forEachRow { row in
                guard let found = header else {
                    let found = try Self.header(
                        row, file: itemsPath,
                        aliases: [
                            "item": ["item", "item_id", "itemid", "movieid", "id"], "title": ["title", "name"],
                            "genres": ["genres", "genre"], "tags": ["tags", "tag"], "year": ["year"],
                        ],
                        required: ["item"])
                    hasTitles = found.positions["title"] != nil
                    hasTags = found.positions["tags"] != nil
                    header = found
                    return
                }
                let p = found.positions
                do {
                    try Self.checkFields(row, needed: p.values.max()! + 1, names: found.names, file: itemsPath)
                    try Self.requireNonEmpty(row, p["item"]!, name: found.names[p["item"]!], file: itemsPath)
                    try Self.requireValidID(row, p["item"]!, name: found.names[p["item"]!], file: itemsPath)
                    let id = row.string(p["item"]!)
                    let title = p["title"].map { row.string($0) } ?? ""
                    let genres = p["genres"].map { Self.splitList(row.string($0)) } ?? []
                    genreSet.formUnion(genres)
                    var year = ItemFeatureBuilder.trailingYear(title)
                    if let column = p["year"], !row.isEmpty(column) {
                        year = Int(try Self.integer(row, column, name: found.names[column], file: itemsPath))
                    }
                    try content.add(
                        ItemMeta(id: id, title: title, genres: genres, year: year), file: itemsPath, line: row.line)
                    if let column = p["tags"] {
                        content.tags[id, default: []].append(contentsOf: Self.splitList(row.string(column)))
                    }
                } catch {
                    try skipOrThrow(error, file: itemsPath, content: true)
                }
            }
        }
        let builder = ItemFeatureBuilder(
            genreNames: genreSet.sorted(by: byteLess), hasYear: itemsPath != nil,
            titleBuckets: hasTitles ? options.titleBuckets : nil, tagBuckets: hasTags ? options.tagBuckets : nil)
        let items = try assembleItems(itemIDs: raw.items.ids, content: content, builder: builder)
        return DatasetContent(
            sourceFormat: .generic, userIDs: userIDs, userAttributeNames: [],
            userAttributes: [[String]](repeating: [], count: userIDs.count), itemIDs: raw.items.ids,
            titles: items.titles, genres: items.genres, years: items.years, itemFeatures: items.features,
            itemFeatureNames: builder.names, userFeatures: .empty(rows: userIDs.count), userFeatureNames: [],
            interactions: interactions, hasTimestamps: hasTimestamps, contentOnlyItems: items.contentOnly)
    }
}
