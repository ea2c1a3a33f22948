public import FedRecTensor
internal import Foundation

/// The fedrec model file: a safetensors file holding both towers, the normalised item-embedding matrix
/// `item_embeddings` (`itemCount x d`, computed at save time) and metadata:
/// `format` = "fedrec-model", `format_version` = "1", `configuration` (JSON of `TwoTowerConfiguration`),
/// `dataset_checksum`, `item_ids` (JSON array of strings in catalogue order), plus caller-supplied entries.
///
/// Optional parts (files written before they existed still load; the recall channels that need them then
/// report that they are unavailable):
/// - `item_popularity` (F32, `itemCount`): training interactions per catalogue item;
/// - the catalogue's content features as CSR, `item_content.row_offsets` (I32, `itemCount + 1`),
///   `item_content.indices` (I32) and `item_content.values` (F32), with the column names in the
///   `item_feature_names` metadata (JSON array);
/// - items added after training (`fedrec items add`): `added_items.embeddings` (F32, `added x d`), their
///   content features as `added_items.content.{row_offsets,indices,values}` and `added_items` metadata
///   (JSON `{"ids": [...], "titles": [...], "genres": [[...]]}`).
public struct ModelFile: Sendable {
    public static let format = "fedrec-model"
    public static let formatVersion = "1"
    public static let itemEmbeddingsName = "item_embeddings"

    public var model: TwoTowerModel
    /// Normalised catalogue embeddings as stored.
    public var itemEmbeddings: Matrix
    public var datasetChecksum: String
    public var itemIDs: [String]
    /// Caller-supplied metadata (e.g. a training summary), without the reserved keys.
    public var extraMetadata: [String: String]
    /// Training interactions per catalogue item (nil in files written before it was stored).
    public var itemPopularity: [Float]?
    /// The catalogue's content features and their column names (nil in older files).
    public var itemContent: ItemContent?
    /// Items added to the catalogue after training (empty when none).
    public var addedItems: AddedItems
    /// The catalogue's JSON metadata encoded ahead of time (used by `write` when it matches `itemIDs` and the
    /// content's feature names; nil: encoded on each write).
    public var catalogueJSON: CatalogueJSON? = nil

    /// The `item_ids` and `item_feature_names` metadata of one catalogue, encoded once for the many files of
    /// a run (the coordinator writes one per round; a 10,000-item catalogue's ids take a JSONEncoder pass).
    public struct CatalogueJSON: Sendable {
        let itemIDs: [String]
        let featureNames: [String]?
        let itemIDsJSON: String
        let featureNamesJSON: String?

        public init(itemIDs: [String], featureNames: [String]?) {
            self.itemIDs = itemIDs
            self.featureNames = featureNames
            itemIDsJSON = Self.encode(itemIDs)
            featureNamesJSON = featureNames.map(Self.encode)
        }

        /// Sorted-key JSON of a string array ("[]" if it cannot be encoded, which strings never cause).
        static func encode(_ strings: [String]) -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return (try? encoder.encode(strings)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        }

        /// Whether this encodes `itemIDs` and `featureNames` (cheap when they share storage with the originals).
        func describes(itemIDs: [String], featureNames: [String]?) -> Bool {
            self.itemIDs == itemIDs && self.featureNames == featureNames
        }
    }

    static let reservedKeys: Set<String> = [
        "format", "format_version", "configuration", "dataset_checksum", "item_ids", "item_feature_names", "added_items",
    ]
    public static let itemPopularityName = "item_popularity"
    static let itemContentPrefix = "item_content"
    static let addedEmbeddingsName = "added_items.embeddings"
    static let addedContentPrefix = "added_items.content"

