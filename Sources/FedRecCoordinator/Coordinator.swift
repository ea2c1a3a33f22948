import FedRecData
import FedRecEvaluation
import FedRecFederation
import FedRecModel
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
public import GRPCCore
import Logging
public import ServiceLifecycle
import Synchronization

/// The coordinator process as a `Service`: serves the `Coordinator` gRPC service and drives the rounds.
/// `run()` owns every task (the server, the optional listening report, the round driver); a graceful shutdown
/// (SIGINT/SIGTERM through a `ServiceGroup`) stops the driver between polls and drains the server; once the rounds
/// are done, calls still open `drainLimit` after the server stopped taking new ones are cut. State is
/// saved after every completed round (written while the next round runs; the round is announced once it is
/// committed), so a stopped or killed coordinator resumes with the same command.
public final class Coordinator<Transport: ServerTransport>: Service {
    public let core: CoordinatorCore
    let server: GRPCServer<Transport>
    let options: CoordinatorOptions
    let dataset: Dataset
    let initialModel: CoordinatorModel
    let store: StateStore
    let runFingerprint: String
    /// What every checkpointed model file carries besides the model (built once per run).
    let catalogue: SavedModel.Catalogue
    let hasState: Bool
    let logger: Logger
    let onListening: (@Sendable () async throws -> Void)?
    /// Called after every completed round (progress display, tests).
    let onRound: (@Sendable (RoundRecord) -> Void)?
    /// The server task's error, if it failed: reported instead of the driver's "interrupted".
    private let serverFailure = Mutex<(any Error)?>(nil)
    /// Whether `serve()` has returned (all calls ended).
    private let serverStopped = Mutex(false)
    /// How long a coordinator that completed its rounds lets open calls end after it stops taking new ones;
    /// calls still open then are cut, so a peer holding a stream open cannot keep the process (and its signals)
    /// waiting. A signal during the wait cuts them at once.
    static var drainLimit: Duration { .seconds(5) }

    init(
        core: CoordinatorCore, server: GRPCServer<Transport>, options: CoordinatorOptions, dataset: Dataset,
        initialModel: CoordinatorModel, store: StateStore, runFingerprint: String, hasState: Bool, logger: Logger,
        onListening: (@Sendable () async throws -> Void)?, onRound: (@Sendable (RoundRecord) -> Void)?
    ) {
        self.core = core
        self.server = server
        self.options = options
        self.dataset = dataset
        self.initialModel = initialModel
        self.store = store
        self.runFingerprint = runFingerprint
        // Under DP the checkpointed model is the release the accountant's epsilon covers: nothing else of the
        // interactions goes into it.
        self.catalogue = SavedModel.Catalogue(
            dataset: dataset, configuration: initialModel.servedModel.configuration,
            release: options.privacy == nil ? .full : .differentiallyPrivate)
        self.hasState = hasState
        self.logger = logger
        self.onListening = onListening
        self.onRound = onRound
    }

