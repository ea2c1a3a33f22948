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

    /// Writes the three files into `folder` (created when missing); each file is written to a
    /// temporary name and renamed over any earlier one (`rename(2)`, atomic), so a reader never sees a
    /// half-written file and a failed write leaves the earlier file as it was. A data-set folder is refused:
    /// its own `items.tsv` has another format.
    public static func write(_ content: DatasetContent, to folder: String) throws {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: join(folder, DatasetFiles.manifest)) else {
            throw DataError.at(
                .ioFailure, file: folder,
                "is a data-set folder (it has \(DatasetFiles.manifest)); write the split files to another folder")
        }
        do {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError.at(.ioFailure, file: folder, "cannot create the folder: \(error.localizedDescription)")
        }
        for file in files(for: content) {
            let target = URL(fileURLWithPath: join(folder, file.name))
            let temporary = URL(
                fileURLWithPath: join(folder, ".\(file.name).tmp-\(ProcessInfo.processInfo.processIdentifier)"))
            do {
                try Data(file.bytes).write(to: temporary)
            } catch {
                try? fm.removeItem(at: temporary)
                throw DataError.at(.ioFailure, file: target.path, "cannot write: \(error.localizedDescription)")
            }
            // Not FileManager.replaceItemAt: on Linux it can remove the target and then fail.
            guard rename(temporary.path, target.path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? fm.removeItem(at: temporary)
                throw DataError.at(.ioFailure, file: target.path, "cannot rename into place: \(reason)")
            }
        }
    }
}