    /// Builds the file contents; computes `itemEmbeddings` from `itemFeatures`.
    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, datasetChecksum: String, itemIDs: [String],
        extraMetadata: [String: String] = [:], itemPopularity: [Float]? = nil, itemContent: ItemContent? = nil
    ) {
        precondition(itemIDs.count == model.configuration.itemCount, "one item id per catalogue item")
        precondition(extraMetadata.keys.allSatisfy { !Self.reservedKeys.contains($0) }, "extra metadata uses a reserved key")
        let n = model.configuration.itemCount
        precondition(itemPopularity.map { $0.count == n && $0.allSatisfy { $0 >= 0 && $0.isFinite } } ?? true, "one non-negative popularity per item")
        precondition(itemContent.map { $0.features.rows == n } ?? true, "one content row per catalogue item")
        self.model = model
        self.itemEmbeddings = model.itemEmbeddings(itemFeatures: itemFeatures)
        self.datasetChecksum = datasetChecksum
        self.itemIDs = itemIDs
        self.extraMetadata = extraMetadata
        self.itemPopularity = itemPopularity
        self.itemContent = itemContent
        self.addedItems = AddedItems(dimension: model.configuration.dimension, featureCount: itemContent?.featureNames.count ?? 0)
    }

    /// Writes atomically (temporary file + rename); `recycling` names an obsolete file to overwrite and rename
    /// instead of creating a new one (see `SafeTensors.write(to:recycling:)`).
    public func write(to path: String, recycling spare: String? = nil) throws(TensorFileError) {
        var tensors = model.namedParameters.map { SafeTensor(name: $0.name, shape: $0.shape, values: $0.value.storage) }
        tensors.append(SafeTensor(name: Self.itemEmbeddingsName, shape: [itemEmbeddings.rows, itemEmbeddings.columns], values: itemEmbeddings.storage))
        var metadata = extraMetadata
        metadata["format"] = Self.format
        metadata["format_version"] = Self.formatVersion
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let configuration = try? encoder.encode(model.configuration) else {
            throw TensorFileError(code: .badMetadata, file: path, message: "cannot encode the configuration")
        }
        let featureNames = itemContent?.featureNames
        let catalogue =
            catalogueJSON.flatMap { $0.describes(itemIDs: itemIDs, featureNames: featureNames) ? $0 : nil }
            ?? CatalogueJSON(itemIDs: itemIDs, featureNames: featureNames)
        metadata["configuration"] = String(decoding: configuration, as: UTF8.self)
        metadata["dataset_checksum"] = datasetChecksum
        metadata["item_ids"] = catalogue.itemIDsJSON
        if let itemPopularity {
            tensors.append(SafeTensor(name: Self.itemPopularityName, shape: [itemPopularity.count], values: itemPopularity))
        }
        if let itemContent {
            tensors += Self.csrTensors(itemContent.features, prefix: Self.itemContentPrefix)
            // `catalogue` describes `itemContent.featureNames`, so it holds their JSON.
            metadata["item_feature_names"] = catalogue.featureNamesJSON
        }
        if addedItems.count > 0 {
            let added = addedItems
            tensors.append(SafeTensor(name: Self.addedEmbeddingsName, shape: [added.count, added.embeddings.columns], values: added.embeddings.storage))
            tensors += Self.csrTensors(added.features, prefix: Self.addedContentPrefix)
            let header = AddedItems.Header(ids: added.ids, titles: added.titles, genres: added.genres)
            guard let json = try? encoder.encode(header) else {
                throw TensorFileError(code: .badMetadata, file: path, message: "cannot encode the added items")
            }
            metadata["added_items"] = String(decoding: json, as: UTF8.self)
        }
        // A diverged model (NaN weights) is refused here rather than written as a file no reader accepts.
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: path, recycling: spare, requireFinite: true)
    }

    /// The first row whose L2 norm is neither within 1e-3 of 1 nor 0 (the item tower's outputs are unit vectors,
    /// or zero for an all-zero pre-activation), else nil.
    static func firstRowNeitherUnitNorNull(_ m: Matrix) -> Int? {
        for r in 0..<m.rows {
            var sum: Double = 0
            for c in 0..<m.columns {
                let v = Double(m.storage[r * m.columns + c])
                sum += v * v
            }
            if sum != 0 && abs(sum.squareRoot() - 1) > 1e-3 { return r }
        }
        return nil
    }

    /// Reads and validates a model file: format and version, configuration, item ids, every tensor's presence
    /// and shape, finite values, unit item-embedding rows.
    public static func read(from path: String) throws(TensorFileError) -> ModelFile {
        let file = try SafeTensors.read(from: path, requireFinite: true)
        func fail(_ message: String) -> TensorFileError { TensorFileError(code: .badMetadata, file: path, message: message) }
        guard file.metadata["format"] == format else { throw fail("not a fedrec model (format is \(file.metadata["format"].map { "'\($0)'" } ?? "missing"))") }
        guard file.metadata["format_version"] == formatVersion else {
            throw fail("unsupported format_version \(file.metadata["format_version"] ?? "missing"), expected \(formatVersion)")
        }
        let decoder = JSONDecoder()
        guard let json = file.metadata["configuration"], let configuration = try? decoder.decode(TwoTowerConfiguration.self, from: Data(json.utf8)) else {
            throw fail("missing or invalid 'configuration' metadata")
        }
        guard let idsJSON = file.metadata["item_ids"], let itemIDs = try? decoder.decode([String].self, from: Data(idsJSON.utf8)) else {
            throw fail("missing or invalid 'item_ids' metadata")
        }
        guard itemIDs.count == configuration.itemCount else { throw fail("\(itemIDs.count) item ids for a catalogue of \(configuration.itemCount)") }
        if let problem = configuration.problem { throw fail("invalid configuration: \(problem)") }
        // Expected shapes from a template model's names (cheap: shapes only).
        let (n, d, h) = (configuration.itemCount, configuration.dimension, configuration.hiddenWidth)
        let shapes: [(String, [Int])] = [
            (ItemTower.idEmbeddingName, [n, d]), (ItemTower.contentWeightName, [configuration.itemFeatureCount, d]),
            (ItemTower.contentBiasName, [d]), (UserTower.historyEmbeddingName, [n, d]),
            (UserTower.hiddenWeightName, [configuration.userInputWidth, h]), (UserTower.hiddenBiasName, [h]),
            (UserTower.outputWeightName, [h, d]), (UserTower.outputBiasName, [d]),
        ]
        var parameters: [String: Matrix] = [:]
        for (name, shape) in shapes {
            parameters[name] = try file.tensor(name, shape: shape, file: path).matrix
        }
        let embeddings = try file.tensor(itemEmbeddingsName, shape: [n, d], file: path).matrix
        if let row = Self.firstRowNeitherUnitNorNull(embeddings) {
            throw fail("tensor '\(itemEmbeddingsName)' row \(row) is not a unit vector (the item tower L2-normalises)")
        }
        let model = TwoTowerModel(configuration: configuration, parameters: parameters)
        var extra = file.metadata
        for key in reservedKeys { extra.removeValue(forKey: key) }
        var result = ModelFile(model: model, itemEmbeddings: embeddings, datasetChecksum: file.metadata["dataset_checksum"] ?? "", itemIDs: itemIDs, extraMetadata: extra)

        // Optional parts.
        if file[itemPopularityName] != nil {
            let popularity = try file.tensor(itemPopularityName, shape: [n], file: path).values
            guard popularity.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(itemPopularityName)' holds a negative count") }
            result.itemPopularity = popularity
        }
        var featureCount = 0
        if let namesJSON = file.metadata["item_feature_names"] {
            guard let names = try? decoder.decode([String].self, from: Data(namesJSON.utf8)) else {
                throw fail("invalid 'item_feature_names' metadata")
            }
            let features = try csr(file, prefix: itemContentPrefix, rows: n, columns: names.count, path: path)
            result.itemContent = ItemContent(featureNames: names, features: features)
            featureCount = names.count
        }
        result.addedItems = AddedItems(dimension: d, featureCount: featureCount)
        if let addedJSON = file.metadata["added_items"] {
            guard let header = try? decoder.decode(AddedItems.Header.self, from: Data(addedJSON.utf8)),
                  header.titles.count == header.ids.count, header.genres.count == header.ids.count else {
                throw fail("invalid 'added_items' metadata")
            }
            let m = header.ids.count
            let addedEmbeddings = try file.tensor(addedEmbeddingsName, shape: [m, d], file: path).matrix
            if let row = Self.firstRowNeitherUnitNorNull(addedEmbeddings) {
                throw fail("tensor '\(addedEmbeddingsName)' row \(row) is not a unit vector")
            }
            let features = try csr(file, prefix: addedContentPrefix, rows: m, columns: featureCount, path: path)
            result.addedItems = AddedItems(
                ids: header.ids, titles: header.titles, genres: header.genres,
                embeddings: Matrix(rows: m, columns: d, storage: addedEmbeddings.storage), features: features)
        }
        let allIDs = result.itemIDs + result.addedItems.ids
        guard Set(allIDs).count == allIDs.count else { throw fail("item ids are not unique") }
        return result
    }

    init(model: TwoTowerModel, itemEmbeddings: Matrix, datasetChecksum: String, itemIDs: [String], extraMetadata: [String: String]) {
        self.model = model
        self.itemEmbeddings = itemEmbeddings
        self.datasetChecksum = datasetChecksum
        self.itemIDs = itemIDs
        self.extraMetadata = extraMetadata
        self.itemPopularity = nil
        self.itemContent = nil
        self.addedItems = AddedItems(dimension: model.configuration.dimension, featureCount: 0)
    }

    // MARK: CSR tensors

    static func csrTensors(_ matrix: SparseMatrix, prefix: String) -> [SafeTensor] {
        [
            SafeTensor(name: "\(prefix).row_offsets", shape: [matrix.rows + 1], integers: matrix.rowOffsets),
            SafeTensor(name: "\(prefix).indices", shape: [matrix.nonZeroCount], integers: matrix.indices),
            SafeTensor(name: "\(prefix).values", shape: [matrix.nonZeroCount], values: matrix.values),
        ]
    }

    /// Reads and validates a CSR matrix stored by `csrTensors`.
    static func csr(_ file: SafeTensors, prefix: String, rows: Int, columns: Int, path: String) throws(TensorFileError) -> SparseMatrix {
        let offsets = try file.tensor("\(prefix).row_offsets", shape: [rows + 1], dtype: .i32, file: path).integers
        let nonZero = Int(offsets.last ?? 0)
        let indices = try file.tensor("\(prefix).indices", shape: [nonZero], dtype: .i32, file: path).integers
        let values = try file.tensor("\(prefix).values", shape: [nonZero], dtype: .f32, file: path).values
        func fail(_ message: String) -> TensorFileError { TensorFileError(code: .badMetadata, file: path, message: "\(prefix): \(message)") }
        guard offsets.first == 0 else { throw fail("row offsets must start at 0") }
        for r in 0..<rows where offsets[r] > offsets[r + 1] { throw fail("row offsets decrease at row \(r)") }
        guard indices.allSatisfy({ $0 >= 0 && Int($0) < columns }) else { throw fail("a column index is outside 0..<\(columns)") }
        return SparseMatrix(rows: rows, columns: columns, rowOffsets: offsets, indices: indices, values: values)
    }
}

