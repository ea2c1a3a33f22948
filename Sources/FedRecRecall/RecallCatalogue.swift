public import FedRecModel
public import FedRecTensor
internal import Foundation

/// Everything recall serves from: the trained catalogue followed by the items added after training, their
/// unit embeddings, display data and the optional channel data (popularity, content features).
///
/// Invariants: `ids`, `titles`, `genres` have `count` entries; `embeddings` is `count x d`; items
/// `0..<trainedCount` are the model's catalogue (the user tower knows them), the rest were added.
public struct RecallCatalogue: Sendable {
    public let ids: [String]
    public let titles: [String]
    public let genres: [[String]]
    public let trainedCount: Int
    public let embeddings: Matrix
    /// Training interactions per item (added items: 0); nil when the model file has none.
    public let popularity: [Float]?
    /// Content features per item; nil when the model file has none.
    public let content: SparseMatrix?
    public let featureNames: [String]?
    private let indexByID: [String: Int]
    private let itemsByTitle: [String: [Int]]

    public var count: Int { ids.count }

    /// Builds the catalogue of a model file; `titles`/`genres` are the trained items' (from the file's metadata;
    /// nil: unknown).
    public init(model file: ModelFile, titles: [String]?, genres: [[String]]?) {
        let n = file.itemIDs.count
        let added = file.addedItems
        ids = file.itemIDs + added.ids
        self.titles = (titles ?? [String](repeating: "", count: n)) + added.titles
        self.genres = (genres ?? [[String]](repeating: [], count: n)) + added.genres
        precondition(self.titles.count == ids.count && self.genres.count == ids.count, "one title and genre list per item")
        trainedCount = n
        embeddings = Matrix(
            rows: n + added.count, columns: file.itemEmbeddings.columns,
            storage: file.itemEmbeddings.storage + added.embeddings.storage)
        popularity = file.itemPopularity.map { $0 + [Float](repeating: 0, count: added.count) }
        if let content = file.itemContent {
            let a = added.features
            let shift = content.features.rowOffsets.last!
            self.content = SparseMatrix(
                rows: n + a.rows, columns: content.features.columns,
                rowOffsets: content.features.rowOffsets + a.rowOffsets.dropFirst().map { $0 + shift },
                indices: content.features.indices + a.indices, values: content.features.values + a.values)
            featureNames = content.featureNames
        } else {
            content = nil
            featureNames = nil
        }
        var index: [String: Int] = [:]
        for (position, id) in ids.enumerated() { index[id] = position }
        indexByID = index
        var byTitle: [String: [Int]] = [:]
        for (position, title) in self.titles.enumerated() where !title.isEmpty {
            byTitle[Self.normalisedTitle(title), default: []].append(position)
        }
        itemsByTitle = byTitle
    }

    /// The catalogue index of `id`, or nil.
    public func index(ofID id: String) -> Int? { indexByID[id] }

    /// Catalogue indices of `ids`; an unknown id throws `.unknownItem` naming it as a `role` (a history item, an
    /// excluded item) with the closest ids.
    public func resolve(ids names: [String], role: String = "history item") throws(RecallError) -> [Int32] {
        var out: [Int32] = []
        for name in names {
            guard let index = indexByID[name] else {
                let candidates = closest(to: name, among: ids)
                let hint = candidates.isEmpty ? "" : "; closest ids: " + candidates.joined(separator: ", ")
                throw RecallError(
                    code: .unknownItem, message: "\(role) '\(name)' is not in the model's catalogue\(hint)",
                    candidates: candidates)
            }
            out.append(Int32(index))
        }
        return out
    }

    /// Catalogue indices of `titles`, matched case-insensitively (surrounding spaces ignored). An unknown title
    /// throws `.unknownItem`, one shared by several items `.ambiguousTitle`; both list the closest titles.
    public func resolve(titles names: [String]) throws(RecallError) -> [Int32] {
        var out: [Int32] = []
        for name in names {
            let key = Self.normalisedTitle(name)
            let matches = itemsByTitle[key] ?? []
            if matches.count == 1 {
                out.append(Int32(matches[0]))
                continue
            }
            if matches.isEmpty {
                let candidates = closest(to: key, among: Array(itemsByTitle.keys)).compactMap { itemsByTitle[$0]?.first }
                    .map { titles[$0] }
                let hint = candidates.isEmpty ? "" : "; closest: " + candidates.map { "'\($0)'" }.joined(separator: ", ")
                throw RecallError(
                    code: .unknownItem, message: "no item has the title '\(name)'\(hint)", candidates: candidates)
            }
            let candidates = matches.map { "\(titles[$0]) [id \(ids[$0])]" }
            throw RecallError(
                code: .ambiguousTitle,
                message: "the title '\(name)' matches \(matches.count) items: \(candidates.joined(separator: ", ")); use --history-ids",
                candidates: candidates)
        }
        return out
    }

    /// Catalogue indices of a comma-separated list of titles, where titles may hold commas themselves
    /// (MovieLens writes "Shawshank Redemption, The (1994)"): from each position, the longest run of
    /// comma-separated pieces that is a title is taken; a piece no run starting there matches is resolved alone,
    /// so its error (unknown, ambiguous) names it. Blank pieces are skipped.
    public func resolve(titleList text: String) throws(RecallError) -> [Int32] {
        let pieces = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        // No title spans more pieces than its commas allow: runs are bounded (linear in the list, not cubic).
        let longestRun = 1 + (titles.map { $0.utf8.count(where: { $0 == UInt8(ascii: ",") }) }.max() ?? 0)
        var out: [Int32] = []
        var start = 0
        while start < pieces.count {
            guard !Self.normalisedTitle(pieces[start]).isEmpty else {
                start += 1
                continue
            }
            var end = min(pieces.count, start + longestRun)
            var match: Int?
            var ambiguous: String?
            while end > start {
                let run = pieces[start..<end].joined(separator: ",")
                if let matches = itemsByTitle[Self.normalisedTitle(run)] {
                    if matches.count == 1 {
                        match = matches[0]
                        break
                    }
                    ambiguous = ambiguous ?? run
                }
                end -= 1
            }
            guard let match else {
                // Throws: ambiguous for the longest run several items share, else unknown, naming the piece.
                return try resolve(titles: [ambiguous ?? pieces[start].trimmingCharacters(in: .whitespaces)])
            }
            out.append(Int32(match))
            start = end
        }
        return out
    }

    static func normalisedTitle(_ title: String) -> String {
        title.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    /// Up to five strings of `pool` closest to `key`: those containing it (shortest first), then by edit distance.
    func closest(to key: String, among pool: [String], limit: Int = 5) -> [String] {
        let lowered = key.lowercased()
        let containing = pool.filter { $0.lowercased().contains(lowered) }.sorted { ($0.count, $0) < ($1.count, $1) }
        if containing.count >= limit { return Array(containing.prefix(limit)) }
        let target = Array(lowered.unicodeScalars)
        var scored: [(distance: Int, value: String)] = []
        for candidate in pool where !containing.contains(candidate) {
            let chars = Array(candidate.lowercased().unicodeScalars)
            // Titles far longer or shorter than the key cannot be close; skip the quadratic distance.
            guard abs(chars.count - target.count) <= max(3, target.count / 2) else { continue }
            scored.append((Self.editDistance(target, chars), candidate))
        }
        scored.sort { ($0.distance, $0.value) < ($1.distance, $1.value) }
        return Array((containing + scored.map(\.value)).prefix(limit))
    }

    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
