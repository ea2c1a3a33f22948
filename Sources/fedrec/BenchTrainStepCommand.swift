import ArgumentParser
import FedRecModel
import FedRecTensor

/// `fedrec bench train-step`: training examples per second of one optimizer step on seeded synthetic data.
struct BenchTrainStepCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Training examples per second of one step (single BLAS thread, synthetic data).")

    @Option(name: .customLong("items"), help: "Catalogue sizes to measure (repeatable).")
    var items: [Int] = [1_682, 100_000]
    @Option(parsing: .unconditional, help: "Examples per step.") var batch: Int = 256
    @Option(parsing: .unconditional, help: "History items per example.") var history: Int = 20
    @Option(parsing: .unconditional, help: "Steps per timed run.") var steps: Int = 20
    @Option(parsing: .unconditional, help: "Timed runs (the median is reported).") var runs: Int = 7
    @Option(parsing: .unconditional, help: "Embedding width.") var dimension: Int = 64
    @Option(parsing: .unconditional, help: "Item content features.") var itemFeatures: Int = 31
    @Option(parsing: .unconditional, help: "User features.") var userFeatures: Int = 30
    @Option(parsing: .unconditional, help: "Sampled negatives per step (catalogues above 20,000 items).") var negatives:
        Int = 2_048
    @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 1
    @Option(
        help: ArgumentHelp(
            "With --known: how batches hold the histories: per-example (one bag per example) or leave-one-out (one group per user).",
            valueName: "mode"))
    var historyMode: HistoryMode = .leaveOneOut
    @Option(
        parsing: .unconditional,
        help:
            "Leave-one-out batches: users with this many known items, each example's history all the user's others (replaces --history)."
    )
    var known: Int?
    @Option(parsing: .unconditional, help: "Leave-one-out batches: examples per user in a batch.") var perUser: Int = 3

    enum HistoryMode: String, ExpressibleByArgument {
        case perExample = "per-example"
        case leaveOneOut = "leave-one-out"
    }

    func validate() throws {
        guard known != nil || items.allSatisfy({ $0 > history }) else {
            throw ValidationError("--items must exceed --history")
        }
        guard batch > 0, history >= 0, steps > 0, runs > 0, dimension > 0, negatives > 0 else {
            throw ValidationError("--batch, --steps, --runs, --dimension, --negatives must be positive")
        }
        guard itemFeatures >= 0, userFeatures >= 0 else { throw ValidationError("feature counts must be non-negative") }
        if let known {
            guard known > 0, perUser > 0, perUser <= known else {
                throw ValidationError("--known must be positive and --per-user between 1 and --known")
            }
        }
    }

    func run() async throws {
        BLAS.setThreadCount(1)
        let shape =
            known.map { "\(historyMode.rawValue) histories of \($0 - 1) (\(perUser) examples per user)" }
            ?? "history \(history)"
        print(
            "fedrec bench train-step: batch \(batch), d \(dimension), \(shape), \(itemFeatures) item / \(userFeatures) user features, 1 BLAS thread, median of \(runs) runs x \(steps) steps"
        )
        for itemCount in items { measure(itemCount: itemCount) }
    }

    func measure(itemCount: Int) {
        var rng = SplitMix64(seed: seed)
        let configuration = TwoTowerConfiguration(
            dimension: dimension, itemCount: itemCount, itemFeatureCount: itemFeatures, userFeatureCount: userFeatures,
            maxHistory: known == nil ? history : nil, sampledNegatives: negatives)
        // Items: 2 genre-like features each; users: 3 one-hot-like features (ml-100k-like sparsity).
        let itemMatrix = SparseMatrix(
            columns: itemFeatures,
            rows: (0..<itemCount).map { _ in
                itemFeatures == 0 ? [] : (0..<2).map { _ in (Int(rng.next() % UInt64(itemFeatures)), Float(1)) }
            })
        let userCount = 1_000
        let userMatrix = SparseMatrix(
            columns: userFeatures,
            rows: (0..<userCount).map { _ in
                userFeatures == 0 ? [] : (0..<3).map { _ in (Int(rng.next() % UInt64(userFeatures)), Float(1)) }
            })
        // Popularity-skewed synthetic items (squared uniform) so unigram sampling has something to model.
        func item() -> Int32 {
            let u = rng.nextUnitFloat()
            return Int32(min(Int(u * u * Float(itemCount)), itemCount - 1))
        }
        let batches: [TrainingBatch] = (0..<8).map { _ in
            guard let known else {
                var b = TrainingBatch()
                for _ in 0..<batch {
                    let known = (0...history).map { _ in item() }
                    b.append(
                        known: known, position: history, userRow: Int(rng.next() % UInt64(userCount)),
                        maxHistory: history)
                }
                return b
            }
            // Users with `known` items each; `perUser` of their items are targets, interleaved across users as in a
            // shuffled epoch. Both modes hold the same examples.
            var b = TrainingBatch(form: historyMode == .leaveOneOut ? .leaveOneOut : .bags)
            var users: [(known: [Int32], row: Int, group: Int)] = []
            while users.count * perUser < batch {
                let items = (0..<known).map { _ in item() }
                let row = Int(rng.next() % UInt64(userCount))
                users.append((items, row, historyMode == .leaveOneOut ? b.appendUser(known: items) : -1))
            }
            for e in 0..<batch {
                let user = users[e % users.count]
                let position = (e / users.count * 7919) % known  // distinct positions per user while perUser <= known
                if historyMode == .leaveOneOut {
                    b.appendExample(group: user.group, position: position, userRow: user.row)
                } else {
                    b.append(known: user.known, position: position, userRow: user.row, maxHistory: nil)
                }
            }
            return b
        }
        var frequencies = [Int](repeating: 0, count: itemCount)
        for b in batches { for t in b.targets { frequencies[Int(t)] += 1 } }
        let sampler =
            configuration.usesSampledSoftmax
            ? NegativeSampler(
                proposal: configuration.negativeProposal, itemFrequencies: frequencies, sampleCount: negatives) : nil
        var trainer = Trainer(
            model: TwoTowerModel(configuration: configuration, seed: seed), optimizer: .adam(learningRate: 0.005),
            seed: seed, negativeSampler: sampler)
        var step = 0
        func runSteps(_ count: Int) -> (seconds: Double, timing: StepTiming, loss: Float) {
            var timing = StepTiming()
            var loss: Float = 0
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<count {
                let result = trainer.step(
                    batch: batches[step % batches.count], itemFeatures: itemMatrix, userFeatures: userMatrix)
                step += 1
                timing.forward += result.timing.forward
                timing.backward += result.timing.backward
                timing.optimizer += result.timing.optimizer
                loss = result.loss
            }
            return ((clock.now - start).seconds, timing, loss)
        }
        _ = runSteps(max(3, steps / 4))  // warm-up: workspaces reach their steady size
        var results = (0..<runs).map { _ in runSteps(steps) }
        results.sort { $0.seconds < $1.seconds }
        let median = results[results.count / 2]
        let perStep = median.seconds / Double(steps)
        let rate = Double(batch * steps) / median.seconds
        func ms(_ s: Double) -> String { formatted(s / Double(steps) * 1e3, digits: 3) }
        let mode = configuration.usesSampledSoftmax ? "sampled softmax, \(negatives) negatives, log-Q" : "full softmax"
        print(
            "items \(itemCount) (\(mode)): \(formatted(rate, digits: 0)) examples/s, \(formatted(perStep * 1e3, digits: 3)) ms/step "
                + "[forward \(ms(median.timing.forward)) ms, backward \(ms(median.timing.backward)) ms, optimizer \(ms(median.timing.optimizer)) ms], last loss \(formatted(Double(median.loss), digits: 3))"
        )
    }

    private func formatted(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        return digits == 0 ? String(Int(rounded)) : String(rounded)
    }
}
