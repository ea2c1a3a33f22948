public import FedRecTensor

/// The source formats `fedrec data import` reads.
public enum SourceFormat: String, Codable, Sendable, CaseIterable {
    /// MovieLens 100k: `u.data`, `u.item`, `u.user`, `u.genre`, `u.occupation`.
    case ml100k = "ml-100k"
    /// MovieLens latest-small: `ratings.csv`, `movies.csv`, `tags.csv`.
    case mlLatestSmall = "ml-latest-small"
    /// A CSV/TSV with a header naming `user`, `item`, optional `value` and `timestamp`.
    case generic
}

/// The cleaned interactions of kept users, in original file order, as parallel arrays.
///
/// Invariants: all arrays have `count` elements; `users[i]` indexes `DatasetContent.userIDs`,
/// `items[i]` indexes the catalogue; each `(user, item)` pair occurs once; `timestamps[i]` is the
/// integer value of `timestampTexts[i]` (0 when the data set has no timestamps).
public struct Interactions: Sendable, Equatable {
    public var users: [Int32] = []
    public var items: [Int32] = []
    /// The value as written in the source (`""` when the source has no value column).
    public var valueTexts: [String] = []
    /// The timestamp as written in the source (`""` when the source has none).
    public var timestampTexts: [String] = []
    public var timestamps: [Int64] = []

    public init() {}

    public var count: Int { users.count }

    mutating func reserveCapacity(_ n: Int) {
        users.reserveCapacity(n)
        items.reserveCapacity(n)
        valueTexts.reserveCapacity(n)
        timestampTexts.reserveCapacity(n)
        timestamps.reserveCapacity(n)
    }

    mutating func append(user: Int32, item: Int32, value: String, timestampText: String, timestamp: Int64) {
        users.append(user)
        items.append(item)
        valueTexts.append(value)
        timestampTexts.append(timestampText)
        timestamps.append(timestamp)
    }
}

/// One non-zero of a sparse feature row.
public struct FeatureEntry: Sendable, Hashable {
    public var column: Int32
    public var value: Float

    public init(column: Int32, value: Float) {
        self.column = column
        self.value = value
    }
}

/// An item of the source's item file that nobody rated: not in the catalogue (never scored in
/// `fedrec-eval-v1`), kept as content for cold-start recall. `features` use the item feature columns.
public struct ContentItem: Sendable, Equatable {
    public var id: String
    public var title: String
    public var genres: [String]
    public var year: Int?
    /// Sparse feature row, columns ascending, in `DatasetContent.itemFeatureNames`' columns.
    public var features: [FeatureEntry]

    public init(id: String, title: String, genres: [String], year: Int?, features: [FeatureEntry]) {
        self.id = id
        self.title = title
        self.genres = genres
        self.year = year
        self.features = features
    }
}

/// Everything a data set holds besides its manifest: ids, item content, features, interactions.
///
/// Invariants: `userIDs` are the kept users in byte order of their id (no duplicates); `itemIDs`
/// is the catalogue in item-index order (first appearance in the interaction file); `titles`,
/// `genres`, `years` and `itemFeatures.rows` have `itemIDs.count` entries; `userFeatures.rows ==
/// userAttributes.count == userIDs.count`; feature name lists match the matrices' column counts.
public struct DatasetContent: Sendable, Equatable {
    public var sourceFormat: SourceFormat
    public var userIDs: [String]
    /// Names of the raw user attributes (e.g. `age`, `gender`, `occupation`, `zip`); may be empty.
    public var userAttributeNames: [String]
    /// Raw attribute strings per kept user (`""` where unknown).
    public var userAttributes: [[String]]
    public var itemIDs: [String]
    /// Title per catalogue item (`""` when unknown).
    public var titles: [String]
    public var genres: [[String]]
    /// Release year per catalogue item, when known.
    public var years: [Int?]
    public var itemFeatures: SparseMatrix
    public var itemFeatureNames: [String]
    public var userFeatures: SparseMatrix
    public var userFeatureNames: [String]
    public var interactions: Interactions
    /// Whether the source has timestamps (else the split orders by FNV-1a, see `Split`).
    public var hasTimestamps: Bool
    public var contentOnlyItems: [ContentItem]

    public init(
        sourceFormat: SourceFormat, userIDs: [String], userAttributeNames: [String], userAttributes: [[String]],
        itemIDs: [String], titles: [String], genres: [[String]], years: [Int?],
        itemFeatures: SparseMatrix, itemFeatureNames: [String],
        userFeatures: SparseMatrix, userFeatureNames: [String],
        interactions: Interactions, hasTimestamps: Bool, contentOnlyItems: [ContentItem]
    ) {
        self.sourceFormat = sourceFormat
        self.userIDs = userIDs
        self.userAttributeNames = userAttributeNames
        self.userAttributes = userAttributes
        self.itemIDs = itemIDs
        self.titles = titles
        self.genres = genres
        self.years = years
        self.itemFeatures = itemFeatures
        self.itemFeatureNames = itemFeatureNames
        self.userFeatures = userFeatures
        self.userFeatureNames = userFeatureNames
        self.interactions = interactions
        self.hasTimestamps = hasTimestamps
        self.contentOnlyItems = contentOnlyItems
    }

    /// The content-only items' features as a CSR matrix (rows in `contentOnlyItems` order).
    public var contentOnlyFeatures: SparseMatrix {
        SparseMatrix(
            columns: itemFeatures.columns,
            rows: contentOnlyItems.map { item in item.features.map { (Int($0.column), $0.value) } })
    }
}
