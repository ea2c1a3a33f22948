import FedRecData
import FedRecEvaluation
import FedRecFederation
import FedRecModel
public import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
public import GRPCCore
public import Logging

/// What identifies a run's state folder.
private struct RunFingerprint: Encodable {
    var dataset: String, model: String, fold: String, seed: UInt64, cohort: CohortSelection
    var server: ServerOptimizerConfiguration, training: String
    var privacy: DifferentialPrivacyConfiguration?, secureAggregation: SecureAggregationOptions?
    /// Nil for the defaults (constant schedule, no average), so earlier runs keep their fingerprint.
    var schedule: LearningRateSchedule?, averageDecay: Float?, averageWarmup: Float?
    /// Nil for float32, so earlier runs keep their fingerprint.
    var wirePrecision: WirePrecision? = nil
    /// The central item tower's optimizer, whose moments the state carries; nil for the default (Adam, lr
    /// 0.005), so earlier runs keep their fingerprint.
    var itemOptimizer: OptimizerConfiguration? = nil
}

/// Builds a `Coordinator` from options: loads the data set, keys, allow-list and any saved state. The CLI and
/// the tests call this same builder.
public enum CoordinatorBuilder {
    public static let identityName = "coordinator"

    public static func build<Transport: ServerTransport>(
        options: CoordinatorOptions, transport: Transport, clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "fedrec.coordinator"),
        onListening: (@Sendable () async throws -> Void)? = nil,
        onRound: (@Sendable (RoundRecord) -> Void)? = nil,
        wallClock: @escaping @Sendable () -> UInt64 = PollStamper.wallMicroseconds
    ) throws -> Coordinator<Transport> {
        func setup(_ message: String) -> CoordinatorError { CoordinatorError(code: .setup, message: message) }
        let dataset: Dataset
        do { dataset = try Dataset.load(from: options.datasetPath) } catch { throw setup("\(error)") }
        let identity: Identity
        let allowList: AllowList
        do {
            identity = try KeyFiles.loadIdentity(path: options.keysDirectory + "/\(identityName).key")
            allowList = try KeyFiles.loadAllowList(path: options.allowListPath)
        } catch { throw setup("\(error)") }
        // Nobody could enrol, or never enough to aggregate: the coordinator would wait forever.
        guard !allowList.entries.isEmpty else {
            throw setup("the allow-list \(options.allowListPath) lists no client")
        }
        guard options.minimumClients <= allowList.entries.count else {
            throw setup(
                "--min-clients \(options.minimumClients) exceeds the \(allowList.entries.count) client(s) of the "
                    + "allow-list \(options.allowListPath)")
        }
        // Before any check that may refuse the start: a checkpoint cut short before its commit holds a model no
        // accountant step charged, which must not stay readable.
        var store = StateStore(directory: options.stateDirectory)
        try store.claim()
        let saved = try store.load()
        try store.discardUncommitted(saved)

        var central = CentralTrainingConfiguration()
        central.dimension = options.dimension
        central.hiddenWidth = options.hiddenWidth
        central.tau = options.tau
        central.maxHistory = options.maxHistory
        central.useUserFeatures = options.useUserFeatures
        central.useItemFeatures = options.useItemFeatures
        let configuration = central.modelConfiguration(for: dataset)
        guard !configuration.usesSampledSoftmax else {
            throw setup(
                "\(configuration.itemCount) items: federated clients train with full softmax (at most \(configuration.sampledSoftmaxThreshold))"
            )
        }
        let itemFeatures = CentralTraining.itemFeatures(of: dataset, for: configuration)
        let layout = ParameterLayout.userTower(configuration)
        let shapes = PayloadShapes(
            userTowerCount: layout.count, itemRows: configuration.itemCount, dimension: configuration.dimension)

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let configurationJSON = String(decoding: try encoder.encode(configuration), as: UTF8.self)
        var training = options.clientTraining
        if let privacy = options.privacy {
            do { try privacy.validate() } catch let error as PrivacyError where error.field == "targetEpsilon" {
                throw CoordinatorError(code: .privacyBudget, message: "refusing to start: \(error)")
            } catch { throw setup("\(error)") }
            guard case .poisson(let rate) = options.cohort, rate == privacy.samplingRate else {
                throw setup(
                    "differential privacy needs a Poisson-sampled cohort at the accountant's sampling rate q = "
                        + "\(privacy.samplingRate) (cohort: \(options.cohort))")
            }
            guard options.minimumClients == 1 else {
                throw setup(
                    "--min-clients \(options.minimumClients): under differential privacy every round closes with the "
                        + "updates that arrived (drawing a cohort again until enough answer would raise each client's "
                        + "chance of being in a released round above q = \(privacy.samplingRate)); leave it at 1")
            }
            training.clipNorm = Float(privacy.clipNorm)
        }
        let trainingJSON = String(decoding: try encoder.encode(training), as: UTF8.self)
        let fingerprint = try SHA256.hex(
            SHA256.hash(
                Array(
                    encoder.encode(
                        RunFingerprint(
                            dataset: dataset.checksum, model: configurationJSON, fold: options.fold.rawValue,
                            seed: options.seed, cohort: options.cohort, server: options.serverOptimizer,
                            training: trainingJSON, privacy: options.privacy,
                            secureAggregation: options.secureAggregation,
                            schedule: options.learningRateSchedule == .constant ? nil : options.learningRateSchedule,
                            averageDecay: options.averageDecay,
                            averageWarmup: options.averageDecay == nil
                                || options.averageWarmup == ModelAverage.standardWarmup
                                ? nil : options.averageWarmup,
                            wirePrecision: options.wirePrecision == .float32 ? nil : options.wirePrecision,
                            itemOptimizer: options.itemOptimizer == CoordinatorOptions.defaultItemOptimizer
                                ? nil : options.itemOptimizer)))))

        var core = CoreState(
            machine: RoundStateMachine(
                configuration: .init(
                    minimumClients: options.minimumClients, roundTimeout: options.deadline,
                    maximumAttempts: options.maximumAttempts,
                    validator: UpdateValidator(
                        layout: layout, itemRows: configuration.itemCount, dimension: configuration.dimension,
                        maximumDeltaNorm: options.maximumDeltaNorm),
                    weighting: options.privacy == nil ? .examples : .uniform,
                    closesEveryAttempt: options.privacy != nil),
                firstRound: saved?.nextRound ?? 0),
            completedRounds: saved?.completedRounds ?? 0, records: saved?.rounds ?? [],
            ledger: saved?.privacy ?? options.privacy.map { PrivacyLedger(configuration: $0) },
            clipping: saved?.adaptiveClipping ?? options.privacy.flatMap(AdaptiveClippingState.init(configuration:)))
        if let ledger = core.ledger {
            let remaining = max(0, options.rounds - core.completedRounds)
            do { try ledger.checkCanRun(additionalSteps: remaining) } catch {
                let fits = ledger.remainingSteps.map { "at most \($0) more round(s) fit the budget" } ?? ""
                throw CoordinatorError(
                    code: .privacyBudget,
                    message:
                        "refusing to start: \(error); \(fits) (q \(ledger.samplingRate), z \(ledger.noiseMultiplier))")
            }
        }
        let model: CoordinatorModel
        if let saved {
            guard saved.runFingerprint == fingerprint else {
                throw CoordinatorError(
                    code: .state,
                    message: "\(store.statePath) belongs to another run (data set, model, fold, seed, cohort, "
                        + "optimizers or training settings differ): use another --state folder")
            }
            var file: ModelFile
            do { file = try ModelFile.read(from: options.stateDirectory + "/" + saved.modelFile) } catch {
                throw CoordinatorError(code: .state, message: "\(error)")
            }
            // A DP run's model file lists its items in id order; the run indexes them in the data set's order.
            guard let aligned = SavedModel.aligned(file, to: dataset) else {
                throw CoordinatorError(
                    code: .state,
                    message: "\(saved.modelFile) does not hold the data set's catalogue: use another --state folder")
            }
            file = aligned
            let checkpointPath = options.stateDirectory + "/" + saved.optimizerFile
            let optimizers = try OptimizerCheckpoint.read(
                from: checkpointPath, server: saved.serverOptimizer,
                item: options.itemOptimizer, userTowerCount: layout.count,
                itemParameterCounts: Dictionary(
                    file.model.itemTower.namedParameters.map { ($0.name, $0.value.count) },
                    uniquingKeysWith: { first, _ in first }))
            if let decay = options.averageDecay {
                // The model file holds the average (the served model); the raw weights are in the checkpoint.
                let served = file.model.namedParameters
                guard let training = optimizers.training,
                    Set(training.parameters.keys) == Set(served.map(\.name)),
                    served.allSatisfy({ training.parameters[$0.name]!.count == $0.value.count })
                else {
                    throw CoordinatorError(
                        code: .state,
                        message: "\(checkpointPath): the raw model weights of the averaged run are missing "
                            + "or of the wrong shape")
                }
                model = CoordinatorModel(
                    model: TwoTowerModel(
                        configuration: configuration,
                        parameters: Dictionary(
                            uniqueKeysWithValues: served.map {
                                (
                                    $0.name,
                                    Matrix(
                                        rows: $0.value.rows, columns: $0.value.columns,
                                        storage: training.parameters[$0.name]!)
                                )
                            })),
                    itemFeatures: itemFeatures, serverOptimizer: optimizers.server, itemOptimizer: optimizers.item,
                    average: ModelAverage(
                        configuration: configuration,
                        parameters: Dictionary(uniqueKeysWithValues: served.map { ($0.name, $0.value) }),
                        decay: decay, warmup: options.averageWarmup, updates: training.averageUpdates))
            } else {
                model = CoordinatorModel(
                    model: file.model, itemFeatures: itemFeatures, serverOptimizer: optimizers.server,
                    itemOptimizer: optimizers.item)
            }
            core.replayGuard = saved.replayGuard
            for line in saved.enrolled {
                guard let claimed = try? PublicIdentity(line: line), allowList[claimed.name] == claimed else {
                    continue
                }
                if let keys = try? identity.keyAgreement.serverSessionKeys(clientPublicKey: claimed.keyAgreementKey) {
                    core.sessions[claimed.name] = Session(identity: claimed, keys: keys)
                }
            }
            logger.info(
                "resuming after round \(saved.completedRounds) with \(core.sessions.count) enrolled client(s)",
                metadata: ["state": "\(store.statePath)"])
        } else {
            // Under DP an item's starting rows follow its id, not its index (the order the interactions met it).
            let initial =
                options.privacy == nil
                ? TwoTowerModel(configuration: configuration, seed: options.seed)
                : TwoTowerModel(configuration: configuration, seed: options.seed, idOrder: dataset.itemIndicesInIDOrder)
            model = CoordinatorModel(
                model: initial, itemFeatures: itemFeatures,
                serverOptimizer: ServerOptimizer(configuration: options.serverOptimizer),
                itemOptimizer: Optimizer(configuration: options.itemOptimizer),
                average: options.averageDecay.map {
                    ModelAverage(model: initial, decay: $0, warmup: options.averageWarmup)
                })
        }
        let coordinatorCore = try CoordinatorCore(
            identity: identity, allowList: allowList, shapes: shapes, logger: logger, clock: ElapsedClock(clock),
            modelConfigurationJSON: configurationJSON, trainingConfiguration: training,
            foldName: options.fold.rawValue, chunkSize: options.chunkSize, initial: core, privacy: options.privacy,
            secureAggregation: options.secureAggregation.map { secure in
                var secure = secure
                if secure.maximumWeight == nil {
                    let largest = dataset.split.fold(options.fold).map(\.known.count).max() ?? 1
                    secure.maximumWeight = Float(max(largest, 1))
                }
                return secure
            }, wallClock: wallClock)
        let longestDeadline = max(options.deadline, options.secureAggregation?.stageDeadline ?? .zero)
        let service = CoordinatorService(core: coordinatorCore, callTimeLimit: longestDeadline + .seconds(1))
        let server = GRPCServer(transport: transport, services: [service])
        return Coordinator(
            core: coordinatorCore, server: server, options: options, dataset: dataset, initialModel: model,
            store: store, runFingerprint: fingerprint, hasState: saved != nil, logger: logger,
            onListening: onListening, onRound: onRound)
    }
}
