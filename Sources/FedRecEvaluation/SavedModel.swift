public import FedRecData
public import FedRecModel
import Foundation

/// The one way fedrec builds a model file to save: `fedrec train`, `fedrec simulate` and the coordinator's
/// per-round checkpoints all call `SavedModel.file`, so every saved model carries what recall needs (catalogue
/// ids, titles, genres, training popularity, content features) whichever way it was trained.
public enum SavedModel {
    /// Metadata keys fedrec adds beside the model file's required ones.
    public enum MetadataKey {
        public static let itemTitles = "item_titles"
        public static let itemGenres = "item_genres"
        public static let datasetName = "dataset_name"
        public static let training = "training"
        public static let federatedRounds = "federated_rounds"
    }

    /// The model file of `model` trained on `data`, plus `extraMetadata` (which may not override the keys above).
    public static func file(model: TwoTowerModel, dataset data: Dataset, extraMetadata: [String: String] = [:])
        -> ModelFile
    {
        var metadata = extraMetadata
        metadata[MetadataKey.itemTitles] = encodeJSON(data.titles)
        metadata[MetadataKey.itemGenres] = encodeJSON(data.genres)
        metadata[MetadataKey.datasetName] = data.manifest.sourceFormat.rawValue
        return ModelFile(
            model: model, itemFeatures: CentralTraining.itemFeatures(of: data, for: model.configuration),
            datasetChecksum: data.checksum, itemIDs: data.itemIDs, extraMetadata: metadata,
            itemPopularity: trainingPopularity(of: data),
            itemContent: ItemContent(featureNames: data.itemFeatureNames, features: data.itemFeatures))
    }

    /// Training-split interactions per catalogue item (the recall popularity channel).
    public static func trainingPopularity(of data: Dataset) -> [Float] {
        var counts = [Float](repeating: 0, count: data.itemIDs.count)
        for user in data.split.users {
            for item in user.train { counts[Int(item)] += 1 }
        }
        return counts
    }

    /// Titles stored in the model file (catalogue order), or nil when absent.
    public static func titles(of model: ModelFile) -> [String]? {
        decodeJSON([String].self, model.extraMetadata[MetadataKey.itemTitles])
    }

    /// Genres stored in the model file (catalogue order), or nil when absent.
    public static func genres(of model: ModelFile) -> [[String]]? {
        decodeJSON([[String]].self, model.extraMetadata[MetadataKey.itemGenres])
    }

    /// Sorted-key JSON of `value` ("" if it cannot be encoded, which the types used here never cause).
    public static func encodeJSON<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? ""
    }

    private static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String?) -> T? {
        guard let text else { return nil }
        return try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
