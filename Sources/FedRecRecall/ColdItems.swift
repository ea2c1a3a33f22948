public import FedRecData
public import FedRecModel
import FedRecTensor

/// Items added to a trained model's catalogue (cold items): featurised exactly as the importer does, embedded by
/// the item tower from their content alone (no ID embedding: they were never trained), no retraining.
public enum ColdItems {
    /// The item tower's unit embedding of an item known only by its content: `normalize(features W + b)`.
    /// A zero vector when that is zero (a model trained without content features has no content weights).
    public static func embedding(model: TwoTowerModel, features: [FeatureEntry]) -> [Float] {
        let tower = model.itemTower
        let d = model.configuration.dimension
        var out = tower.contentBias.storage
        for entry in features where Int(entry.column) < tower.contentWeight.rows {
            let row = Int(entry.column) * d
            for j in 0..<d { out[j] += entry.value * tower.contentWeight.storage[row + j] }
        }
        let norm = out.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? out.map { $0 / norm } : out
    }

    /// Adds an item to `file`'s catalogue (as the next added item).
    ///
    /// - Throws: `.invalidRequest` when the id is already in the catalogue, the model file has no feature
    ///   names (written before they were stored), or its feature layout does not match the model.
    public static func add(
        to file: inout ModelFile, id: String, title: String, genres: [String], tags: [String] = [], year: Int? = nil
    ) throws(RecallError) {
        let featurizer = try featurizer(of: file, adding: id)
        let genres = try canonicalGenres(genres, of: featurizer, item: id)
        try add(
            to: &file, id: id, title: title, genres: genres,
            features: featurizer.features(title: title, genres: genres, tags: tags, year: year))
    }

    /// `genres` spelled as the model's genre columns are (matched ignoring case: "comedy" is "Comedy"); a genre
    /// the model has no column for is refused, listing the ones it has, since it would add nothing to the item
    /// (a misspelt genre would silently leave the item without it).
    static func canonicalGenres(_ genres: [String], of featurizer: ItemFeaturizer, item id: String)
        throws(RecallError) -> [String]
    {
        let known = Dictionary(
            featurizer.genres.map { ($0.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        var canonical: [String] = []
        for genre in genres {
            guard let match = known[genre.lowercased()] else {
                let listed =
                    featurizer.genres.isEmpty ? "it has none" : "it has " + featurizer.genres.joined(separator: ", ")
                throw RecallError(
                    code: .invalidRequest,
                    message: "item '\(id)': genre '\(genre)' is not one of the model's genres (\(listed))")
            }
            if !canonical.contains(match) { canonical.append(match) }
        }
        return canonical
    }

    /// Adds an item whose feature row was already made by the importer (a data set's content-only item, tags
    /// included), given in the columns named by `featureNames`, which must all be the model's.
    public static func add(
        to file: inout ModelFile, id: String, title: String, genres: [String],
        features: [(column: Int32, value: Float)], featureNames: [String]
    ) throws(RecallError) {
        let model = try featurizer(of: file, adding: id)
        let names = file.itemContent?.featureNames ?? []
        let columnByName = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var mapped: [FeatureEntry] = []
        for entry in features {
            guard featureNames.indices.contains(Int(entry.column)),
                let column = columnByName[featureNames[Int(entry.column)]], column < model.columnCount
            else {
                throw RecallError(
                    code: .invalidRequest,
                    message: "item '\(id)': feature column \(entry.column) is not one of the model's item features")
            }
            mapped.append(FeatureEntry(column: Int32(column), value: entry.value))
        }
        try add(to: &file, id: id, title: title, genres: genres, features: mapped.sorted { $0.column < $1.column })
    }

    /// The featurizer of the model's item-feature layout, once `id` is known to be a new, non-empty item id.
    private static func featurizer(of file: ModelFile, adding id: String) throws(RecallError) -> ItemFeaturizer {
        guard !id.isEmpty else { throw RecallError(code: .invalidRequest, message: "an item id must not be empty") }
        guard !file.itemIDs.contains(id) && !file.addedItems.ids.contains(id) else {
            throw RecallError(code: .invalidRequest, message: "item '\(id)' is already in the model's catalogue")
        }
        guard let content = file.itemContent else {
            throw RecallError(
                code: .invalidRequest,
                message:
                    "the model file has no item feature names (written by an older fedrec): retrain it to add items")
        }
        let featurizer: ItemFeaturizer
        do {
            featurizer = try ItemFeaturizer(featureNames: content.featureNames)
        } catch {
            throw RecallError(code: .invalidRequest, message: "the model file's feature names: \(error.message)")
        }
        let featureCount = file.model.configuration.itemFeatureCount
        guard featureCount == 0 || featureCount == featurizer.columnCount else {
            throw RecallError(
                code: .invalidRequest,
                message: "the model takes \(featureCount) item features but the file names \(featurizer.columnCount)")
        }
        return featurizer
    }

    private static func add(
        to file: inout ModelFile, id: String, title: String, genres: [String], features: [FeatureEntry]
    ) throws(RecallError) {
        file.addedItems.append(
            id: id, title: title, genres: genres, embedding: embedding(model: file.model, features: features),
            features: features.map { (column: $0.column, value: $0.value) })
    }
}
