import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import Foundation

struct EvaluateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a model per fedrec-eval-v1, with the popularity baseline alongside.",
        discussion: """
            Scores every catalogue item for each user with held-out items, excludes the user's known items and \
            reports Recall, NDCG, HitRate, Precision and F1 at each cut-off.
            """
    )

    @Option(help: "Model file (safetensors) written by 'fedrec train'.")
    var model: String

    @Option(help: "Data-set folder the model was trained on.")
    var dataset: String

    @Option(help: "Fold: 'test' (final figures) or 'validation' (tuning).")
    var fold: String = "test"

    @Option(help: "Cut-offs K, comma separated.")
    var k: String = "10,20,50"

    @Flag(help: "Print JSON instead of tables.")
    var json = false

    @OptionGroup var runtime: RuntimeOptions

    var cutoffs: [Int] { k.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard Fold(rawValue: fold) != nil else {
            throw ValidationError("--fold must be 'test' or 'validation', got '\(fold)'")
        }
        let parts = k.split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty, parts.count == cutoffs.count, cutoffs.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--k must be positive whole numbers separated by commas, got '\(k)'")
        }
    }

    func run() async throws {
        runtime.apply()
        let file = try ModelLoading.model(at: model)
        let data = try ModelLoading.dataset(at: dataset, matching: file)
        let aligned = try ModelLoading.aligned(file, to: data, path: dataset).model
        let fold = Fold(rawValue: fold)!
        if let trainedFor = file.extraMetadata[SavedModel.MetadataKey.evaluationFold], Fold(rawValue: trainedFor) == nil {
            throw ValidationError(
                "model '\(model)': metadata '\(SavedModel.MetadataKey.evaluationFold)' is '\(trainedFor)', not a fold "
                    + "(test or validation); the file was not written by fedrec")
        }
        if let trainedFor = file.extraMetadata[SavedModel.MetadataKey.evaluationFold], trainedFor != fold.rawValue {
            throw ValidationError(
                "model '\(model)' was trained for the \(trainedFor) fold ("
                    + (trainedFor == "test"
                        ? "on the whole training set, validation slice included: on validation it would be scored on "
                            + "items it trained on"
                        : "on the training set minus its validation slice, chosen there: its test figures would not "
                            + "be fedrec-eval-v1's")
                    + "); evaluate it with --fold \(trainedFor)")
        }
        let started = ContinuousClock.now
        let report = CentralTraining.evaluate(model: aligned, dataset: data, fold: fold, cutoffs: cutoffs)
        let users = data.split.fold(fold)
        let popularity = Evaluator(cutoffs: cutoffs).evaluate(
            PopularityScorer(users: users, itemCount: data.itemIDs.count), on: users,
            itemCount: data.itemIDs.count, fold: fold)
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        if json {
            let reports = ["model": report, "popularity": popularity]
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(reports), as: UTF8.self))
        } else {
            print("fedrec-eval-v1, \(fold.rawValue) fold, \(report.usersEvaluated) users, \(data.itemIDs.count) items")
            print("\nmodel (\(model))\n\(report.table)")
            print("\npopularity baseline\n\(popularity.table)")
            print(String(format: "\nevaluated in %.2f s", seconds))
        }
    }
}