/// Content features of the catalogue: one sparse row per item, in the columns `featureNames` (the data
/// set's `item_feature_names`, so a new item can be featurised exactly as the importer does).
public struct ItemContent: Sendable, Equatable {
    public var featureNames: [String]
    public var features: SparseMatrix

    public init(featureNames: [String], features: SparseMatrix) {
        precondition(features.columns == featureNames.count, "one name per feature column")
        self.featureNames = featureNames
        self.features = features
    }
}

/// Items added to the catalogue after training, in the order added. They follow the trained catalogue:
/// added item `j` is catalogue item `itemCount + j`. Invariants: every array has `count` entries, `embeddings`
/// is `count x d` with unit rows, `features` has `count` rows.
public struct AddedItems: Sendable, Equatable {
    public private(set) var ids: [String]
    public private(set) var titles: [String]
    public private(set) var genres: [[String]]
    public private(set) var embeddings: Matrix
    public private(set) var features: SparseMatrix

    struct Header: Codable {
        var ids: [String]
        var titles: [String]
        var genres: [[String]]
    }

    public init(dimension: Int, featureCount: Int) {
        self.init(
            ids: [], titles: [], genres: [], embeddings: Matrix(rows: 0, columns: dimension),
            features: SparseMatrix(rows: 0, columns: featureCount, rowOffsets: [0], indices: [], values: []))
    }

