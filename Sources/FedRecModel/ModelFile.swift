public import FedRecTensor
internal import Foundation

/// The fedrec model file: a safetensors file holding both towers, the normalised item-embedding matrix
/// `item_embeddings` (`itemCount x d`, computed at save time) and metadata:
/// `format` = "fedrec-model", `format_version` = "1", `configuration` (JSON of `TwoTowerConfiguration`),
/// `dataset_checksum`, `item_ids` (JSON array of strings in catalogue order), plus caller-supplied entries.
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

    static let reservedKeys: Set<String> = ["format", "format_version", "configuration", "dataset_checksum", "item_ids"]

    /// Builds the file contents; computes `itemEmbeddings` from `itemFeatures`.
    public init(model: TwoTowerModel, itemFeatures: SparseMatrix, datasetChecksum: String, itemIDs: [String], extraMetadata: [String: String] = [:]) {
        precondition(itemIDs.count == model.configuration.itemCount, "one item id per catalogue item")
        precondition(extraMetadata.keys.allSatisfy { !Self.reservedKeys.contains($0) }, "extra metadata uses a reserved key")
        self.model = model
        self.itemEmbeddings = model.itemEmbeddings(itemFeatures: itemFeatures)
        self.datasetChecksum = datasetChecksum
        self.itemIDs = itemIDs
        self.extraMetadata = extraMetadata
    }

    /// Writes atomically (temporary file + rename).
    public func write(to path: String) throws(TensorFileError) {
        var tensors = model.namedParameters.map { SafeTensor(name: $0.name, shape: $0.shape, values: $0.value.storage) }
        tensors.append(SafeTensor(name: Self.itemEmbeddingsName, shape: [itemEmbeddings.rows, itemEmbeddings.columns], values: itemEmbeddings.storage))
        var metadata = extraMetadata
        metadata["format"] = Self.format
        metadata["format_version"] = Self.formatVersion
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let configuration = try? encoder.encode(model.configuration), let ids = try? encoder.encode(itemIDs) else {
            throw TensorFileError(code: .badMetadata, file: path, message: "cannot encode the configuration or item ids")
        }
        metadata["configuration"] = String(decoding: configuration, as: UTF8.self)
        metadata["dataset_checksum"] = datasetChecksum
        metadata["item_ids"] = String(decoding: ids, as: UTF8.self)
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: path)
    }

    /// Reads and validates a model file: format and version, configuration, item ids, every tensor's presence
    /// and shape, finite values.
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
        guard configuration.dimension > 0, configuration.hiddenWidth > 0, configuration.itemCount > 0, configuration.tau > 0,
              configuration.itemFeatureCount >= 0, configuration.userFeatureCount >= 0 else {
            throw fail("invalid configuration \(json)")
        }
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
        let model = TwoTowerModel(configuration: configuration, parameters: parameters)
        var extra = file.metadata
        for key in reservedKeys { extra.removeValue(forKey: key) }
        return ModelFile(model: model, itemEmbeddings: embeddings, datasetChecksum: file.metadata["dataset_checksum"] ?? "", itemIDs: itemIDs, extraMetadata: extra)
    }

    init(model: TwoTowerModel, itemEmbeddings: Matrix, datasetChecksum: String, itemIDs: [String], extraMetadata: [String: String]) {
        self.model = model
        self.itemEmbeddings = itemEmbeddings
        self.datasetChecksum = datasetChecksum
        self.itemIDs = itemIDs
        self.extraMetadata = extraMetadata
    }
}
