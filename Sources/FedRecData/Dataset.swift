import FedRecSecurity
public import FedRecTensor
import Foundation

/// An imported data set: its manifest, content and `fedrec-eval-v1` split.
///
/// Invariants: `manifest.checksum` matches the folder it was loaded from (or would be written to);
/// `split.users[k].userIndex == k` indexes `userIDs`; split item indices index `itemIDs`.
public struct Dataset: Sendable {
    public let manifest: DatasetManifest
    public let content: DatasetContent
    /// The split, computed from the interactions per `fedrec-eval-v1`.
    public let split: Split
    private let indexByItemID: [String: Int]

    public init(manifest: DatasetManifest, content: DatasetContent, split: Split) {
        self.manifest = manifest
        self.content = content
        self.split = split
        var index: [String: Int] = [:]
        index.reserveCapacity(content.itemIDs.count)
        for (position, id) in content.itemIDs.enumerated() { index[id] = position }
        self.indexByItemID = index
    }

    /// SHA-256 over the data files (see `DatasetManifest.checksum`): interactions and users included.
    public var checksum: String { manifest.checksum }
    /// SHA-256 (lower-case hex) of the catalogue alone, in a form no interaction shapes: the feature names, then
    /// one line per catalogue item in byte order of its id (id, title, genres, year, content features, with the
    /// data-set files' escapes). It tells data sets of different catalogues apart for a model file released
    /// under differential privacy, where the data set's `checksum` (a function of every interaction, and of the
    /// item-index order, which is the order of first appearance in the interactions) may not appear.
    public var catalogueChecksum: String {
        var text: [UInt8] = []
        let order = itemIndicesInIDOrder
        for name in itemFeatureNames {
            DatasetFiles.appendEscaped(name, to: &text)
            text.append(0x09)
        }
        text.append(0x0A)
        for item in order {
            DatasetFiles.appendEscaped(itemIDs[item], to: &text)
            text.append(0x09)
            DatasetFiles.appendEscaped(titles[item], to: &text)
            text.append(0x09)
            DatasetFiles.appendEscaped(genres[item].joined(separator: "|"), to: &text)
            text.append(0x09)
            text += Array((years[item].map(String.init) ?? "").utf8)
            for (column, value) in itemFeatures.row(item) {
                text += Array("\t\(column):\(value)".utf8)
            }
            text.append(0x0A)
        }
        return (try? SHA256.hex(SHA256.hash(text))) ?? ""
    }

    /// The catalogue's item indices in byte order of their ids: the order a model released under differential
    /// privacy lists its items in, and deals their initial rows in (neither may follow the item-index order,
    /// which is the order the interactions first meet the items).
    public var itemIndicesInIDOrder: [Int] {
        itemIDs.indices.sorted { byteLess(itemIDs[$0], itemIDs[$1]) }
    }

    /// Kept users, in byte order of their id.
    public var userIDs: [String] { content.userIDs }
    /// The catalogue, in item-index order.
    public var itemIDs: [String] { content.itemIDs }
    /// Titles in catalogue order (`""` when unknown).
    public var titles: [String] { content.titles }
    /// Genres in catalogue order.
    public var genres: [[String]] { content.genres }
    /// Release years in catalogue order.
    public var years: [Int?] { content.years }
    /// Item features, one row per catalogue item.
    public var itemFeatures: SparseMatrix { content.itemFeatures }
    /// User features, one row per kept user (0 columns when the source has none).
    public var userFeatures: SparseMatrix { content.userFeatures }
    public var itemFeatureNames: [String] { content.itemFeatureNames }
    public var userFeatureNames: [String] { content.userFeatureNames }
    /// Kept users' interactions in original file order.
    public var interactions: Interactions { content.interactions }
    /// Items nobody rated (not scored), with their features, for cold start.
    public var contentOnlyItems: [ContentItem] { content.contentOnlyItems }

    /// The catalogue index (item index) of `id`, or nil when it is not in the catalogue.
    public func itemIndex(of id: String) -> Int? { indexByItemID[id] }

    // MARK: Loading