    public func run() async throws {
        defer { store.releaseClaim() }  // the run is over: its state folder is free for the next coordinator
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    // A failing server (a port in use) stops the driver, whose error would otherwise win.
                    do { try await self.server.serve() } catch {
                        self.serverFailure.withLock { $0 = error }
                        self.core.requestStop()
                        throw error
                    }
                    self.serverStopped.withLock { $0 = true }
                    self.core.changes.notify()
                }
                if let onListening { group.addTask { try await onListening() } }
                do {
                    try await self.drive()
                } catch {
                    // Long polls answer at once instead of spinning through their wait under cancellation.
                    self.core.requestStop()
                    self.server.beginGracefulShutdown()
                    if let failure = self.serverFailure.withLock({ $0 }) { throw failure }
                    throw error
                }
                self.server.beginGracefulShutdown()
                if await !self.serverDrained(within: Self.drainLimit) {
                    self.logger.warning("calls still open after the last round: closing them")
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            self.logger.info("shutdown requested: stopping after saving state")
            self.core.requestStop()
        }
    }

    /// Waits until `serve()` has returned, for at most `limit` (no longer once a signal asks to stop).
    private func serverDrained(within limit: Duration) async -> Bool {
        let clock = core.clock
        let start = clock.now
        while true {
            let version = core.changes.version
            if serverStopped.withLock({ $0 }) { return true }
            if core.isStopping || Task.isCancelled || clock.now.offset - start.offset >= limit { return false }
            await core.changes.wait(after: version, timeout: .milliseconds(100), clock: clock)
        }
    }

    private var interrupted: CoordinatorError {
        // Nothing is saved before the first checkpoint commits (state.json).
        let saved = FileManager.default.fileExists(atPath: store.statePath)
        return CoordinatorError(
            code: .interrupted,
            message: "stopped after \(core.completedRounds) of \(options.rounds) round(s); "
                + (saved
                    ? "the state is saved in \(options.stateDirectory): run the same command to resume"
                    : "nothing was saved yet: the same command starts over"))
    }

    private func drive() async throws {
        let clock = core.clock
        try await waitForEnrolment()
        var model = initialModel
        let loopStart = clock.now
        if !hasState { try persist(model) }
        core.meter.beginMeasuring()
        let sampler = ClientSampler(selection: options.cohort, seed: options.seed &+ 0x5EED)
        // Under DP cohorts are drawn from libsodium, unpredictable to anyone (the accountant's amplification by
        // sampling assumes it); a restart draws the interrupted round's cohort afresh, which is safe because that
        // round's model was never served (see the checkpoint wait below).
        var cohortRandomness = try options.privacy.map { _ in try SecureRandomGenerator() }
        // A round's checkpoint is written while the next round runs: at most one is in flight (the next close
        // waits for it), a round is announced (log, `onRound`) only once its checkpoint is committed, and
        // leaving this scope for any reason waits for the last one, so a stopped coordinator has saved it.
        try await withThrowingTaskGroup(of: Void.self) { checkpoints in
            do {
                while core.completedRounds < options.rounds {
                    // Stopping: a signal, or the server task failed (it asks the core to stop).
                    guard !core.isStopping, !Task.isCancelled else { throw interrupted }
                    guard
                        let (round, attempt) = core.state.withLock({ s in
                            s.machine.currentRound.flatMap { r in s.machine.currentAttempt.map { (r, $0) } }
                        })
                    else { throw CoordinatorError(code: .roundFailed, message: "the round machine has failed") }
                    let cohort = sampler.cohort(
                        round: round, attempt: attempt, from: core.enrolledClients, randomness: &cohortRandomness)
                    let started = clock.now
                    let roundSeed = options.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(round)
                    var action: Machine.Action
                    if let secure = core.secureAggregation {  // the builder filled in the defaults
                        let current = model
                        action = core.openSecureRound(
                            cohort: cohort, seed: roundSeed &+ UInt64(attempt) &* 0x2545_F491_4F6C_DD1D,
                            model: { round in
                                GlobalModelPayload(
                                    round: round, userTower: current.userTower.flattened(),
                                    itemEmbeddings: current.itemEmbeddings, precision: options.wirePrecision)
                            }, options: secure, deadline: options.deadline,
                            weighting: options.privacy == nil ? .examples : .uniform)
                    } else {
                        let payload = GlobalModelPayload(
                            round: round, userTower: model.userTower.flattened(), itemEmbeddings: model.itemEmbeddings,
                            precision: options.wirePrecision)
                        action = core.openRound(cohort: cohort, model: payload, seed: roundSeed)
                    }
                    if case .startRound(_, _, let cohort, _) = action {
                        logger.info("round \(round) attempt \(attempt): cohort of \(cohort.count)")
                        while true {
                            let version = core.changes.version
                            if options.secureAggregation != nil {
                                if let step = core.secureStep() {
                                    action = core.finishSecure(step)
                                    break
                                }
                            } else if let next = core.poll() {
                                action = next
                                break
                            }
                            guard !core.isStopping, !Task.isCancelled else { throw interrupted }
                            // Woken by refusals, closes and completed stages; the timeout serves the deadlines.
                            await core.changes.wait(after: version, timeout: .milliseconds(20), clock: clock)
                        }
                    }
                    switch action {
                    case .closeRound(let result):
                        if let abandoned = result.abandoned {
                            let why =
                                "round \(round) attempt \(attempt) closed without contributions (under differential "
                                + "privacy a round is not retried; its release is the noise alone): \(abandoned.message)"
                            logger.warning("\(why)")
                        }
                        var aggregate = result.aggregate
                        var epsilon: Double? = nil
                        var clipNorm: Double? = nil
                        if let privacy = options.privacy {
                            let aggregation = PrivateAggregation(
                                configuration: privacy, population: max(core.enrolledClients.count, 1))
                            // The clip norm the round's clients clipped to (adaptive: it moves after this round).
                            clipNorm = core.state.withLock { $0.clipping?.clipNorm }
                            aggregate = try core.meter.measure(.aggregation) {
                                try aggregation.privatize(aggregate, clipNorm: clipNorm)
                            }
                            epsilon = core.state.withLock { s in
                                s.ledger?.record(steps: 1)
                                return s.ledger?.epsilon
                            }
                            try core.adaptClipNorm(
                                unclippedCount: result.aggregate.unclippedCount ?? 0,
                                participants: result.aggregate.participants.count,
                                expectedClients: aggregation.expectedClients)
                        }
                        let scale = options.learningRateSchedule.multiplier(round: core.completedRounds)
                        core.meter.measure(.aggregation) { model.apply(aggregate, learningRateScale: scale) }
                        let completed = core.completedRounds + 1
                        var recall: Double? = nil
                        if options.evaluationInterval > 0,
                            completed % options.evaluationInterval == 0 || completed == options.rounds
                        {
                            recall = core.meter.measure(.evaluation) {
                                CentralTraining.evaluate(
                                    model: model.servedModel, dataset: dataset, fold: options.fold, cutoffs: [20]
                                )
                                .value(.recall, at: 20)
                            }
                        }
                        let traffic = core.traffic()
                        let record = RoundRecord(
                            round: round, attempt: attempt, participants: result.aggregate.participants.count,
                            examples: result.aggregate.exampleCount, meanLoss: result.aggregate.meanLoss,
                            bytesReceived: traffic.received, bytesSent: traffic.sent,
                            seconds: Double((clock.now.offset - started.offset) / .milliseconds(1)) / 1000,
                            recallAt20: recall, rejected: result.rejections.total, stragglers: result.stragglers.count,
                            epsilon: epsilon, clipNorm: clipNorm,
                            finishedAt: Double((clock.now.offset - loopStart.offset) / .microseconds(1)) / 1e6)
                        try await checkpoints.next()
                        core.completed(record)
                        let checkpoint = Checkpoint(model: model, core: core)
                        let closed: Logger.Metadata = [
                            "participants": "\(record.participants)", "stragglers": "\(record.stragglers)",
                            "dropped": "\(result.droppedOut.count)", "excluded": "\(result.excluded.count)",
                            "loss": "\(record.meanLoss)", "recall@20": "\(recall.map { String($0) } ?? "-")",
                        ]
                        checkpoints.addTask {
                            try self.core.meter.measure(.persistence) { try self.persist(checkpoint) }
                            self.logger.info("round \(round) closed", metadata: closed)
                            self.onRound?(record)
                        }
                        // Under DP the next round serves this round's noised model: it opens only once the ledger
                        // step that pays for it is committed. Otherwise a coordinator killed in between would rerun
                        // the round with fresh noise after releasing it, and charge the two releases as one step.
                        if options.privacy != nil { try await checkpoints.next() }
                        core.meter.sampleMemory()
                    case .retryRound(let round, let attempt, let reason, _):
                        logger.warning("round \(round) retried (attempt \(attempt)): \(reason.message)")
                    case .fail(let error):
                        throw CoordinatorError(code: .roundFailed, message: error.description)
                    default:
                        break
                    }
                }
            } catch {
                // A checkpoint still being written when the loop stopped: its failure, not the reason the loop
                // stopped, is what the caller must hear (the state on disk is what a restart resumes from).
                try await checkpoints.waitForAll()
                throw error
            }
            try await checkpoints.waitForAll()
        }
        core.finish()
        logger.info("completed \(core.completedRounds) round(s)")
        // Let client processes learn that training is over before the server stops (at most `finishLinger`,
        // less once every enrolled client was told).
        let lingerStart = clock.now
        while !core.isStopping, !core.everyClientToldFinished,
            clock.now.offset - lingerStart.offset < options.finishLinger
        {
            try await clock.sleep(for: .milliseconds(20))
        }
    }

    private func waitForEnrolment() async throws {
        let clock = core.clock
        let target = max(options.minimumClients, options.waitForClients ?? core.allowList.entries.count)
        let start = clock.now
        var announced = false
        while true {
            let enrolled = core.enrolledClients.count
            if enrolled >= target { return }
            if enrolled >= options.minimumClients, clock.now.offset - start.offset >= options.enrolmentGrace { return }
            guard !core.isStopping else { throw interrupted }
            if !announced {
                logger.info("waiting for \(target) client(s) to enrol")
                announced = true
            }
            try await clock.sleep(for: .milliseconds(20))
        }
    }

    /// What one checkpoint writes, taken when its round closes (before the next round changes the core).
    struct Checkpoint: Sendable {
        var model: CoordinatorModel
        var enrolled: [String]
        var replayGuard: ReplayGuard
        var records: [RoundRecord]
        var completed: Int
        var next: Int
        var ledger: PrivacyLedger?
        var clipping: AdaptiveClippingState?

        init(model: CoordinatorModel, core: CoordinatorCore) {
            self.model = model
            (enrolled, replayGuard, records, completed, next) = core.snapshot()
            (ledger, clipping) = core.state.withLock { ($0.ledger, $0.clipping) }
        }
    }

    private func persist(_ model: CoordinatorModel) throws {
        try persist(Checkpoint(model: model, core: core))
    }

    /// Model file, then `state.json` (the commit point).
    private func persist(_ snapshot: Checkpoint) throws {
        let model = snapshot.model
        let name = StateStore.modelFileName(completedRounds: snapshot.completed)
        let optimizerName = OptimizerCheckpoint.fileName(completedRounds: snapshot.completed)
        do {
            try FileManager.default.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
            try SavedModel.file(
                model: model.servedModel, catalogue: catalogue,
                extraMetadata: [
                    SavedModel.MetadataKey.federatedRounds: "\(snapshot.completed)",
                    SavedModel.MetadataKey.evaluationFold: options.fold.rawValue,
                ]
            ).write(to: store.directory + "/" + name, recycling: store.spareModelPath)
            try OptimizerCheckpoint.write(
                server: model.serverOptimizer, item: model.itemOptimizer,
                training: model.average.map { (model.model, $0.updates) }, to: store.directory + "/" + optimizerName,
                recycling: store.spareOptimizerPath)
        } catch {
            throw CoordinatorError(code: .state, message: "cannot write a checkpoint in \(store.directory): \(error)")
        }
        try store.save(
            PersistedState(
                runFingerprint: runFingerprint, completedRounds: snapshot.completed, nextRound: snapshot.next,
                enrolled: snapshot.enrolled, replayGuard: snapshot.replayGuard,
                serverOptimizer: model.serverOptimizer.withoutMoments, modelFile: name, optimizerFile: optimizerName,
                rounds: snapshot.records, privacy: snapshot.ledger, adaptiveClipping: snapshot.clipping))
    }
}
