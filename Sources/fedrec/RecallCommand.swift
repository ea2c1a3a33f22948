import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import FedRecTensor
import Foundation

struct RecallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recall",
        abstract: "Top-K recall for a history, with the aggregated user tower and the model's item index.",
        discussion: """
            The history is a user's training items from a data set (--user with --dataset) or a list of item ids \
            (--history-ids). Items in the history are excluded from the result.
            """
    )

    @Option(help: "Model file (safetensors).")
    var model: String

    @Option(help: "Data-set folder (needed with --user; must be the model's).")
    var dataset: String?

    @Option(help: "User id in the data set: recall from their training history.")
    var user: String?

    @Option(name: .customLong("history-ids"), help: "History as comma-separated item ids.")
    var historyIDs: String?

    @Option(help: "How many items to return.")
    var k: Int = 10

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard k > 0 else { throw ValidationError("--k must be positive, got \(k)") }
        guard (user == nil) != (historyIDs == nil) else {
            throw ValidationError("give exactly one of --user (with --dataset) or --history-ids")
        }
        if user != nil, dataset == nil { throw ValidationError("--user needs --dataset") }
    }

    struct Recommendation: Codable {
        var rank: Int
        var id: String
        var title: String
        var genres: [String]
        var score: Float
    }

    func run() async throws {
        runtime.apply()
        let file = try ModelLoading.model(at: model)
        let configuration = file.model.configuration
        var indexByID: [String: Int32] = [:]
        for (index, id) in file.itemIDs.enumerated() { indexByID[id] = Int32(index) }

        var history: [Int32] = []
        var userFeatures: SparseMatrix? = nil
        var userRow: Int? = nil
        if let user, let dataset {
            let data = try ModelLoading.dataset(at: dataset, matching: file)
            guard let userIndex = data.userIDs.firstIndex(of: user) else {
                throw ValidationError("user '\(user)' is not in data set '\(dataset)' (\(data.userIDs.count) users)")
            }
            history = data.split.users.first { $0.userIndex == userIndex }?.train ?? []
            if configuration.userFeatureCount > 0 {
                userFeatures = data.userFeatures
                userRow = userIndex
            }
        } else if let historyIDs {
            for raw in historyIDs.split(separator: ",") {
                let id = raw.trimmingCharacters(in: .whitespaces)
                guard let index = indexByID[id] else {
                    throw ValidationError("history item '\(id)' is not in the model's catalogue")
                }
                history.append(index)
            }
        }
        if let cap = configuration.maxHistory { history = Array(history.suffix(cap)) }

        let started = ContinuousClock.now
        let embedding = file.model.userEmbeddings(
            histories: [history], userFeatures: userFeatures, userRows: userRow.map { [$0] })
        let scores = BLAS.matmul(embedding, .none, file.itemEmbeddings, .transpose)
        let top = TopK.select(scores.storage, k: k, excluding: IndexMask(count: configuration.itemCount, containing: history))
        let seconds = (ContinuousClock.now - started) / .seconds(1)

        let titles = ModelLoading.titles(of: file)
        let genres = ModelLoading.genres(of: file)
        let results = top.enumerated().map { rank, item in
            Recommendation(
                rank: rank + 1, id: file.itemIDs[item], title: titles?[item] ?? "", genres: genres?[item] ?? [],
                score: scores.storage[item])
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
            return
        }
        print("history: \(history.count) items; top \(k) of \(configuration.itemCount) (seen items excluded)")
        for result in results {
            let genreText = result.genres.isEmpty ? "" : "  [\(result.genres.joined(separator: "|"))]"
            print(String(format: "%3d  %8.4f  %@  %@%@", result.rank, result.score, result.id, result.title, genreText))
        }
        print(String(format: "recall took %.2f ms", seconds * 1000))
    }
}
