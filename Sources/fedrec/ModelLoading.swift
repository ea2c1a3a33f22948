import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import Foundation

/// Loading a model file and its data set for the commands that use both, with clear errors.
enum ModelLoading {
    static func model(at path: String) throws -> ModelFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("model file '\(path)' does not exist")
        }
        return try ModelFile.read(from: path)
    }

    /// Loads the data set and checks it is the one the model was trained on (and, when `readsUserFeatures`, that
    /// its user features have the model's width).
    static func dataset(at path: String, matching model: ModelFile, readsUserFeatures: Bool = true) throws -> Dataset {
        let dataset = try Dataset.load(from: path)
        guard SavedModel.matches(model, dataset: dataset) else {
            let catalogueOnly =
                model.extraMetadata[SavedModel.MetadataKey.datasetChecksumScope] == SavedModel.catalogueChecksumScope
            let actual = catalogueOnly ? dataset.catalogueChecksum : dataset.checksum
            throw ValidationError(
                "data set '\(path)' (\(catalogueOnly ? "catalogue " : "")checksum \(actual.prefix(12))…) is not the one "
                    + "the model was trained on (checksum \(model.datasetChecksum.prefix(12))…)")
        }
        // A model released under differential privacy is matched by its catalogue only, so the user features
        // (user_features.tsv) may differ; the user tower reads exactly its configured width.
        let width = model.model.configuration.userFeatureCount
        guard !readsUserFeatures || width == 0 || width == dataset.userFeatures.columns else {
            throw ValidationError(
                "data set '\(path)' has \(dataset.userFeatures.columns) user-feature column(s) "
                    + "(user_feature_names.tsv), the model takes \(width): it was trained on another data set")
        }
        // The item tower reads the data set's item features with the model's width (a file whose recorded
        // checksum was copied from another could otherwise pair them).
        let itemWidth = model.model.configuration.itemFeatureCount
        guard itemWidth == 0 || itemWidth == dataset.itemFeatures.columns else {
            throw ValidationError(
                "data set '\(path)' has \(dataset.itemFeatures.columns) item-feature column(s) "
                    + "(item_feature_names.tsv), the model takes \(itemWidth): it was trained on another data set")
        }
        return dataset
    }

    /// `model` with its items in `dataset`'s item-index order (a model released under differential privacy lists
    /// them in id order), for code that indexes the model by the data set's item indices.
    static func aligned(_ model: ModelFile, to dataset: Dataset, path: String) throws -> ModelFile {
        guard let aligned = SavedModel.aligned(model, to: dataset) else {
            throw ValidationError("data set '\(path)' does not hold the model's catalogue (other item ids)")
        }
        return aligned
    }
}
