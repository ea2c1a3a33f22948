import CFedRecFiles
import FedRecSecurity
import FedRecTensor
import Foundation

/// The files of a data-set folder (format `fedrec-dataset`, version 1).
///
/// All files are UTF-8 text with LF line endings and a header line; fields are separated by one tab.
/// Text fields escape `\` as `\\`, tab as `\t`, LF as `\n` and CR as `\r`.
///
/// Header names below are space-separated for reading; in the files they are tab-separated.
/// - `interactions.tsv` — `user_id item_id value timestamp`: kept users' interactions in original file
///   order, with the original value and timestamp text (empty where the source has none).
/// - `items.tsv` — `item_id title genres year`: the catalogue in item-index order; genres joined by `|`;
///   year empty when unknown.
/// - `content_items.tsv` — as `items.tsv`: items-file entries nobody rated, in items-file order.
/// - `users.tsv` — `user_id` plus the raw attribute names: kept users in byte order of their id.
/// - `item_features.tsv`, `content_item_features.tsv`, `user_features.tsv` — header `sparse <rows> <columns>`;
///   then one line per row: the row index, then one `<column>:<value>` field per non-zero, columns
///   ascending (values in Swift's shortest round-trip `Float` notation).
/// - `item_feature_names.tsv`, `user_feature_names.tsv` — `column name`: one line per column.
/// - `manifest.json` — `DatasetManifest`, with each data file's SHA-256 and the data-set checksum.
enum DatasetFiles {
    static let manifest = "manifest.json"
    static let interactions = "interactions.tsv"
    static let items = "items.tsv"
    static let contentItems = "content_items.tsv"
    static let users = "users.tsv"
    static let itemFeatures = "item_features.tsv"
    static let contentItemFeatures = "content_item_features.tsv"
    static let userFeatures = "user_features.tsv"
    static let itemFeatureNames = "item_feature_names.tsv"
    static let userFeatureNames = "user_feature_names.tsv"

    static let dataFiles = [
        contentItemFeatures, contentItems, interactions, itemFeatureNames, itemFeatures, items, userFeatureNames,
        userFeatures, users,
    ]

    static let interactionsHeader = "user_id\titem_id\tvalue\ttimestamp"
    static let itemsHeader = "item_id\ttitle\tgenres\tyear"
    static let namesHeader = "column\tname"

    // MARK: Encoding

