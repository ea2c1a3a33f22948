import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecFederation
import FedRecModel
import FedRecTensor
import Foundation

/// In-process federated simulation (one virtual client per user, single thread) for experiments: the same
/// client trainer, round state machine, server optimizer and central item step as the real processes, without
/// transport or encryption, so settings can be chosen on the validation slice quickly.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Simulate federated training in one process (for choosing settings on validation).",
        discussion: """
            With --fold validation the clients hold train minus validation and Recall@20 is measured on the \
            validation slice every --eval-every rounds; with --fold test they hold the full training set and the \
            final model is evaluated on test (choose the round count on validation first).
            """
    )

    @Option(help: "Data-set folder.")
    var dataset: String

    @Option(help: "'validation' (tuning) or 'test' (final figures).")
    var fold: String = "validation"

    @Option(
        parsing: .unconditional,
        help: "Rounds to run (default 300; with --target-epsilon, as many as the budget allows).")
    var rounds: Int?

    @Option(parsing: .unconditional, help: "Users sampled per round.")
    var cohort: Int = 32

    @Option(parsing: .unconditional, help: "Local epochs per round (E).")
    var localEpochs: Int = 1

    @Option(
        parsing: .unconditional,
        help: "Local batch size (B); 0: the client's whole data in one batch (one step, FedSGD).")
    var localBatch: Int = 0

    @Option(parsing: .unconditional, help: "Local SGD learning rate.")
    var clientLR: Float = 1

    @Option(parsing: .unconditional, help: "FedProx proximal coefficient mu.")
    var proximalMu: Float = 0

    @Option(help: "Server optimizer: fedavg, fedadam, fedyogi or adam (bias-corrected).")
    var server: String = "fedadam"

    @Option(parsing: .unconditional, help: "Server learning rate.")
    var serverLR: Float = 0.005

    @Option(parsing: .unconditional, help: "Server beta1 (FedAdam/FedYogi).")
    var beta1: Float = 0.9

    @Option(parsing: .unconditional, help: "Server beta2 (FedAdam/FedYogi).")
    var beta2: Float = 0.999

    @Option(parsing: .unconditional, help: "Server adaptivity tau (FedAdam/FedYogi epsilon).")
    var serverTau: Float = 1e-8

    @Option(help: "Learning-rate schedule of the server and item steps: constant or cosine (decay over --rounds).")
    var schedule: String = "constant"

    @Option(parsing: .unconditional, help: "Cosine schedule: warm-up rounds.")
    var warmup: Int = 0

    @Option(parsing: .unconditional, help: "Cosine schedule: final multiplier of the learning rates.")
    var lrFloor: Float = 0.01

    @Option(
        parsing: .unconditional,
        help:
            "Evaluate and save a moving average of the global model (Polyak averaging across rounds) with this decay (0: the raw model)."
    )
    var average: Float = 0.99

    @Option(parsing: .unconditional, help: "Warm-up w of the average's decay min(decay, (1+t)/(w+t)) at round t (> 1).")
    var averageWarmup: Float = 2

    @Option(help: wirePrecisionHelp) var wirePrecision: WirePrecisionArgument = .f32

    @Option(parsing: .unconditional, help: "Learning rate of the central item-tower Adam step.")
    var itemLR: Float = 0.005

    @Option(parsing: .unconditional, help: "Softmax temperature tau.")
    var tau: Float = 0.1

    @Option(parsing: .unconditional, help: "Embedding width d.")
    var dimension: Int = 64

    @Option(parsing: .unconditional, help: "Evaluate every this many rounds.")
    var evalEvery: Int = 25

    @Flag(help: "Ignore the data set's user features.")
    var noUserFeatures = false

    @Option(parsing: .unconditional, help: "Seed.")
    var seed: UInt64 = 1

    @Option(help: "Write the final model here (safetensors).")
    var out: String?

    @Option(
        parsing: .unconditional,
        help: "Differential privacy: noise multiplier z (turns DP-FedAvg on; the cohort becomes Poisson).")
    var noiseMultiplier: Double?

    @Option(parsing: .unconditional, help: "Differential privacy: L2 clip norm S of each client's whole update.")
    var clipNorm: Double = 0.1

    @Option(parsing: .unconditional, help: "Differential privacy: delta (default 1 / virtual clients).")
    var delta: Double?

    @Option(
        name: .customLong("target-epsilon"), parsing: .unconditional,
        help:
            "Differential privacy: the privacy budget (epsilon at --delta). A run whose --rounds would exceed it is refused; without --rounds, the run has as many rounds as it allows."
    )
    var targetEpsilon: Double?

    @OptionGroup var clipping: AdaptiveClippingOptions

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard Fold(rawValue: fold) != nil else { throw ValidationError("--fold must be 'test' or 'validation'") }
        if let rounds, rounds <= 0 { throw ValidationError("--rounds must be positive, got \(rounds)") }
        if let out { try OutputPaths.checkModelFile(out) }
        try OptionChecks.dimension(dimension)
        guard cohort > 0 else { throw ValidationError("--cohort must be positive, got \(cohort)") }
        guard localEpochs > 0 else { throw ValidationError("--local-epochs must be positive, got \(localEpochs)") }
        guard localBatch >= 0 else { throw ValidationError("--local-batch must be >= 0, got \(localBatch)") }
        guard ["fedavg", "fedadam", "fedyogi", "adam"].contains(server) else {
            throw ValidationError("--server must be fedavg, fedadam, fedyogi or adam (bias-corrected), got '\(server)'")
        }
        for (name, value) in [
            ("--client-lr", clientLR), ("--server-lr", serverLR), ("--item-lr", itemLR), ("--tau", tau),
        ]
        where !(value > 0 && value.isFinite) {
            throw ValidationError("\(name) must be a positive number, got \(value)")
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw ValidationError("--beta1 and --beta2 must lie in [0, 1)")
        }
        guard serverTau > 0 else { throw ValidationError("--server-tau must be positive, got \(serverTau)") }
        if let noiseMultiplier { try OptionChecks.nonNegative(noiseMultiplier, "--noise-multiplier") }
        try OptionChecks.positive(clipNorm, "--clip-norm")
        try OptionChecks.nonNegative(Double(proximalMu), "--proximal-mu")
        if let delta, !(delta > 0 && delta < 1) { throw ValidationError("--delta must lie in (0, 1)") }
        if clipping.adaptiveClipping, noiseMultiplier == nil {
            throw ValidationError("--adaptive-clipping needs differential privacy (--noise-multiplier)")
        }
        if let targetEpsilon {
            guard noiseMultiplier != nil else {
                throw ValidationError("--target-epsilon needs differential privacy (--noise-multiplier)")
            }
            guard targetEpsilon > 0, targetEpsilon.isFinite else {
                throw ValidationError("--target-epsilon must be a positive number, got \(targetEpsilon)")
            }
        }
        guard ["constant", "cosine"].contains(schedule) else {
            throw ValidationError("--schedule must be constant or cosine, got '\(schedule)'")
        }
        guard warmup >= 0 else { throw ValidationError("--warmup must be >= 0, got \(warmup)") }
        guard lrFloor > 0, lrFloor <= 1 else { throw ValidationError("--lr-floor must lie in (0, 1]") }
        guard average >= 0, average < 1 else { throw ValidationError("--average must lie in [0, 1)") }
        guard evalEvery > 0 else { throw ValidationError("--eval-every must be positive, got \(evalEvery)") }
    }

    func run() async throws {
        runtime.apply()
        let data = try Dataset.load(from: dataset)
        let fold = Fold(rawValue: fold)!
        var central = CentralTrainingConfiguration()
        central.dimension = dimension
        central.tau = tau
        central.useUserFeatures = !noUserFeatures
        let modelConfiguration = central.modelConfiguration(for: data)
        let serverOptimizer: ServerOptimizerConfiguration =
            switch server {
            case "fedavg": .fedAvg(learningRate: serverLR)
            case "fedyogi": .fedYogi(learningRate: serverLR, beta1: beta1, beta2: beta2, tau: serverTau)
            case "adam": .adam(learningRate: serverLR, beta1: beta1, beta2: beta2, epsilon: serverTau)
            default: .fedAdam(learningRate: serverLR, beta1: beta1, beta2: beta2, tau: serverTau)
            }
        var configuration = FederatedSimulationConfiguration(
            model: modelConfiguration,
            client: ClientTrainingConfiguration(
                localEpochs: localEpochs,
                batchSize: localBatch == 0 ? ClientTrainingConfiguration.wholeClientBatch : localBatch,
                optimizer: .sgd(learningRate: clientLR), proximalMu: proximalMu),
            server: serverOptimizer, itemOptimizer: .adam(learningRate: itemLR), cohort: .count(cohort),
            evaluationInterval: evalEvery, seed: seed)
        if average > 0 { configuration.averageDecay = average }
        guard averageWarmup > 1 else { throw ValidationError("--average-warmup must exceed 1") }
        configuration.averageWarmup = averageWarmup
        configuration.wirePrecision = wirePrecision.precision
        let federated = FederatedDataset(dataset: data, fold: fold, configuration: modelConfiguration)
        /// `--rounds`; without it, 300 or, with `--target-epsilon`, as many as the budget allows.
        var roundsToRun = rounds ?? 300
        if let noiseMultiplier {
            let population = federated.users.count
            let q = min(1, Double(cohort) / Double(population))
            let privacy = try clipping.applied(
                to: DifferentialPrivacyConfiguration(
                    clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, samplingRate: q, numberOfUsers: population,
                    delta: delta),
                population: population)
            configuration.privacy = privacy
            configuration.cohort = .poisson(rate: q)
            printFlushed(
                "DP-FedAvg: \(AdaptiveClippingOptions.description(of: privacy)), noise multiplier \(noiseMultiplier), "
                    + "Poisson q \(q), delta \(privacy.delta)")
            if let targetEpsilon {
                var budgeted = privacy
                budgeted.targetEpsilon = targetEpsilon
                // Refuses a budget that a single round already exceeds.
                do { try budgeted.validate() } catch { throw ValidationError("--target-epsilon: \(error)") }
                // The rounds a fresh ledger allows, as the coordinator asks them (nil: unlimited).
                let allowed = PrivacyLedger(configuration: budgeted).remainingSteps
                let fits =
                    "epsilon \(targetEpsilon) at delta \(privacy.delta) allows "
                    + "\(allowed.map(String.init) ?? "unlimited") round(s)"
                if let rounds {
                    if let allowed, rounds > allowed {
                        throw ValidationError("refusing to start: \(rounds) rounds exceed the privacy budget: \(fits)")
                    }
                } else if let allowed {
                    roundsToRun = allowed
                }
                printFlushed("privacy budget: \(fits); running \(roundsToRun)")
            }
        }
        if schedule == "cosine" {
            guard warmup < roundsToRun else {
                throw ValidationError("--warmup must be below the \(roundsToRun) round(s) run, got \(warmup)")
            }
            configuration.learningRateSchedule = .cosine(rounds: roundsToRun, warmup: warmup, floor: lrFloor)
        }
        printFlushed(
            "simulating \(roundsToRun) rounds on \(data.manifest.sourceFormat.rawValue) (\(fold.rawValue) fold): "
                + "\(federated.users.count) virtual clients, cohort \(cohort), E=\(localEpochs), "
                + "B=\(localBatch == 0 ? "all" : String(localBatch)), server \(server) lr \(serverLR), schedule "
                + "\(schedule == "cosine" ? "cosine (warm-up \(warmup), floor \(lrFloor))" : "constant")"
                + (average > 0 ? ", average decay \(average)" : "")
                + (wirePrecision == .f32 ? "" : ", wire precision \(wirePrecision.rawValue)"))
        let started = ContinuousClock.now
        var lossSum = 0.0
        var lossRounds = 0
        // Under DP an item's starting rows follow its id, not its index (the order the interactions met it).
        let initialModel = configuration.privacy.map { _ in
            TwoTowerModel(
                configuration: configuration.model, seed: configuration.seed, idOrder: data.itemIndicesInIDOrder)
        }
        let result = FederatedSimulation.run(
            dataset: federated, configuration: configuration, rounds: roundsToRun, initialModel: initialModel,
            evaluate: { model in
                CentralTraining.evaluate(model: model, dataset: data, fold: fold, cutoffs: [20])
                    .value(.recall, at: 20) ?? 0
            },
            progress: { round in
                lossSum += round.meanLoss
                lossRounds += 1
                if let recall = round.evaluation {
                    let elapsed = (ContinuousClock.now - started) / .seconds(1)
                    printFlushed(
                        String(
                            format: "round %4d  loss %.4f  %@ R@20 %.4f  %.1f s%@", round.round,
                            lossSum / Double(lossRounds), fold.rawValue, recall, elapsed,
                            (round.epsilon.map { String(format: "  epsilon %.3f", $0) } ?? "")
                                + (round.clipNorm.map { String(format: "  clip norm %.4g", $0) } ?? "")))
                    lossSum = 0
                    lossRounds = 0
                }
            })
        if let out {
            let file = SavedModel.file(
                model: result.model, dataset: data,
                extraMetadata: [SavedModel.MetadataKey.evaluationFold: fold.rawValue],
                release: configuration.privacy == nil ? .full : .differentiallyPrivate)
            try file.write(to: out)
            printFlushed("wrote \(out)")
        }
    }
}
