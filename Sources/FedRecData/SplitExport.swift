import Foundation

/// The split files of `fedrec-eval-v1` (`train.tsv`, `test.tsv`, `items.tsv`).
///
/// Format (fixed by EVALUATION.md; their SHA-256 must equal `reference/splits/<dataset>/sha256.txt`):
/// UTF-8, LF endings; `train.tsv`/`test.tsv` have the header `user_id\titem_id\ttimestamp` and one row
/// per interaction with the original ids and timestamp string (empty without timestamps), users in
/// byte order of their id, each user's rows in protocol order; `items.tsv` has the header `item_id`
/// and the catalogue in item-index order. Ids are written as they are (no escaping).
public enum SplitExport {
    public static let fileNames = ["train.tsv", "test.tsv", "items.tsv"]

    /// The three files' bytes, by name, in `fileNames` order.
    public static func files(for content: DatasetContent) -> [(name: String, bytes: [UInt8])] {
        let order = ProtocolOrder(content: content)
        let header = Array("user_id\titem_id\ttimestamp\n".utf8)
        var train = header
        var test = header
        let data = content.interactions
        train.reserveCapacity(data.count * 20)
        test.reserveCapacity(data.count * 6)
        for u in 0..<content.userIDs.count {
            let rows = order.rows[order.offsets[u]..<order.offsets[u + 1]]
            let cut = rows.count - ProtocolOrder.testCount(rows.count)
            let user = Array(content.userIDs[u].utf8)
            for (offset, row) in rows.enumerated() {
                let r = Int(row)
                func append(_ out: inout [UInt8]) {
                    out.append(contentsOf: user)
                    out.append(0x09)
                    out.append(contentsOf: content.itemIDs[Int(data.items[r])].utf8)
                    out.append(0x09)
                    out.append(contentsOf: data.timestampTexts[r].utf8)
                    out.append(0x0A)
                }
                if offset < cut { append(&train) } else { append(&test) }
            }
        }
        var items = Array("item_id\n".utf8)
        for id in content.itemIDs {
            items.append(contentsOf: id.utf8)
            items.append(0x0A)
        }
        return [("train.tsv", train), ("test.tsv", test), ("items.tsv", items)]
    }

    /// Writes the three files into `folder` (created when missing). Any of them already there is kept unless
    /// `force` (the folder may hold other files of the same names, such as a generic source's own `items.tsv`). A
    /// data-set folder is refused always: its own `items.tsv` has another format. All three are written to
    /// temporary names first and then renamed over the earlier ones (`rename(2)`, atomic each), so a reader never
    /// sees a half-written file and a failed write leaves every earlier file as it was. Ids holding a tab, CR or
    /// LF are refused: these files are TSV without escapes.
    public static func write(_ content: DatasetContent, to folder: String, force: Bool = false) throws {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: join(folder, DatasetFiles.manifest)) else {
            throw DataError.at(
                .outputExists, file: folder,
                "is a data-set folder (it has \(DatasetFiles.manifest)); write the split files to another folder")
        }
        let existing = fileNames.filter { fm.fileExists(atPath: join(folder, $0)) }
        guard force || existing.isEmpty else {
            throw DataError.at(
                .outputExists, file: folder,
                "already holds \(existing.joined(separator: ", ")); use --force to replace, or write elsewhere")
        }
        for (kind, ids) in [("user", content.userIDs), ("item", content.itemIDs)] {
            if let bad = ids.first(where: { $0.utf8.contains { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D } }) {
                throw DataError(
                    code: .invalidField,
                    message: "\(kind) id \(bad.debugDescription) holds a tab or line break, which the split files "
                        + "(TSV without escapes, fedrec-eval-v1) cannot carry")
            }
        }
        do {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError.at(.ioFailure, file: folder, "cannot create the folder: \(error.localizedDescription)")
        }
        var written: [(temporary: String, target: String)] = []
        defer { for file in written { try? fm.removeItem(atPath: file.temporary) } }
        for file in files(for: content) {
            let target = join(folder, file.name)
            let temporary = join(folder, ".\(file.name).tmp-\(ProcessInfo.processInfo.processIdentifier)")
            written.append((temporary, target))
            do {
                try Data(file.bytes).write(to: URL(fileURLWithPath: temporary))
            } catch {
                throw DataError.at(.ioFailure, file: target, "cannot write: \(error.localizedDescription)")
            }
        }
        // Not FileManager.replaceItemAt: on Linux it can remove the target and then fail.
        for file in written {
            guard rename(file.temporary, file.target) == 0 else {
                let reason = String(cString: strerror(errno))
                throw DataError.at(.ioFailure, file: file.target, "cannot rename into place: \(reason)")
            }
        }
    }
}
