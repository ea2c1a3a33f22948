/// Featurises an item exactly as the importer does, from a data set's feature-column names alone
/// (`Dataset.itemFeatureNames`, also stored in model files): used to add items to a trained model's
/// catalogue (cold start) without the data set.
public struct ItemFeaturizer: Sendable {
    private let builder: ItemFeatureBuilder
    /// The genres the layout has a column for (the data set's), in column order.
    public let genres: [String]

    /// Rebuilds the importer's column layout from `featureNames`; throws when the names are not a layout
    /// the importer writes (genre columns, then the 13 year buckets, then `title#b`, then `tag#b`).
    public init(featureNames: [String]) throws(DataError) {
        let genres = featureNames.prefix { $0.hasPrefix("genre:") }.map { String($0.dropFirst("genre:".count)) }
        let hasYear = featureNames.contains(ItemFeatureBuilder.yearBucketNames[0])
        let titles = featureNames.filter { $0.hasPrefix("title#") }.count
        let tags = featureNames.filter { $0.hasPrefix("tag#") }.count
        let builder = ItemFeatureBuilder(
            genreNames: genres, hasYear: hasYear, titleBuckets: titles > 0 ? titles : nil,
            tagBuckets: tags > 0 ? tags : nil)
        guard builder.names == featureNames else {
            throw DataError(
                code: .invalidOptions,
                message: "the item feature names are not a layout written by 'fedrec data import'")
        }
        self.builder = builder
        self.genres = genres
    }

    /// The number of feature columns.
    public var columnCount: Int { builder.columns }

    /// The feature row of an item, columns ascending; `year` defaults to a trailing `(YYYY)` of the title.
    /// Genres not among the data set's are ignored (the model has no column for them; `ColdItems` refuses them).
    public func features(title: String, genres: [String], tags: [String] = [], year: Int? = nil) -> [FeatureEntry] {
        builder.row(genres: genres, year: year ?? ItemFeatureBuilder.trailingYear(title), title: title, tags: tags)
    }
}