    /// Reads a data-set folder written by `ImportResult.write(to:force:)`.
    ///
    /// Checks the format name and version, then (unless `verifyChecksums` is false) every file's
    /// SHA-256 and the data-set checksum, then parses and cross-checks every file. Errors name the
    /// file and, for malformed content, the line and field.
    public static func load(from path: String, verifyChecksums: Bool = true) throws -> Dataset {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.at(.fileNotFound, file: path, "no such data-set folder")
        }
        func read(_ name: String) throws -> [UInt8] {
            let file = join(path, name)
            guard let data = fm.contents(atPath: file) else {
                throw DataError.at(.fileNotFound, file: file, "missing data-set file")
            }
            return [UInt8](data)
        }
        let manifestPath = join(path, DatasetFiles.manifest)
        let manifest = try DatasetManifest.decode(try read(DatasetFiles.manifest), file: manifestPath)
        var files: [String: [UInt8]] = [:]
        for name in DatasetFiles.dataFiles { files[name] = try read(name) }
        if verifyChecksums {
            let listed = Dictionary(manifest.files.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for name in DatasetFiles.dataFiles {
                guard let expected = listed[name] else {
                    throw DataError.at(.corruptDataset, file: manifestPath, field: "files", "does not list \(name)")
                }
                let bytes = files[name]!
                let actual = SHA256.hex(try SHA256.hash(bytes))
                guard actual == expected.sha256 && bytes.count == expected.bytes else {
                    throw DataError.at(
                        .checksumMismatch, file: join(path, name),
                        "SHA-256 \(actual) (\(bytes.count) bytes) differs from the manifest's \(expected.sha256) "
                            + "(\(expected.bytes) bytes): the file is corrupted or truncated")
                }
            }
            let sum = try DatasetFiles.checksum(manifest.files.sorted { byteLess($0.name, $1.name) })
            guard sum == manifest.checksum else {
                throw DataError.at(
                    .checksumMismatch, file: manifestPath, field: "checksum",
                    "data-set checksum \(sum) differs from the recorded \(manifest.checksum)")
            }
        }
        var parser = DatasetParser(folder: path, manifest: manifest, files: files)
        let content = try parser.parse()
        return Dataset(manifest: manifest, content: content, split: Split(content: content))
    }
}

/// Parses the data files of a folder into `DatasetContent`, validating as it goes.
struct DatasetParser {
    let folder: String
    let manifest: DatasetManifest
    let files: [String: [UInt8]]

    func table(_ name: String) -> ByteTable {
        ByteTable(name: join(folder, name), bytes: files[name]!, delimiter: 0x09, quoting: false)
    }

    func corrupt(_ row: ByteTable.Row, field: String?, _ detail: String) -> DataError {
        DataError.at(.corruptDataset, file: row.table.name, line: row.line, field: field, detail)
    }

    /// Checks the header line's fields against `expected`.
    func checkHeader(_ row: ByteTable.Row, _ expected: [String]) throws {
        let found = (0..<row.count).map { row.string($0) }
        guard found == expected else {
            throw corrupt(
                row, field: nil,
                "expected the header \(expected.joined(separator: "\\t").debugDescription), "
                    + "found \(row.rawLine.debugDescription)")
        }
    }

    func text(_ row: ByteTable.Row, _ index: Int) -> String {
        DatasetFiles.unescape(row.string(index))
    }

    func expectFields(_ row: ByteTable.Row, _ names: [String]) throws {
        guard row.count == names.count else {
            let field = names[min(row.count, names.count - 1)]
            throw DataError.at(
                row.count < names.count ? .tooFewFields : .corruptDataset, file: row.table.name, line: row.line,
                field: field, "expected \(names.count) tab-separated fields, found \(row.count)")
        }
    }

    /// Parses a catalogue-style file (`items.tsv`, `content_items.tsv`).
    func parseItems(_ name: String) throws -> [(id: String, title: String, genres: [String], year: Int?)] {
        var items: [(id: String, title: String, genres: [String], year: Int?)] = []
        var headerSeen = false
        let names = DatasetFiles.itemsHeader.components(separatedBy: "\t")
        try table(name).forEachRow { row in
            guard headerSeen else {
                try checkHeader(row, names)
                headerSeen = true
                return
            }
            try expectFields(row, names)
            var year: Int?
            if !row.isEmpty(3) {
                guard let value = row.int64(3) else { throw corrupt(row, field: "year", "expected an integer year") }
                year = Int(value)
            }
            let genres = text(row, 2)
            items.append(
                (text(row, 0), text(row, 1), genres.isEmpty ? [] : genres.components(separatedBy: "|"), year))
        }
        guard headerSeen else { throw DataError.at(.corruptDataset, file: join(folder, name), line: 1, "empty file") }
        return items
    }

