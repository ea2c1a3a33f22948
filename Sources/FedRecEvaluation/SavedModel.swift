public import FedRecData
public import FedRecModel
import FedRecTensor
import Foundation

/// The one way fedrec builds a model file to save: `fedrec train`, `fedrec simulate` and the coordinator's
/// per-round checkpoints all call `SavedModel.file`, so every saved model carries what recall needs (catalogue
/// ids, titles, genres, training popularity, content features) whichever way it was trained.
///
/// A model trained under differential privacy is released as `.differentiallyPrivate`: its file carries nothing
/// computed from the interactions besides the noised model itself, so the run's epsilon bounds what the file
/// reveals. Exact training popularity (per-item counts) and a checksum over the interactions would each let
/// someone who knows every other user's data read off one user's items; instead the file has no popularity (the
/// recall popularity channel is then unavailable) and a checksum of the catalogue's files only
/// (`Dataset.catalogueChecksum`, marked by `MetadataKey.datasetChecksumScope`), and it lists the catalogue in
/// byte order of the item ids, not in the data set's item-index order (the order of first appearance in the
/// interactions file, which spells out the first users' items). Readers that pair such a file with its data
/// set reorder it (`aligned(_:to:)`). The catalogue and the items' content features are treated as public, as a
/// platform's item list is.
public enum SavedModel {
    /// What a model file may disclose of the data it was trained on.
    public enum Release: Sendable, Equatable {
        /// Training popularity and the whole data set's checksum (central or non-private training).
        case full
        /// Only the catalogue: no popularity, the catalogue's checksum (a model trained under differential privacy).
        case differentiallyPrivate
    }

    /// Metadata keys fedrec adds beside the model file's required ones.
    public enum MetadataKey {
        public static let itemTitles = "item_titles"
        public static let itemGenres = "item_genres"
        public static let datasetName = "dataset_name"
        public static let training = "training"
        public static let federatedRounds = "federated_rounds"
        /// The `fedrec-eval-v1` fold the model may be evaluated on: "test" when it was trained on the whole
        /// training set, "validation" when on the training set minus its validation slice (a validation-phase
        /// model: on test its figures would not be the protocol's; a test-fold model on validation would be
        /// scored on items it trained on). Absent in files written before it was recorded.
        public static let evaluationFold = "evaluation_fold"
        /// "catalogue" when `dataset_checksum` is `Dataset.catalogueChecksum` (a `.differentiallyPrivate`
        /// release); absent when it is the whole data set's `Dataset.checksum`.
        public static let datasetChecksumScope = "dataset_checksum_scope"
    }

    /// `MetadataKey.datasetChecksumScope`'s value for a checksum of the catalogue's files only.
    public static let catalogueChecksumScope = "catalogue"

    /// Whether `model`'s recorded `dataset_checksum` is `dataset`'s: the whole data set's checksum, or only its
    /// catalogue's for a model released under differential privacy.
    public static func matches(_ model: ModelFile, dataset: Dataset) -> Bool {
        if model.extraMetadata[MetadataKey.datasetChecksumScope] == catalogueChecksumScope {
            let catalogueChecksum = dataset.catalogueChecksum  // a sort and a hash of the catalogue: once
            return !catalogueChecksum.isEmpty && model.datasetChecksum == catalogueChecksum
        }
        return model.datasetChecksum == dataset.checksum
    }

    /// What every model file of one data set carries besides the model itself (titles, genres, content
    /// features, training popularity unless the release is differentially private, catalogue ids). Building it
    /// scans the data set, so a process that saves many files of one run (the coordinator checkpoints every round)
    /// builds it once.
    public struct Catalogue: Sendable {
        let metadata: [String: String]
        let itemFeatures: SparseMatrix
        let datasetChecksum: String
        let itemIDs: [String]
        let itemPopularity: [Float]?
        let itemContent: ItemContent
        /// The model configuration the item features were chosen for.
        let configuration: TwoTowerConfiguration
        /// The item ids' and feature names' JSON, encoded once (in the release's order).
        let json: ModelFile.CatalogueJSON
        /// A differentially private release's catalogue order as data-set item indices
        /// (`Dataset.itemIndicesInIDOrder`; nil: the data set's own order), and the content features in it
        /// (computed once per run; the coordinator writes a file every round).
        let releasePermutation: [Int]?
        let releaseContent: ItemContent?

