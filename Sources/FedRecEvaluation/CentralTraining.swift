public import FedRecData
public import FedRecModel
public import FedRecTensor

/// Hyper-parameters of a centralized training run (everything `fedrec train` can set).
public struct CentralTrainingConfiguration: Codable, Sendable, Equatable {
    public var dimension: Int = 64
    public var hiddenWidth: Int = 128
    public var tau: Float = 0.1
    /// Cap on the history used by the user tower (most recent items); nil: the whole history.
    public var maxHistory: Int? = nil
    /// Whether the user tower sees the data set's user features (when it has any).
    public var useUserFeatures: Bool = true
    /// Whether the item tower sees the data set's content features.
    public var useItemFeatures: Bool = true
    public var optimizer: OptimizerConfiguration = .adam(learningRate: 0.005)
    public var batchSize: Int = 1024
    /// Upper bound on epochs of the validation phase.
    public var maxEpochs: Int = 30
    /// Stop when validation Recall@K has not improved for this many epochs.
    public var patience: Int = 3
    /// The cut-off `K` of the validation metric used for early stopping.
    public var validationCutoff: Int = 20
    /// Catalogues above this train with sampled softmax.
    public var sampledSoftmaxThreshold: Int = 20_000
    public var sampledNegatives: Int = 2_048
    /// Refit on the full training set for the best epoch count (the protocol's final figures). When false
    /// the model of the best validation epoch is returned (for quick experiments only).
    public var refit: Bool = true
    /// Train for exactly this many epochs on the full training set, skipping the validation phase.
    public var fixedEpochs: Int? = nil
    public var seed: UInt64 = 1

    public init() {}

    /// The model shape for `dataset` under these settings.
    public func modelConfiguration(for dataset: Dataset) -> TwoTowerConfiguration {
        TwoTowerConfiguration(
            dimension: dimension, hiddenWidth: hiddenWidth, tau: tau, itemCount: dataset.itemIDs.count,
            itemFeatureCount: useItemFeatures ? dataset.itemFeatures.columns : 0,
            userFeatureCount: useUserFeatures ? dataset.userFeatures.columns : 0,
            maxHistory: maxHistory, sampledSoftmaxThreshold: sampledSoftmaxThreshold,
            sampledNegatives: sampledNegatives)
    }
}

/// One epoch of a centralized run, as shown while training and stored with the model.
public struct EpochRecord: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// Fitted on train minus validation; scored on the validation slice.
        case validation
        /// Refitted on the full training set for the chosen number of epochs.
        case refit
    }
    public var phase: Phase
    public var epoch: Int
    public var meanLoss: Float
    public var examples: Int
    public var examplesPerSecond: Double
    public var seconds: Double
    /// Validation Recall@K after this epoch (validation phase only).
    public var validationRecall: Double?
}

/// The outcome of `CentralTraining.run`.
public struct CentralTrainingResult: Sendable {
    public var model: TwoTowerModel
    /// Epochs of the chosen model (the best validation epoch).
    public var bestEpoch: Int
    /// Best validation Recall@K (nil when the validation phase was skipped).
    public var bestValidationRecall: Double?
    public var epochs: [EpochRecord]
}

/// Centralized training with early stopping on the validation slice, then a refit on the full training set
/// for the best number of epochs (`fedrec-eval-v1`: never choose an epoch on test).
public enum CentralTraining {
    /// Item features as the model sees them (an empty matrix when content features are off).
    public static func itemFeatures(of dataset: Dataset, for configuration: TwoTowerConfiguration) -> SparseMatrix {
        configuration.itemFeatureCount == 0 ? .empty(rows: dataset.itemIDs.count) : dataset.itemFeatures
    }

    /// User features as the model sees them (nil when the model takes none).
    public static func userFeatures(of dataset: Dataset, for configuration: TwoTowerConfiguration) -> SparseMatrix? {
        configuration.userFeatureCount == 0 ? nil : dataset.userFeatures
    }

