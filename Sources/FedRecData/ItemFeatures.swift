/// Builds the item feature matrix: one L2-normalised group per kind of content.
///
/// Column layout (groups present only when the source has such content), in this order:
/// - `genre:<name>`: genre multi-hot (`1/sqrt(count)` per genre);
/// - `year:unknown`, `year:before-1910`, `year:1910s` … `year:2010s`: release-year one-hot (13
///   columns; years from 2020 on fall in `year:2010s`, the newest bucket);
/// - `title#<b>`: title words hashed into `titleBuckets` buckets;
/// - `tag#<b>`: distinct tags hashed into `tagBuckets` buckets.
/// Every group is L2-normalised within the row (bucket counts divided by their L2 norm), so each
/// non-empty group has norm 1 and groups weigh equally.
struct ItemFeatureBuilder {
    let genreColumns: [String: Int]
    let hasYear: Bool
    let titleBuckets: Int?
    let tagBuckets: Int?
    private(set) var names: [String] = []
    private let yearOffset: Int
    private let titleOffset: Int
    private let tagOffset: Int

    static let yearBucketNames: [String] =
        ["year:unknown", "year:before-1910"] + (0...10).map { "year:\(1910 + 10 * $0)s" }

    init(genreNames: [String], hasYear: Bool, titleBuckets: Int?, tagBuckets: Int?) {
        var columns: [String: Int] = [:]
        var names: [String] = []
        for name in genreNames where columns[name] == nil {
            columns[name] = names.count
            names.append("genre:\(name)")
        }
        self.genreColumns = columns
        self.hasYear = hasYear
        self.titleBuckets = titleBuckets
        self.tagBuckets = tagBuckets
        yearOffset = names.count
        if hasYear { names += Self.yearBucketNames }
        titleOffset = names.count
        if let titleBuckets { names += (0..<titleBuckets).map { "title#\($0)" } }
        tagOffset = names.count
        if let tagBuckets { names += (0..<tagBuckets).map { "tag#\($0)" } }
        self.names = names
    }

    var columns: Int { names.count }

    /// Year bucket index within the year group (0 = unknown).
    static func yearBucket(_ year: Int?) -> Int {
        guard let year else { return 0 }
        if year < 1910 { return 1 }
        return 2 + min((year - 1910) / 10, 10)
    }

    /// The feature row of one item, columns ascending.
    func row(genres: [String], year: Int?, title: String?, tags: [String]) -> [FeatureEntry] {
        var entries: [FeatureEntry] = []
        var genreCounts: [Int: Int] = [:]
        for genre in genres {
            if let column = genreColumns[genre] { genreCounts[column, default: 0] += 1 }
        }
        Self.appendNormalised(genreCounts, offset: 0, to: &entries)
        if hasYear {
            entries.append(FeatureEntry(column: Int32(yearOffset + Self.yearBucket(year)), value: 1))
        }
        if let titleBuckets, let title {
            var counts: [Int: Int] = [:]
            for token in Self.titleTokens(title) {
                counts[Int(fnv1a64(token.utf8) % UInt64(titleBuckets)), default: 0] += 1
            }
            Self.appendNormalised(counts, offset: titleOffset, to: &entries)
        }
        if let tagBuckets {
            var counts: [Int: Int] = [:]
            for tag in Set(tags.map(Self.normalisedTag)) where !tag.isEmpty {
                counts[Int(fnv1a64(tag.utf8) % UInt64(tagBuckets)), default: 0] += 1
            }
            Self.appendNormalised(counts, offset: tagOffset, to: &entries)
        }
        return entries
    }

    /// Appends a group's bucket counts divided by their L2 norm, columns ascending.
    static func appendNormalised(_ counts: [Int: Int], offset: Int, to entries: inout [FeatureEntry]) {
        guard !counts.isEmpty else { return }
        let norm = Float(counts.values.reduce(0) { $0 + $1 * $1 }).squareRoot()
        for (column, count) in counts.sorted(by: { $0.key < $1.key }) {
            entries.append(FeatureEntry(column: Int32(offset + column), value: Float(count) / norm))
        }
    }

    /// A tag as hashed: lower-cased, surrounding whitespace removed.
    static func normalisedTag(_ tag: String) -> String {
        tag.lowercased().trimmingSpaces()
    }

    /// Lower-cased alphanumeric words of a title, without a trailing `(YYYY)`.
    static func titleTokens(_ title: String) -> [String] {
        let text = stripTrailingYear(title).lowercased()
        var tokens: [String] = []
        var current = ""
        for character in text {
            if character.isLetter || character.isNumber {
                current.append(character)
            } else if !current.isEmpty {
                tokens.append(current)
                current = ""
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// The year of a trailing `(YYYY)` in a title, if any.
    static func trailingYear(_ title: String) -> Int? {
        let bytes = Array(title.utf8)
        var end = bytes.count
        while end > 0 && ByteTable.Row.isSpace(bytes[end - 1]) { end -= 1 }
        guard end >= 6, bytes[end - 1] == 0x29, bytes[end - 6] == 0x28 else { return nil }
        var year = 0
        for byte in bytes[(end - 5)..<(end - 1)] {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            year = year * 10 + Int(byte - 0x30)
        }
        return year
    }

    /// `title` without a trailing `(YYYY)`.
    static func stripTrailingYear(_ title: String) -> String {
        guard trailingYear(title) != nil else { return title }
        var bytes = Array(title.utf8)
        while let last = bytes.last, ByteTable.Row.isSpace(last) { bytes.removeLast() }
        bytes.removeLast(6)
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    /// The string without surrounding spaces, tabs and CR/LF.
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
