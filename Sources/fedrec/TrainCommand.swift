import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import FedRecTensor
import Foundation

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the two-tower model centrally.",
        discussion: """
            Fits on the training set minus its validation slice, stops early on validation Recall@K, then refits \
            on the full training set for the best number of epochs (fedrec-eval-v1) and writes a safetensors model.
            """
    )

    @Option(help: "Data-set folder written by 'fedrec data import'.")
    var dataset: String

    @Option(help: "Model file to write (safetensors).")
    var out: String

    @Option(parsing: .unconditional, help: "Embedding width d of both towers.")
    var dimension: Int = 64

    @Option(parsing: .unconditional, help: "Softmax temperature tau (score = cosine / tau).")
    var tau: Float = 0.1

    @Option(help: "Optimizer: adam or sgd.")
    var optimizer: String = "adam"

    @Option(name: .customLong("lr"), parsing: .unconditional, help: "Learning rate.")
    var learningRate: Float = 0.005

    @Option(parsing: .unconditional, help: "Decoupled weight decay.")
    var weightDecay: Float = 0

    @Option(parsing: .unconditional, help: "Examples per step.")
    var batchSize: Int = 1024

    @Option(parsing: .unconditional, help: "Most epochs of the validation phase.")
    var maxEpochs: Int = 30

    @Option(parsing: .unconditional, help: "Stop after this many epochs without a better validation Recall@20.")
    var patience: Int = 3

    @Option(parsing: .unconditional, help: "Skip validation: train exactly this many epochs on the full training set.")
    var epochs: Int?

    @Option(parsing: .unconditional, help: "Use only the most recent N history items in the user tower (default: all).")
    var maxHistory: Int?

    @Option(
        parsing: .unconditional, help: "Catalogues above this many items train with sampled softmax (log-Q corrected).")
    var sampledSoftmaxThreshold: Int = 20_000

    @Option(parsing: .unconditional, help: "Negatives per batch for sampled softmax.")
    var sampledNegatives: Int = 2_048

    @Flag(help: "Ignore the data set's user features.")
    var noUserFeatures = false

    @Flag(help: "Ignore the item content features (ID embedding only).")
    var noItemFeatures = false

    @Flag(help: "Keep the best validation-phase model instead of refitting on the full training set.")
    var noRefit = false

    @Option(parsing: .unconditional, help: "Seed of initialisation, shuffling and negative sampling.")
    var seed: UInt64 = 1

    @Option(help: "Also write the per-epoch history as JSON to this file.")
    var historyJSON: String?

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        try OptionChecks.dimension(dimension)
        guard tau > 0, tau.isFinite else { throw ValidationError("--tau must be a positive number, got \(tau)") }
        guard learningRate > 0, learningRate.isFinite else {
            throw ValidationError("--lr must be a positive number, got \(learningRate)")
        }
        guard weightDecay >= 0 else { throw ValidationError("--weight-decay must be >= 0, got \(weightDecay)") }
        guard ["adam", "sgd"].contains(optimizer) else {
            throw ValidationError("--optimizer must be 'adam' or 'sgd', got '\(optimizer)'")
        }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
        guard maxEpochs > 0 else { throw ValidationError("--max-epochs must be positive, got \(maxEpochs)") }
        guard patience > 0 else { throw ValidationError("--patience must be positive, got \(patience)") }
        if let epochs, epochs <= 0 { throw ValidationError("--epochs must be positive, got \(epochs)") }
        if let maxHistory, maxHistory <= 0 {
            throw ValidationError("--max-history must be positive, got \(maxHistory)")
        }
        guard sampledNegatives > 0 else {
            throw ValidationError("--sampled-negatives must be positive, got \(sampledNegatives)")
        }
        guard sampledSoftmaxThreshold >= 0 else {
            throw ValidationError("--sampled-softmax-threshold must be >= 0, got \(sampledSoftmaxThreshold)")
        }
        // Before training, not after it: the model goes where a model may go.
        try OutputPaths.checkModelFile(out)
        if let historyJSON { try OutputPaths.checkFile(historyJSON, option: "--history-json") }
    }

    var trainingConfiguration: CentralTrainingConfiguration {
        var configuration = CentralTrainingConfiguration()
        configuration.dimension = dimension
        configuration.tau = tau
        configuration.maxHistory = maxHistory
        configuration.useUserFeatures = !noUserFeatures
        configuration.useItemFeatures = !noItemFeatures
        configuration.optimizer =
            optimizer == "sgd"
            ? .sgd(learningRate: learningRate, weightDecay: weightDecay)
            : .adam(learningRate: learningRate, weightDecay: weightDecay)
        configuration.batchSize = batchSize
        configuration.maxEpochs = maxEpochs
        configuration.patience = patience
        configuration.fixedEpochs = epochs
        configuration.refit = !noRefit
        configuration.sampledSoftmaxThreshold = sampledSoftmaxThreshold
        configuration.sampledNegatives = sampledNegatives
        configuration.seed = seed
        return configuration
    }

    func run() async throws {
        runtime.apply()
        let data = try Dataset.load(from: dataset)
        let configuration = trainingConfiguration
        let shape = configuration.modelConfiguration(for: data)
        print(
            "training on \(data.manifest.sourceFormat.rawValue): \(data.userIDs.count) users, \(data.itemIDs.count) items, "
                + "\(shape.itemFeatureCount) item features, \(shape.userFeatureCount) user features, d=\(dimension), "
                + "tau=\(tau), \(shape.usesSampledSoftmax ? "sampled softmax (\(sampledNegatives) negatives)" : "full softmax")"
        )
        let started = ContinuousClock.now
        let result = CentralTraining.run(dataset: data, configuration: configuration) { record in
            let recall = record.validationRecall.map { String(format: "  val R@20 %.4f", $0) } ?? ""
            print(
                String(
                    format: "%@ epoch %2d  loss %.4f%@  %.0f examples/s  %.1f s", record.phase.rawValue, record.epoch,
                    record.meanLoss, recall, record.examplesPerSecond, record.seconds))
        }
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        if let best = result.bestValidationRecall {
            print(String(format: "best validation R@20 %.4f at epoch %d", best, result.bestEpoch))
        }

        let summary = TrainingSummary(
            configuration: configuration, bestEpoch: result.bestEpoch,
            bestValidationRecall: result.bestValidationRecall, epochs: result.epochs, seconds: seconds)
        let file = SavedModel.file(
            model: result.model, dataset: data,
            extraMetadata: [
                SavedModel.MetadataKey.training: SavedModel.encodeJSON(summary),
                // Refit (or a fixed epoch count) trains on the whole training set; --no-refit keeps the
                // validation-phase model.
                SavedModel.MetadataKey.evaluationFold: epochs != nil || !noRefit ? "test" : "validation",
            ])
        try file.write(to: out)
        if let historyJSON {
            try Data(SavedModel.encodeJSON(summary).utf8).write(to: URL(fileURLWithPath: historyJSON), options: .atomic)
        }
        print(String(format: "wrote %@ (%.1f s of training)", out, seconds))
    }
}

/// What `fedrec train` stores in the model file's `training` metadata.
struct TrainingSummary: Codable {
    var configuration: CentralTrainingConfiguration
    var bestEpoch: Int
    var bestValidationRecall: Double?
    var epochs: [EpochRecord]
    var seconds: Double
}