    /// Parses a sparse-matrix file; `rows` and `columns` are the expected shape when known.
    func parseSparse(_ name: String, rows expectedRows: Int, columns expectedColumns: Int?) throws -> SparseMatrix {
        var shape: (rows: Int, columns: Int)?
        var offsets: [Int32] = [0]
        var indices: [Int32] = []
        var values: [Float] = []
        try table(name).forEachRow { row in
            guard let shape else {
                guard row.count == 3, row.string(0) == "sparse", let r = row.int64(1), let c = row.int64(2), r >= 0,
                    c >= 0
                else { throw corrupt(row, field: nil, "expected the header \"sparse\\t<rows>\\t<columns>\"") }
                guard r < Int64(Int32.max), c < Int64(Int32.max) else {
                    throw corrupt(row, field: nil, "\(r) x \(c) is beyond 32-bit indices")
                }
                guard r == expectedRows else {
                    throw corrupt(row, field: "rows", "expected \(expectedRows) rows, the header says \(r)")
                }
                if let expectedColumns, c != expectedColumns {
                    throw corrupt(row, field: "columns", "expected \(expectedColumns) columns, the header says \(c)")
                }
                shape = (Int(r), Int(c))
                return
            }
            guard row.int64(0) == Int64(offsets.count - 1) else {
                throw corrupt(
                    row, field: "row", "expected row \(offsets.count - 1), found \(row.string(0).debugDescription)")
            }
            guard offsets.count - 1 < shape.rows else {
                throw corrupt(row, field: "row", "more rows than the header's \(shape.rows)")
            }
            var previous = -1
            for k in 1..<row.count {
                let entry = row.string(k)
                let parts = entry.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, let column = Int(parts[0]), let value = Float(parts[1]), value.isFinite,
                    column > previous, column < shape.columns
                else {
                    throw corrupt(
                        row, field: "entry \(k)",
                        "expected <column>:<value> with columns ascending below \(shape.columns), "
                            + "found \(entry.debugDescription)")
                }
                previous = column
                guard indices.count < Int(Int32.max) else {
                    throw corrupt(row, field: "entry \(k)", "more entries than 32-bit indices can address")
                }
                indices.append(Int32(column))
                values.append(value)
            }
            offsets.append(Int32(indices.count))
        }
        guard let shape else { throw DataError.at(.corruptDataset, file: join(folder, name), line: 1, "empty file") }
        guard offsets.count - 1 == shape.rows else {
            throw DataError.at(
                .corruptDataset, file: join(folder, name),
                "the header says \(shape.rows) rows but the file has \(offsets.count - 1) (truncated?)")
        }
        return SparseMatrix(
            rows: shape.rows, columns: shape.columns, rowOffsets: offsets, indices: indices, values: values)
    }

    func parseNames(_ name: String) throws -> [String] {
        var names: [String] = []
        var headerSeen = false
        let header = DatasetFiles.namesHeader.components(separatedBy: "\t")
        try table(name).forEachRow { row in
            guard headerSeen else {
                try checkHeader(row, header)
                headerSeen = true
                return
            }
            try expectFields(row, header)
            guard row.int64(0) == Int64(names.count) else {
                throw corrupt(row, field: "column", "expected column \(names.count)")
            }
            names.append(text(row, 1))
        }
        guard headerSeen else { throw DataError.at(.corruptDataset, file: join(folder, name), line: 1, "empty file") }
        return names
    }

