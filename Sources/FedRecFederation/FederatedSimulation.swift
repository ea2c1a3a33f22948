public import FedRecData
public import FedRecModel
import FedRecSecurity
public import FedRecTensor

/// What a federated run trains on: one virtual client per user.
public struct FederatedDataset: Sendable {
    /// Each user's known items (what its client holds) in the fold trained on.
    public var users: [FoldUser]
    /// Item features as the model sees them (the coordinator's, never sent to clients).
    public var itemFeatures: SparseMatrix
    /// User features (row = user index) as the model sees them; nil when the model takes none.
    public var userFeatures: SparseMatrix?

    public init(users: [FoldUser], itemFeatures: SparseMatrix, userFeatures: SparseMatrix?) {
        self.users = users
        self.itemFeatures = itemFeatures
        self.userFeatures = userFeatures
    }

    /// The users of `fold` of `dataset`, with the features `configuration` uses.
    public init(dataset: Dataset, fold: Fold, configuration: TwoTowerConfiguration) {
        self.init(
            users: dataset.split.fold(fold).filter { !$0.known.isEmpty },
            itemFeatures: configuration.itemFeatureCount == 0
                ? .empty(rows: dataset.itemIDs.count) : dataset.itemFeatures,
            userFeatures: configuration.userFeatureCount == 0 ? nil : dataset.userFeatures)
    }
}

/// Settings of a simulated federated run.
public struct FederatedSimulationConfiguration: Sendable {
    public var model: TwoTowerConfiguration
    public var client: ClientTrainingConfiguration
    public var server: ServerOptimizerConfiguration
    /// Optimizer of the central item-tower step.
    public var itemOptimizer: OptimizerConfiguration
    public var cohort: CohortSelection
    /// Fewest updates that make a round (a simulated round always gets its whole cohort).
    public var minimumClients: Int
    /// Evaluate every this many rounds (and after the last); 0: never.
    public var evaluationInterval: Int
    /// Bounds checked on every update (nil: none).
    public var maximumDeltaNorm: Double?
    public var seed: UInt64
    /// DP-FedAvg (nil: off): clients clip to its clip norm, updates are weighted uniformly, the sum gets Gaussian
    /// noise from libsodium and is divided by q N; `SimulatedRound.epsilon` reports the ledger. The cohort is then
    /// Poisson at the configuration's sampling rate q (`cohort` is ignored). With `adaptiveClipping` the clip norm
    /// starts at `clipNorm` and follows Andrew et al.'s geometric update (`AdaptiveClippingState`): each client
    /// also reports whether its update was under the round's clip norm, and the noised count moves the norm
    /// towards the target quantile of the update norms.
    public var privacy: DifferentialPrivacyConfiguration? = nil
    /// Multiplier of the server and item learning rates per round.
    public var learningRateSchedule: LearningRateSchedule = .constant
    /// Decay of an exponential moving average of the global model (nil: none). When set, evaluation and
    /// `FederatedSimulationResult.model` use the average.
    public var averageDecay: Float? = nil
    /// Warm-up of the average's decay rule (see `ModelAverage`).
    public var averageWarmup: Float = ModelAverage.standardWarmup
    /// Emulates the processes' wire precision: clients train from the global model rounded to it, and their
    /// updates are rounded to it before aggregation (exactly what `fedrec coordinator --wire-precision` does).
    public var wirePrecision: WirePrecision = .float32

    public init(
        model: TwoTowerConfiguration, client: ClientTrainingConfiguration = .init(),
        server: ServerOptimizerConfiguration = .fedAvg,
        itemOptimizer: OptimizerConfiguration = .adam(learningRate: 0.005),
        cohort: CohortSelection = .count(32), minimumClients: Int = 1, evaluationInterval: Int = 10,
        maximumDeltaNorm: Double? = nil, seed: UInt64 = 1
    ) {
        self.model = model
        self.client = client
        self.server = server
        self.itemOptimizer = itemOptimizer
        self.cohort = cohort
        self.minimumClients = minimumClients
        self.evaluationInterval = evaluationInterval
        self.maximumDeltaNorm = maximumDeltaNorm
        self.seed = seed
    }
}