    /// Appends text with the TSV escapes.
    @inline(__always) static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case 0x5C:
                out.append(0x5C)
                out.append(0x5C)
            case 0x09:
                out.append(0x5C)
                out.append(0x74)
            case 0x0A:
                out.append(0x5C)
                out.append(0x6E)
            case 0x0D:
                out.append(0x5C)
                out.append(0x72)
            default: out.append(byte)
            }
        }
    }

    static func unescape(_ text: String) -> String {
        guard text.utf8.contains(0x5C) else { return text }
        var out: [UInt8] = []
        var escaped = false
        for byte in text.utf8 {
            if escaped {
                switch byte {
                case 0x74: out.append(0x09)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                default: out.append(byte)
                }
                escaped = false
            } else if byte == 0x5C {
                escaped = true
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func encodeRows(_ header: String, _ rows: [[String]]) -> [UInt8] {
        var out = Array((header + "\n").utf8)
        for row in rows {
            for (index, field) in row.enumerated() {
                if index > 0 { out.append(0x09) }
                appendEscaped(field, to: &out)
            }
            out.append(0x0A)
        }
        return out
    }

    static func encodeSparse(_ rows: [[FeatureEntry]], columns: Int) -> [UInt8] {
        var out = Array("sparse\t\(rows.count)\t\(columns)\n".utf8)
        for (index, row) in rows.enumerated() {
            out.append(contentsOf: String(index).utf8)
            for entry in row {
                out.append(0x09)
                out.append(contentsOf: "\(entry.column):\(entry.value)".utf8)
            }
            out.append(0x0A)
        }
        return out
    }

    static func rows(of matrix: SparseMatrix) -> [[FeatureEntry]] {
        (0..<matrix.rows).map { r in
            (Int(matrix.rowOffsets[r])..<Int(matrix.rowOffsets[r + 1])).map {
                FeatureEntry(column: matrix.indices[$0], value: matrix.values[$0])
            }
        }
    }

    static func itemRow(id: String, title: String, genres: [String], year: Int?) -> [String] {
        [id, title, genres.joined(separator: "|"), year.map(String.init) ?? ""]
    }

    /// The data files (all but the manifest), by name.
    static func encode(_ content: DatasetContent) -> [(name: String, bytes: [UInt8])] {
        var interactions = Array((interactionsHeader + "\n").utf8)
        let data = content.interactions
        interactions.reserveCapacity(data.count * 24)
        for r in 0..<data.count {
            appendEscaped(content.userIDs[Int(data.users[r])], to: &interactions)
            interactions.append(0x09)
            appendEscaped(content.itemIDs[Int(data.items[r])], to: &interactions)
            interactions.append(0x09)
            appendEscaped(data.valueTexts[r], to: &interactions)
            interactions.append(0x09)
            appendEscaped(data.timestampTexts[r], to: &interactions)
            interactions.append(0x0A)
        }
        let items = encodeRows(
            itemsHeader,
            content.itemIDs.indices.map {
                itemRow(
                    id: content.itemIDs[$0], title: content.titles[$0], genres: content.genres[$0],
                    year: content.years[$0])
            })
        let contentItems = encodeRows(
            itemsHeader,
            content.contentOnlyItems.map { itemRow(id: $0.id, title: $0.title, genres: $0.genres, year: $0.year) })
        let users = encodeRows(
            (["user_id"] + content.userAttributeNames).joined(separator: "\t"),
            content.userIDs.indices.map { [content.userIDs[$0]] + content.userAttributes[$0] })
        return [
            (
                contentItemFeatures,
                encodeSparse(content.contentOnlyItems.map(\.features), columns: content.itemFeatures.columns)
            ),
            (DatasetFiles.contentItems, contentItems),
            (DatasetFiles.interactions, interactions),
            (
                itemFeatureNames,
                encodeRows(namesHeader, content.itemFeatureNames.enumerated().map { [String($0), $1] })
            ),
            (itemFeatures, encodeSparse(rows(of: content.itemFeatures), columns: content.itemFeatures.columns)),
            (DatasetFiles.items, items),
            (
                userFeatureNames,
                encodeRows(namesHeader, content.userFeatureNames.enumerated().map { [String($0), $1] })
            ),
            (userFeatures, encodeSparse(rows(of: content.userFeatures), columns: content.userFeatures.columns)),
            (DatasetFiles.users, users),
        ]
    }

    /// Per-file digests and the data-set checksum (see `DatasetManifest.checksum`).
    static func digests(_ files: [(name: String, bytes: [UInt8])]) throws -> (
        files: [DatasetManifest.FileDigest], checksum: String
    ) {
        let digests = try files.sorted { byteLess($0.name, $1.name) }.map {
            DatasetManifest.FileDigest(
                name: $0.name, sha256: SHA256.hex(try SHA256.hash($0.bytes)), bytes: $0.bytes.count)
        }
        return (digests, try checksum(digests))
    }

    static func checksum(_ digests: [DatasetManifest.FileDigest]) throws -> String {
        let text = digests.map { "\($0.sha256)  \($0.name)\n" }.joined()
        return SHA256.hex(try SHA256.hash(Array(text.utf8)))
    }
}

// MARK: - Writing

extension ImportResult {
    /// The folder's files (data files, then `manifest.json`) and the completed manifest, without writing.
    public func encode() throws -> (manifest: DatasetManifest, files: [(name: String, bytes: [UInt8])]) {
        let files = DatasetFiles.encode(content)
        var manifest = self.manifest
        (manifest.files, manifest.checksum) = try DatasetFiles.digests(files)
        return (manifest, files + [(DatasetFiles.manifest, try manifest.encoded())])
    }

    /// The data set as `Dataset.load` would read it back (checksum computed in memory).
    public func dataset() throws -> Dataset {
        let (manifest, _) = try encode()
        return Dataset(manifest: manifest, content: content, split: split)
    }

    /// Writes the data-set folder atomically: files go to a temporary folder beside `path`, which is
    /// then renamed (or, replacing a folder, exchanged with it in one step where Linux's `renameat2` can), its
    /// files and itself synced to disk first. An existing non-empty folder is replaced only with `force`, and
    /// only once the new folder is complete; on failure nothing is left behind and the old folder is untouched.
    @discardableResult
    public func write(to path: String, force: Bool = false) throws -> Dataset {
        let (manifest, files) = try encode()
        try AtomicFolder.write(files, to: path, force: force)
        return Dataset(manifest: manifest, content: content, split: split)
    }
}

/// Writes a folder by building it beside the target and renaming it into place.
enum AtomicFolder {
    static func write(_ files: [(name: String, bytes: [UInt8])], to path: String, force: Bool) throws {
        let fm = FileManager.default
        let target = URL(fileURLWithPath: path).standardizedFileURL
        let parent = target.deletingLastPathComponent()
        let name = target.lastPathComponent
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: target.path, isDirectory: &isDirectory)
        if exists {
            guard isDirectory.boolValue else {
                throw DataError.at(.outputExists, file: target.path, "exists and is not a folder")
            }
            let entries = (try? fm.contentsOfDirectory(atPath: target.path)) ?? []
            if !entries.isEmpty && !force {
                throw DataError.at(
                    .outputExists, file: target.path, "the folder exists and is not empty (use --force to replace it)")
            }
        }
        let suffix = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt64.random(in: 0...UInt64.max))"
        let temporary = parent.appendingPathComponent(".\(name).tmp-\(suffix)")
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
            try fm.createDirectory(at: temporary, withIntermediateDirectories: false)
            for file in files {
                try Data(file.bytes).write(to: temporary.appendingPathComponent(file.name))
            }
            // On disk before the folder takes the target's place, so a power loss cannot leave it there empty.
            for file in files { try sync(temporary.appendingPathComponent(file.name).path) }
            try sync(temporary.path)
        } catch let error as DataError {
            try? fm.removeItem(at: temporary)
            throw error
        } catch {
            try? fm.removeItem(at: temporary)
            throw DataError.at(.ioFailure, file: target.path, "cannot write: \(error.localizedDescription)")
        }
        if exists {
            // One step where the kernel allows it: the new folder and the old one swap places, and the old one,
            // now at the temporary name, is removed. Killed at any point, the target is the old folder or the new.
            if fedrec_exchange_paths(temporary.path, target.path) == 0 {
                try? sync(parent.path)
                try? fm.removeItem(at: temporary)
                return
            }
            // Otherwise two renames: killed between them, the old folder is left at `.NAME.old-*` and the new
            // one at `.NAME.tmp-*`, beside the target.
            let old = parent.appendingPathComponent(".\(name).old-\(suffix)")
            do {
                try fm.moveItem(at: target, to: old)
            } catch {
                try? fm.removeItem(at: temporary)
                throw DataError.at(
                    .ioFailure, file: target.path, "cannot move the old folder aside: \(error.localizedDescription)")
            }
            do {
                try fm.moveItem(at: temporary, to: target)
            } catch {
                try? fm.moveItem(at: old, to: target)
                try? fm.removeItem(at: temporary)
                throw DataError.at(
                    .ioFailure, file: target.path, "cannot rename into place: \(error.localizedDescription)")
            }
            try? sync(parent.path)
            try? fm.removeItem(at: old)
        } else {
            do {
                try fm.moveItem(at: temporary, to: target)
            } catch {
                try? fm.removeItem(at: temporary)
                throw DataError.at(
                    .ioFailure, file: target.path, "cannot rename into place: \(error.localizedDescription)")
            }
            try? sync(parent.path)
        }
    }

    /// Flushes a file's or a folder's contents (a folder: its entries) to disk.
    static func sync(_ path: String) throws {
        guard let (step, error) = FileSync.sync(path) else { return }
        throw DataError.at(
            .ioFailure, file: path, "\(step == .open ? "cannot open to sync" : "cannot sync") (errno \(error))")
    }
}