    /// Normalised embeddings of every user of the data set (row = user index), each from its `known` items in
    /// `fold`, cut to the model's `maxHistory` most recent items.
    public static func userEmbeddings(model: TwoTowerModel, dataset: Dataset, fold: [FoldUser]) -> Matrix {
        var histories = [[Int32]](repeating: [], count: dataset.userIDs.count)
        let cap = model.configuration.maxHistory
        for user in fold {
            histories[user.userIndex] = cap.map { Array(user.known.suffix($0)) } ?? user.known
        }
        return model.userEmbeddings(
            histories: histories, userFeatures: userFeatures(of: dataset, for: model.configuration), userRows: nil)
    }

    /// Scores `model` on `fold` per the protocol.
    public static func evaluate(
        model: TwoTowerModel, dataset: Dataset, fold: Fold, cutoffs: [Int] = [10, 20, 50]
    ) -> EvaluationReport {
        let users = dataset.split.fold(fold)
        let scorer = EmbeddingScorer(
            userEmbeddings: userEmbeddings(model: model, dataset: dataset, fold: users),
            itemEmbeddings: model.itemEmbeddings(itemFeatures: itemFeatures(of: dataset, for: model.configuration)))
        return Evaluator(cutoffs: cutoffs).evaluate(scorer, on: users, itemCount: dataset.itemIDs.count, fold: fold)
    }

    /// Runs the validation phase (unless `fixedEpochs` is set) and the refit; `progress` sees every epoch.
    public static func run(
        dataset: Dataset, configuration: CentralTrainingConfiguration,
        progress: (EpochRecord) -> Void = { _ in }
    ) -> CentralTrainingResult {
        let modelConfiguration = configuration.modelConfiguration(for: dataset)
        let items = itemFeatures(of: dataset, for: modelConfiguration)
        let userFeatureRows = userFeatures(of: dataset, for: modelConfiguration)
        var records: [EpochRecord] = []

        func train(fold: Fold, epochs: Int, phase: EpochRecord.Phase, validate: Bool)
            -> (model: TwoTowerModel, best: Int, bestRecall: Double?)
        {
            let users = dataset.split.fold(fold)
            var trainer = Trainer(
                model: TwoTowerModel(configuration: modelConfiguration, seed: configuration.seed),
                optimizer: configuration.optimizer, seed: configuration.seed &+ 1)
            var best = (model: trainer.model, epoch: 0, recall: -1.0)
            for epoch in 1...max(epochs, 1) {
                let statistics = trainer.trainEpoch(
                    users: users, itemFeatures: items, userFeatures: userFeatureRows, batchSize: configuration.batchSize)
                var recall: Double? = nil
                if validate {
                    let report = evaluate(
                        model: trainer.model, dataset: dataset, fold: .validation,
                        cutoffs: [configuration.validationCutoff])
                    recall = report.value(.recall, at: configuration.validationCutoff) ?? 0
                }
                let record = EpochRecord(
                    phase: phase, epoch: epoch, meanLoss: statistics.meanLoss, examples: statistics.examples,
                    examplesPerSecond: statistics.examplesPerSecond, seconds: statistics.seconds,
                    validationRecall: recall)
                records.append(record)
                progress(record)
                if let recall {
                    if recall > best.recall {
                        best = (trainer.model, epoch, recall)
                    } else if epoch - best.epoch >= configuration.patience {
                        break
                    }
                } else {
                    best = (trainer.model, epoch, best.recall)
                }
            }
            return (best.model, best.epoch, best.recall >= 0 ? best.recall : nil)
        }

        if let fixed = configuration.fixedEpochs {
            let refit = train(fold: .test, epochs: fixed, phase: .refit, validate: false)
            return CentralTrainingResult(model: refit.model, bestEpoch: fixed, bestValidationRecall: nil, epochs: records)
        }
        let tuning = train(fold: .validation, epochs: configuration.maxEpochs, phase: .validation, validate: true)
        guard configuration.refit else {
            return CentralTrainingResult(
                model: tuning.model, bestEpoch: tuning.best, bestValidationRecall: tuning.bestRecall, epochs: records)
        }
        let refit = train(fold: .test, epochs: tuning.best, phase: .refit, validate: false)
        return CentralTrainingResult(
            model: refit.model, bestEpoch: tuning.best, bestValidationRecall: tuning.bestRecall, epochs: records)
    }
}