/// Figures of one simulated round.
public struct SimulatedRound: Sendable, Equatable {
    public var round: Int
    public var participants: Int
    public var examples: Int
    /// Example-weighted mean local loss of the participants.
    public var meanLoss: Double
    /// The caller's metric (validation Recall@20) when evaluated this round.
    public var evaluation: Double?
    /// Updates refused by validation (logged, excluded).
    public var rejected: [FederationError]
    public var seconds: Double
    /// Differential privacy: epsilon spent after this round (at the configuration's delta).
    public var epsilon: Double? = nil
    /// Adaptive clipping: the clip norm this round's clients clipped to (the next round's comes from their
    /// noised count of unclipped updates).
    public var clipNorm: Double? = nil
}

/// The outcome of `FederatedSimulation.run`.
public struct FederatedSimulationResult: Sendable {
    public var server: FederatedServer
    public var rounds: [SimulatedRound]
    /// The moving average of the global model, when the configuration asked for one.
    public var average: ModelAverage?
    /// The model to evaluate and save: the average when there is one, else the server's.
    public var model: TwoTowerModel { average?.model ?? server.model }
}

/// In-process, single-threaded federated training for experiments: per round, sample a cohort of users (one
/// virtual client each), train each locally, aggregate through the same `RoundStateMachine` the coordinator
/// uses, apply the server optimizer and the central item step. Deterministic under `configuration.seed`
/// (given a deterministic `evaluate`).
public enum FederatedSimulation {
    /// Runs `rounds` rounds from `initialModel` (nil: `TwoTowerModel(configuration:seed:)`). `evaluate` scores the
    /// current model (e.g. validation Recall@20); `progress` sees every round.
    public static func run(
        dataset: FederatedDataset, configuration: FederatedSimulationConfiguration, rounds: Int,
        initialModel: TwoTowerModel? = nil, evaluate: ((TwoTowerModel) -> Double)? = nil,
        progress: (SimulatedRound) -> Void = { _ in }
    ) -> FederatedSimulationResult {
        precondition(rounds >= 0, "rounds must be non-negative")
        precondition(!dataset.users.isEmpty, "no users to federate")
        let model = initialModel ?? TwoTowerModel(configuration: configuration.model, seed: configuration.seed)
        precondition(model.configuration == configuration.model, "initial model has another configuration")
        var server = FederatedServer(
            model: model, itemFeatures: dataset.itemFeatures, serverOptimizer: configuration.server,
            itemOptimizer: configuration.itemOptimizer)
        // Under DP the cohort is Poisson at the rate the ledger charges, whatever `cohort` says.
        let sampler = ClientSampler(
            selection: configuration.privacy.map { .poisson(rate: $0.samplingRate) } ?? configuration.cohort,
            seed: configuration.seed &+ 0x5EED)
        let validator = UpdateValidator(
            layout: server.layout, itemRows: configuration.model.itemCount, dimension: configuration.model.dimension,
            maximumDeltaNorm: configuration.maximumDeltaNorm)
        var machine = RoundStateMachine<SimulatedInstant>(
            configuration: .init(
                minimumClients: configuration.minimumClients, roundTimeout: .seconds(3600), maximumAttempts: 100,
                validator: validator, weighting: configuration.privacy == nil ? .examples : .uniform,
                closesEveryAttempt: configuration.privacy != nil))
        var clientConfiguration = configuration.client
        var clipping = configuration.privacy.flatMap(AdaptiveClippingState.init(configuration:))
        if let privacy = configuration.privacy { clientConfiguration.clipNorm = Float(privacy.clipNorm) }
        var trainer = ClientTrainer(configuration: clientConfiguration)
        var ledger = configuration.privacy.map { PrivacyLedger(configuration: $0) }
        // Noise on the count of unclipped clients: libsodium randomness, like the update noise. `try!` is safe:
        // SecureNoiseSource fails only if libsodium cannot initialise.
        var countNoise = clipping.map { _ in GaussianSampler(source: try! SecureNoiseSource()) }
        // Under DP cohorts come from libsodium too (see `ClientSampler.sample(populationSize:using:)`).
        var cohortRandomness = configuration.privacy.map { _ in try! SecureRandomGenerator() }
        configuration.learningRateSchedule.validate()
        var average = configuration.averageDecay.map {
            ModelAverage(model: model, decay: $0, warmup: configuration.averageWarmup)
        }
        let ids = dataset.users.map { ClientID($0.userIndex) }
        var userOfID: [ClientID: Int] = [:]
        for (i, id) in ids.enumerated() { userOfID[id] = i }
        var reports: [SimulatedRound] = []
        let clock = ContinuousClock()

        var completed = 0
        while completed < rounds {
            let started = clock.now
            let round = machine.currentRound!
            let attempt = machine.currentAttempt!
            let cohort = sampler.cohort(round: round, attempt: attempt, from: ids, randomness: &cohortRandomness)
            var rejected: [FederationError] = []
            var result: RoundStateMachine<SimulatedInstant>.RoundResult?
            // Clients clip to the round's norm and report whether they had to (the trainer does both).
            let roundClipNorm = clipping?.clipNorm
            if let roundClipNorm { trainer.configuration.clipNorm = Float(roundClipNorm) }
            var action = machine.openRound(cohort: cohort, now: SimulatedInstant())
            if case .startRound = action {
                let precision = configuration.wirePrecision
                let sentTower =
                    precision == .float32
                    ? server.userTower
                    : UserTower(
                        configuration: server.userTower.configuration,
                        flattened: precision.rounded(server.userTower.flattened()))
                var sentItems = server.itemEmbeddings
                precision.round(&sentItems.storage)
                for id in cohort {
                    let user = dataset.users[userOfID[id]!]
                    let seed = SplitMix64.stream(
                        seed: configuration.seed, index: UInt64(round) << 32 | UInt64(user.userIndex)
                    ).state
                    var update = trainer.train(
                        globalUserTower: sentTower, itemEmbeddings: sentItems, user: user,
                        userFeatures: dataset.userFeatures, seed: seed
                    ).rounded(to: precision)
                    // Rounding to bfloat16 can lift a clipped norm by up to 2^-8: clipped again under DP, as the
                    // coordinator does with every update it receives, so the sensitivity stays the clip norm.
                    if configuration.privacy != nil, let bound = trainer.configuration.clipNorm {
                        update.clip(toNorm: bound)
                    }
                    action = machine.receiveUpdate(update, from: id, round: round)
                }
            }
            switch action {
            case .closeRound(let r):
                result = r
                rejected += r.rejections.recent
            case .retryRound(_, _, let reason, let rejections): rejected += rejections.recent + [reason]
            case .fail(let error): preconditionFailure("simulation failed: \(error)")
            default: preconditionFailure("round \(round) did not close after every member answered")
            }
            // Retried with another cohort (e.g. an empty draw); never under DP, where every attempt closes.
            guard let result else { continue }
            var aggregate = result.aggregate
            if let privacy = configuration.privacy {
                // libsodium noise; `try!` is safe: SecureNoiseSource only fails if libsodium cannot initialise,
                // which the process would already have hit.
                let aggregation = PrivateAggregation(configuration: privacy, population: dataset.users.count)
                aggregate = try! aggregation.privatize(aggregate, clipNorm: roundClipNorm)
                ledger?.record(steps: 1)
                // The aggregated clients' bits, summed (through secure aggregation in a deployment), noised and
                // turned into the next round's clip norm.
                clipping?.update(
                    unclippedCount: result.aggregate.unclippedCount ?? 0,
                    participants: result.aggregate.participants.count, expectedClients: aggregation.expectedClients,
                    sampler: &countNoise!)
            }
            server.apply(aggregate, learningRateScale: configuration.learningRateSchedule.multiplier(round: completed))
            average?.update(with: server.model)
            completed += 1
            var evaluation: Double? = nil
            if let evaluate, configuration.evaluationInterval > 0,
                completed % configuration.evaluationInterval == 0 || completed == rounds
            {
                evaluation = evaluate(average?.model ?? server.model)
            }
            let report = SimulatedRound(
                round: round, participants: result.aggregate.participants.count,
                examples: result.aggregate.exampleCount,
                meanLoss: result.aggregate.meanLoss, evaluation: evaluation, rejected: rejected,
                seconds: Double((clock.now - started) / .milliseconds(1)) / 1000, epsilon: ledger?.epsilon,
                clipNorm: roundClipNorm)
            reports.append(report)
            progress(report)
        }
        return FederatedSimulationResult(server: server, rounds: reports, average: average)
    }
}

/// A clock-free instant for simulations and tests of the round machine: a duration since an arbitrary origin.
public struct SimulatedInstant: InstantProtocol, Sendable {
    public var offset: Duration
    public init(offset: Duration = .zero) { self.offset = offset }
    public func advanced(by duration: Duration) -> SimulatedInstant { SimulatedInstant(offset: offset + duration) }
    public func duration(to other: SimulatedInstant) -> Duration { other.offset - offset }
    public static func < (lhs: SimulatedInstant, rhs: SimulatedInstant) -> Bool { lhs.offset < rhs.offset }
}