        public init(dataset data: Dataset, configuration: TwoTowerConfiguration, release: Release = .full) {
            var metadata = [MetadataKey.datasetName: data.manifest.sourceFormat.rawValue]
            switch release {
            case .full:
                datasetChecksum = data.checksum
                itemPopularity = trainingPopularity(of: data)
                releasePermutation = nil
                metadata[MetadataKey.itemTitles] = encodeJSON(data.titles)
                metadata[MetadataKey.itemGenres] = encodeJSON(data.genres)
            case .differentiallyPrivate:
                datasetChecksum = data.catalogueChecksum
                metadata[MetadataKey.datasetChecksumScope] = catalogueChecksumScope
                itemPopularity = nil
                let order = data.itemIndicesInIDOrder
                releasePermutation = order
                metadata[MetadataKey.itemTitles] = encodeJSON(order.map { data.titles[$0] })
                metadata[MetadataKey.itemGenres] = encodeJSON(order.map { data.genres[$0] })
            }
            self.metadata = metadata
            itemFeatures = CentralTraining.itemFeatures(of: data, for: configuration)
            itemIDs = data.itemIDs
            itemContent = ItemContent(featureNames: data.itemFeatureNames, features: data.itemFeatures)
            releaseContent = releasePermutation.map {
                ItemContent(featureNames: data.itemFeatureNames, features: data.itemFeatures.gatheringRows($0))
            }
            self.configuration = configuration
            let ids = data.itemIDs
            json = ModelFile.CatalogueJSON(
                itemIDs: releasePermutation.map { $0.map { ids[$0] } } ?? ids, featureNames: itemContent.featureNames)
        }
    }

    /// The model file of `model` trained on `data`, plus `extraMetadata` (which may not override the keys above).
    public static func file(
        model: TwoTowerModel, dataset data: Dataset, extraMetadata: [String: String] = [:], release: Release = .full
    ) -> ModelFile {
        file(
            model: model, catalogue: Catalogue(dataset: data, configuration: model.configuration, release: release),
            extraMetadata: extraMetadata)
    }

    /// The model file of `model` with a prepared `catalogue` (built for `model`'s configuration).
    public static func file(model: TwoTowerModel, catalogue: Catalogue, extraMetadata: [String: String] = [:])
        -> ModelFile
    {
        precondition(
            catalogue.configuration == model.configuration, "the catalogue was built for another model configuration")
        var file = ModelFile(
            model: model, itemFeatures: catalogue.itemFeatures, datasetChecksum: catalogue.datasetChecksum,
            itemIDs: catalogue.itemIDs, extraMetadata: extraMetadata.merging(catalogue.metadata) { _, fixed in fixed },
            itemPopularity: catalogue.itemPopularity,
            itemContent: catalogue.releasePermutation == nil ? catalogue.itemContent : nil)
        if let order = catalogue.releasePermutation {
            // A permutation of the catalogue the file was just built on: never nil.
            file = file.reorderingItems(order: order)!
            file.itemContent = catalogue.releaseContent
        }
        file.catalogueJSON = catalogue.json
        return file
    }

    /// `model` with its catalogue in `dataset`'s item-index order, for code that indexes the model by the data
    /// set's item indices (evaluation, a resumed coordinator): a differentially private release lists its items
    /// in byte order of their ids. Titles and genres follow. Nil when the two catalogues hold different items.
    public static func aligned(_ model: ModelFile, to dataset: Dataset) -> ModelFile? {
        if model.itemIDs == dataset.itemIDs { return model }
        guard var file = model.reorderingItems(as: dataset.itemIDs) else { return nil }
        if file.extraMetadata[MetadataKey.itemTitles] != nil {
            file.extraMetadata[MetadataKey.itemTitles] = encodeJSON(dataset.titles)
        }
        if file.extraMetadata[MetadataKey.itemGenres] != nil {
            file.extraMetadata[MetadataKey.itemGenres] = encodeJSON(dataset.genres)
        }
        return file
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
