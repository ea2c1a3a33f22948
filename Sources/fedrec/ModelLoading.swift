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

    /// Loads the data set and checks it is the one the model was trained on.
    static func dataset(at path: String, matching model: ModelFile) throws -> Dataset {
        let dataset = try Dataset.load(from: path)
        guard SavedModel.matches(model, dataset: dataset) else {
            let catalogueOnly =
                model.extraMetadata[SavedModel.MetadataKey.datasetChecksumScope] == SavedModel.catalogueChecksumScope
            let actual = catalogueOnly ? dataset.catalogueChecksum : dataset.checksum
            throw ValidationError(
                "data set '\(path)' (\(catalogueOnly ? "catalogue " : "")checksum \(actual.prefix(12))…) is not the one "
                    + "the model was trained on (checksum \(model.datasetChecksum.prefix(12))…)")
        }
        return dataset
    }
}
