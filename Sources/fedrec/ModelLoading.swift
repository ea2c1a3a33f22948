import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import Foundation

/// Loading a model file and its data set for the commands that use both, with clear errors.
enum ModelLoading {
    /// Metadata keys fedrec adds beside the model file's required ones.
    enum MetadataKey {
        static let itemTitles = "item_titles"
        static let itemGenres = "item_genres"
        static let datasetName = "dataset_name"
        static let training = "training"
    }

    static func model(at path: String) throws -> ModelFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("model file '\(path)' does not exist")
        }
        return try ModelFile.read(from: path)
    }

    /// Loads the data set and checks it is the one the model was trained on.
    static func dataset(at path: String, matching model: ModelFile) throws -> Dataset {
        let dataset = try Dataset.load(from: path)
        guard dataset.checksum == model.datasetChecksum else {
            throw ValidationError(
                "data set '\(path)' (checksum \(dataset.checksum.prefix(12))…) is not the one the model was trained on "
                    + "(checksum \(model.datasetChecksum.prefix(12))…)")
        }
        return dataset
    }

    /// The model file of `model` trained on `data`: catalogue ids, titles and genres, training popularity and
    /// content features (for recall's channels), plus `extraMetadata`. Every command that saves a model uses it.
    static func modelFile(model: TwoTowerModel, dataset data: Dataset, extraMetadata: [String: String] = [:])
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
    static func trainingPopularity(of data: Dataset) -> [Float] {
        var counts = [Float](repeating: 0, count: data.itemIDs.count)
        for user in data.split.users {
            for item in user.train { counts[Int(item)] += 1 }
        }
        return counts
    }

    /// Titles stored in the model file (catalogue order), or nil when absent.
    static func titles(of model: ModelFile) -> [String]? {
        decodeJSON([String].self, model.extraMetadata[MetadataKey.itemTitles])
    }

    static func genres(of model: ModelFile) -> [[String]]? {
        decodeJSON([[String]].self, model.extraMetadata[MetadataKey.itemGenres])
    }

    static func encodeJSON<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? ""
    }

    private static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String?) -> T? {
        guard let text else { return nil }
        return try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