    public init(ids: [String], titles: [String], genres: [[String]], embeddings: Matrix, features: SparseMatrix) {
        precondition(titles.count == ids.count && genres.count == ids.count, "one title and genre list per item")
        precondition(embeddings.rows == ids.count && features.rows == ids.count, "one embedding and feature row per item")
        self.ids = ids
        self.titles = titles
        self.genres = genres
        self.embeddings = embeddings
        self.features = features
    }

    public var count: Int { ids.count }

    /// Appends one item; `embedding` has `d` entries, `features` are `(column, value)` pairs, columns ascending.
    public mutating func append(id: String, title: String, genres: [String], embedding: [Float], features: [(column: Int32, value: Float)]) {
        precondition(embedding.count == embeddings.columns, "embedding must have \(embeddings.columns) entries")
        precondition(features.allSatisfy { $0.column >= 0 && Int($0.column) < self.features.columns }, "feature column out of range")
        ids.append(id)
        titles.append(title)
        self.genres.append(genres)
        embeddings = Matrix(rows: embeddings.rows + 1, columns: embeddings.columns, storage: embeddings.storage + embedding)
        let old = self.features
        self.features = SparseMatrix(
            rows: old.rows + 1, columns: old.columns, rowOffsets: old.rowOffsets + [old.rowOffsets.last! + Int32(features.count)],
            indices: old.indices + features.map(\.column), values: old.values + features.map(\.value))
    }
}