    mutating func parse() throws -> DatasetContent {
        let counts = manifest.counts
        // Catalogue.
        let catalogue = try parseItems(DatasetFiles.items)
        guard catalogue.count < Int(Int32.max) else {
            throw DataError.at(
                .tooLarge, file: join(folder, DatasetFiles.items), "more items than 32-bit indices can address")
        }
        var items = IDInterner(capacity: catalogue.count)
        for (position, item) in catalogue.enumerated() where items.intern(item.id) != Int32(position) {
            throw DataError.at(
                .corruptDataset, file: join(folder, DatasetFiles.items), line: position + 2, field: "item_id",
                "duplicate item id \(item.id.debugDescription)")
        }
        let contentOnly = try parseItems(DatasetFiles.contentItems)

        // Users.
        var userIDs: [String] = []
        var attributeNames: [String] = []
        var attributes: [[String]] = []
        var users = IDInterner(capacity: 1024)
        var headerSeen = false
        try table(DatasetFiles.users).forEachRow { row in
            guard headerSeen else {
                guard row.count >= 1, row.string(0) == "user_id" else {
                    throw corrupt(row, field: nil, "expected a header starting with \"user_id\"")
                }
                attributeNames = (1..<row.count).map { text(row, $0) }
                headerSeen = true
                return
            }
            try expectFields(row, ["user_id"] + attributeNames)
            let id = text(row, 0)
            if let last = userIDs.last, !byteLess(last, id) {
                throw corrupt(row, field: "user_id", "user ids must be unique and in byte order")
            }
            guard userIDs.count < Int(Int32.max) else {
                throw corrupt(row, field: "user_id", "more users than 32-bit indices can address")
            }
            _ = users.intern(id)
            userIDs.append(id)
            attributes.append((1..<row.count).map { text(row, $0) })
        }
        guard headerSeen else {
            throw DataError.at(.corruptDataset, file: join(folder, DatasetFiles.users), line: 1, "empty file")
        }

        // Interactions.
        var interactions = Interactions()
        // The manifest's count is a hint, not covered by the file checksums: a row takes at least 6 bytes
        // ("u\ti\t\t\n"), so the file's size bounds what is worth reserving (a huge count made the reservation's
        // size wrap and corrupt the heap).
        let expectedRows = min(max(0, counts.interactionsKept), (files[DatasetFiles.interactions]?.count ?? 0) / 6 + 1)
        interactions.reserveCapacity(expectedRows)
        headerSeen = false
        let interactionNames = DatasetFiles.interactionsHeader.components(separatedBy: "\t")
        let hasTimestamps = manifest.hasTimestamps
        var seen = Set<UInt64>()
        seen.reserveCapacity(expectedRows)
        try table(DatasetFiles.interactions).forEachRow { row in
            guard headerSeen else {
                try checkHeader(row, interactionNames)
                headerSeen = true
                return
            }
            try expectFields(row, interactionNames)
            let (us, ue) = row.trimmed(0)
            let (ist, ie) = row.trimmed(1)
            let escaped = row.buffer[us..<ue].contains(0x5C) || row.buffer[ist..<ie].contains(0x5C)
            guard let user = escaped ? users.lookup(text(row, 0)) : users.lookup(row.buffer, us, ue) else {
                throw corrupt(row, field: "user_id", "unknown user \(text(row, 0).debugDescription)")
            }
            guard let item = escaped ? items.lookup(text(row, 1)) : items.lookup(row.buffer, ist, ie) else {
                throw corrupt(row, field: "item_id", "item \(text(row, 1).debugDescription) is not in items.tsv")
            }
            guard seen.insert(UInt64(UInt32(user)) << 32 | UInt64(UInt32(item))).inserted else {
                throw corrupt(row, field: "item_id", "duplicate (user, item) pair")
            }
            var timestamp: Int64 = 0
            if hasTimestamps {
                guard let value = row.int64(3) else {
                    throw corrupt(row, field: "timestamp", "expected an integer, got \(row.string(3).debugDescription)")
                }
                timestamp = value
            } else if !row.isEmpty(3) {
                throw corrupt(row, field: "timestamp", "the data set has no timestamps")
            }
            interactions.append(
                user: user, item: item, value: text(row, 2), timestampText: text(row, 3), timestamp: timestamp)
        }
        guard headerSeen else {
            throw DataError.at(.corruptDataset, file: join(folder, DatasetFiles.interactions), line: 1, "empty file")
        }

        // Features.
        let itemFeatureNames = try parseNames(DatasetFiles.itemFeatureNames)
        let userFeatureNames = try parseNames(DatasetFiles.userFeatureNames)
        let itemFeatures = try parseSparse(
            DatasetFiles.itemFeatures, rows: catalogue.count, columns: itemFeatureNames.count)
        let userFeatures = try parseSparse(
            DatasetFiles.userFeatures, rows: userIDs.count, columns: userFeatureNames.count)
        let contentFeatures = try parseSparse(
            DatasetFiles.contentItemFeatures, rows: contentOnly.count, columns: itemFeatureNames.count)

        // Cross-checks against the manifest.
        let manifestPath = join(folder, DatasetFiles.manifest)
        for (field, expected, found) in [
            ("interactions_kept", counts.interactionsKept, interactions.count),
            ("users_kept", counts.usersKept, userIDs.count),
            ("catalogue_items", counts.catalogueItems, catalogue.count),
            ("content_only_items", counts.contentOnlyItems, contentOnly.count),
        ] where expected != found {
            throw DataError.at(
                .corruptDataset, file: manifestPath, field: field, "records \(expected) but the files hold \(found)")
        }

        let contentItems = contentOnly.enumerated().map { index, item in
            ContentItem(
                id: item.id, title: item.title, genres: item.genres, year: item.year,
                features: contentFeatures.row(index).map { FeatureEntry(column: Int32($0.column), value: $0.value) })
        }
        return DatasetContent(
            sourceFormat: manifest.sourceFormat, userIDs: userIDs, userAttributeNames: attributeNames,
            userAttributes: attributes, itemIDs: catalogue.map(\.id), titles: catalogue.map(\.title),
            genres: catalogue.map(\.genres), years: catalogue.map(\.year), itemFeatures: itemFeatures,
            itemFeatureNames: itemFeatureNames, userFeatures: userFeatures, userFeatureNames: userFeatureNames,
            interactions: interactions, hasTimestamps: hasTimestamps, contentOnlyItems: contentItems)
    }
}
