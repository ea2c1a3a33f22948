import ArgumentParser
import FedRecData
import FedRecModel
import FedRecRecall
import FedRecTensor
import Foundation

struct RecallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recall",
        abstract: "Top-K recall: embedding, content and popularity channels over the model's item index.",
        discussion: """
            The history is given by titles (--history, case-insensitive), item ids (--history-ids), a user's \
            training items in a data set (--user with --dataset), or many histories in a file (--input: one \
            comma-separated id list per line, or a split file such as train.tsv; writes JSON lines). --serve \
            answers POST /recall with JSON instead until SIGINT or SIGTERM (which lets requests in flight finish; a \
            second signal exits at once with 128 + its number). An empty history (--history-ids "") is a cold user: \
            popularity plus content, or the user tower on the empty history for a model without item popularity \
            (one trained under differential privacy). Seen items are excluded unless --include-seen.
            """
    )

    @Option(help: "Model file (safetensors).")
    var model: String

    @Option(
        help: ArgumentHelp(
            "Data-set folder (needed with --user; with --input of a split file, gives each user's features to a "
                + "model that takes them; must be the model's)."))
    var dataset: String?

    @Option(help: "User id in the data set: recall from their training history.")
    var user: String?

    @Option(
        help:
            "History as comma-separated titles, e.g. \"Star Wars (1977),Fargo (1996)\"; a title may hold commas (\"Shawshank Redemption, The (1994)\": the longest run that is a title is taken)."
    )
    var history: String?

    @Option(name: .customLong("history-ids"), help: "History as comma-separated item ids (\"\" for none).")
    var historyIDs: String?

    @Option(help: "Recall for every history of this file, writing JSON lines.")
    var input: String?

    @Flag(help: "Serve recall over HTTP (POST /recall, GET /health).")
    var serve = false

    @Option(help: "Address to listen on with --serve.")
    var host: String = "127.0.0.1"

    @Option(parsing: .unconditional, help: "Port to listen on with --serve (0: any free port, printed).")
    var port: Int = 8080

    @Option(parsing: .unconditional, help: "Largest request body accepted with --serve, in bytes.")
    var maxRequestBytes: Int = 65_536

    @Option(
        parsing: .unconditional,
        help: "With --serve, seconds a connection may take to send its request head before it is closed.")
    var requestHeadTimeout: Double = 5

    @Option(parsing: .unconditional, help: "How many items to return.")
    var k: Int = 10

    @Option(help: "Comma-separated item ids never to return.")
    var exclude: String?

    @Flag(help: "Allow items of the history in the result.")
    var includeSeen = false

    @Option(parsing: .unconditional, help: "Minimum cosine of the embedding and content channels.")
    var minScore: Float?

    @Option(help: "Channel shares for users with a full history, e.g. embedding=0.8,content=0.2.")
    var quotas: String?

    @Option(help: "Channel shares for short histories.")
    var shortQuotas: String?

    @Option(help: "Channel shares for cold users (no trained item in the history).")
    var coldQuotas: String?

    @Option(parsing: .unconditional, help: "Histories with fewer trained items than this get the short-history shares.")
    var shortHistory: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var indexOptions: IndexOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard k > 0 else { throw ValidationError("--k must be positive, got \(k)") }
        let sources = [user != nil, history != nil, historyIDs != nil, input != nil, serve].filter { $0 }.count
        guard sources == 1 else {
            throw ValidationError(
                "give exactly one of --user (with --dataset), --history, --history-ids, --input or --serve")
        }
        if user != nil, dataset == nil { throw ValidationError("--user needs --dataset") }
        guard shortHistory >= 1 else {
            throw ValidationError("--short-history must be at least 1, got \(shortHistory)")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        guard maxRequestBytes >= 64 else { throw ValidationError("--max-request-bytes must be at least 64") }
        guard requestHeadTimeout.isFinite, (0.01...3_600).contains(requestHeadTimeout) else {
            throw ValidationError("--request-head-timeout must lie in 0.01...3600 seconds")
        }
        if let minScore, !minScore.isFinite { throw ValidationError("--min-score must be a number") }
        do {
            _ = try recallConfiguration()
        } catch {
            throw error.validation
        }
    }

    func recallConfiguration() throws(RecallError) -> RecallConfiguration {
        var configuration = RecallConfiguration()
        configuration.k = k
        configuration.excludeSeen = !includeSeen
        configuration.minimumScore = minScore
        configuration.shortHistoryLength = shortHistory
        if let quotas { configuration.warm = try ChannelQuotas.parse(quotas) }
        if let shortQuotas { configuration.short = try ChannelQuotas.parse(shortQuotas) }
        if let coldQuotas { configuration.cold = try ChannelQuotas.parse(coldQuotas) }
        return configuration
    }

    func run() async throws {
        runtime.apply()
        let configuration = try recallConfiguration()
        let (file, recommender) = try RecallSetup.recommender(model: model, index: indexOptions)
        let catalogue = recommender.catalogue
        let excluded: [Int32]
        do {
            excluded = try catalogue.resolve(ids: RecallSetup.list(exclude ?? ""), role: "excluded item")
        } catch {
            throw ValidationError(error.message)
        }

        if serve {
            var server = RecallHTTPServer(
                host: host, port: port, maxBodyBytes: maxRequestBytes,
                handler: RecallHTTPHandler(recommender: recommender, configuration: configuration, excluded: excluded))
            server.headDeadline = .milliseconds(Int64(requestHeadTimeout * 1000))
            try await server.run { address in
                let line =
                    "fedrec recall: serving \(catalogue.count) items (\(recommender.index.kind) index) on http://\(address)\n"
                writeUnchecked(STDOUT_FILENO, line)
            }
            return
        }

        if let input {
            try runBatch(
                input: input, file: file, recommender: recommender, configuration: configuration, excluded: excluded)
            return
        }

        var request = RecallRequest(history: [], exclude: excluded)
        do {
            if let user, let dataset {
                let data = try ModelLoading.dataset(at: dataset, matching: file)
                guard let userIndex = data.userIDs.firstIndex(of: user) else {
                    throw ValidationError(
                        "user '\(user)' is not in data set '\(dataset)' (\(data.userIDs.count) users)")
                }
                // By id: a model released under differential privacy lists its items in another order.
                request.history = try catalogue.resolve(
                    ids: data.split.users[userIndex].train.map { data.itemIDs[Int($0)] })
                if file.model.configuration.userFeatureCount > 0 {
                    request.userFeatures = data.userFeatures.row(userIndex).map { (Int32($0.column), $0.value) }
                }
            } else if let history {
                request.history = try catalogue.resolve(titleList: history)
            } else if let historyIDs {
                request.history = try catalogue.resolve(ids: RecallSetup.list(historyIDs))
            }
        } catch let error as RecallError {
            throw error.validation
        }

        let started = ContinuousClock.now
        let result: RecallResult
        do {
            result = try recommender.recommend([request], configuration: configuration)[0]
        } catch {
            throw error.validation
        }
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let rows = RecallSetup.rows(result, catalogue: catalogue)
        if json {
            print(RecallSetup.json(rows, pretty: true))
            return
        }
        // The channels that placed an item (one available without slots, the embedding channel of a cold request
        // by default, placed none), in channel order.
        let placing = Set(result.items.map(\.channel))
        let channels = result.channels.filter { placing.contains($0) }.map(\.rawValue)
        print(
            "history: \(request.history.count) items (\(result.state.rawValue)); top \(rows.count) of \(catalogue.count) "
                + "via \(channels.isEmpty ? "no channel" : channels.joined(separator: ", ")) "
                + "(\(recommender.index.kind) index"
                + "\(configuration.excludeSeen ? ", seen items excluded" : ""))")
        for row in rows {
            let genreText = row.genres.isEmpty ? "" : "  [\(row.genres.joined(separator: "|"))]"
            print(
                String(
                    format: "%3d  %8.4f  %-10@  %@  %@%@", row.rank, row.score, row.channel, row.id, row.title,
                    genreText))
        }
        print(String(format: "recall took %.2f ms", seconds * 1000))
    }

    /// `--input`: a split file (header `user_id\titem_id\ttimestamp`, histories grouped by user in file order) or
    /// one comma-separated id list per line. Writes one JSON object per history to stdout.
    func runBatch(
        input: String, file: ModelFile, recommender: Recommender, configuration: RecallConfiguration, excluded: [Int32]
    ) throws {
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
            throw ValidationError("cannot read --input file '\(input)'")
        }
        // Split on scalars ("\r\n" is a single Character) and drop a CRLF file's "\r".
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map {
            String(String.UnicodeScalarView($0.last == "\r" ? $0.dropLast() : $0[...]))
        }
        if lines.last == "" { lines.removeLast() }
        var keys: [(name: String, value: String)] = []
        var histories: [[Int32]] = []
        var features: [[(column: Int32, value: Float)]] = []
        let catalogue = recommender.catalogue
        let takesUserFeatures = file.model.configuration.userFeatureCount > 0
        if lines.first?.hasPrefix("user_id\titem_id") == true {
            // A model with user features gets each user's row from --dataset; without it, it recalls without them.
            var rowOfUser: [String: Int] = [:]
            var data: Dataset? = nil
            if takesUserFeatures {
                if let dataset {
                    let loaded = try ModelLoading.dataset(at: dataset, matching: file)
                    for (row, id) in loaded.userIDs.enumerated() { rowOfUser[id] = row }
                    data = loaded
                } else {
                    writeUnchecked(
                        STDERR_FILENO,
                        "warning: the model takes \(file.model.configuration.userFeatureCount) user features; "
                            + "without --dataset these histories are recalled without them\n")
                }
            }
            var position: [String: Int] = [:]
            for (number, line) in lines.enumerated().dropFirst() where !line.isEmpty {
                let fields = line.components(separatedBy: "\t")
                guard fields.count >= 2 else {
                    throw ValidationError("\(input), line \(number + 1): expected user_id<TAB>item_id")
                }
                guard let item = catalogue.index(ofID: fields[1]) else {
                    throw ValidationError(
                        "\(input), line \(number + 1), field 'item_id': item '\(fields[1])' is not in the model's catalogue"
                    )
                }
                if position[fields[0]] == nil {
                    position[fields[0]] = histories.count
                    keys.append(("user", fields[0]))
                    histories.append([])
                    if let data {
                        guard let row = rowOfUser[fields[0]] else {
                            throw ValidationError(
                                "\(input), line \(number + 1), field 'user_id': user '\(fields[0])' is not in data "
                                    + "set '\(dataset!)'")
                        }
                        features.append(data.userFeatures.row(row).map { (Int32($0.column), $0.value) })
                    } else {
                        features.append([])
                    }
                }
                histories[position[fields[0]]!].append(Int32(item))
            }
        } else {
            for (number, line) in lines.enumerated() {
                do {
                    histories.append(try catalogue.resolve(ids: RecallSetup.list(line)))
                } catch {
                    throw ValidationError("\(input), line \(number + 1): \(error.message)")
                }
                keys.append(("line", String(number + 1)))
            }
        }
        struct Line: Encodable {
            var user: String?
            var line: Int?
            var state: String
            var items: [RecallSetup.Recommendation]
        }
        let chunk = 1024
        var start = 0
        while start < histories.count {
            let end = min(histories.count, start + chunk)
            let requests = (start..<end).map {
                RecallRequest(
                    history: histories[$0], exclude: excluded, userFeatures: features.isEmpty ? [] : features[$0])
            }
            let results: [RecallResult]
            do {
                results = try recommender.recommend(requests, configuration: configuration)
            } catch {
                throw error.validation
            }
            for (offset, result) in results.enumerated() {
                let key = keys[start + offset]
                let line = Line(
                    user: key.name == "user" ? key.value : nil, line: key.name == "line" ? Int(key.value) : nil,
                    state: result.state.rawValue, items: RecallSetup.rows(result, catalogue: catalogue))
                print(RecallSetup.json(line))
            }
            start = end
        }
    }
}