extension ModelFile {
    /// This file with its trained catalogue in the order of `itemIDs`, or nil when `itemIDs` is not a reordering
    /// of `self.itemIDs`. Every item-indexed part moves with its item (both towers' per-item rows, the item
    /// embeddings, the ids, popularity, content features), so the model scores each item as before; added items
    /// stay after the catalogue, and metadata written by callers (titles, genres) is left to them.
    public func reorderingItems(as itemIDs: [String]) -> ModelFile? {
        let n = self.itemIDs.count
        guard itemIDs.count == n else { return nil }
        var position: [String: Int] = [:]
        position.reserveCapacity(n)
        for (index, id) in self.itemIDs.enumerated() { position[id] = index }
        var order: [Int] = []
        order.reserveCapacity(n)
        for id in itemIDs {
            guard let index = position[id] else { return nil }
            order.append(index)
        }
        return reorderingItems(order: order)
    }

    /// `reorderingItems(as:)` by position: item `p` of the result is item `order[p]` of this file. Nil unless
    /// `order` is a permutation of the catalogue's indices.
    public func reorderingItems(order: [Int]) -> ModelFile? {
        let n = itemIDs.count
        guard order.count == n, model.configuration.itemCount == n, itemEmbeddings.rows == n else { return nil }
        var taken = [Bool](repeating: false, count: n)
        for index in order {
            guard index >= 0, index < n, !taken[index] else { return nil }
            taken[index] = true
        }
        var result = self
        result.model.userTower.historyEmbedding = model.userTower.historyEmbedding.gatheringRows(order)
        result.model.itemTower.idEmbedding = model.itemTower.idEmbedding.gatheringRows(order)
        result.itemEmbeddings = itemEmbeddings.gatheringRows(order)
        result.itemIDs = order.map { itemIDs[$0] }
        result.itemPopularity = itemPopularity.map { popularity in order.map { popularity[$0] } }
        result.itemContent = itemContent.map {
            ItemContent(featureNames: $0.featureNames, features: $0.features.gatheringRows(order))
        }
        result.catalogueJSON = nil
        return result
    }
}
