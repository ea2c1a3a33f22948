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

/// The coordinator process as a `Service`: serves the `Coordinator` gRPC service and drives the rounds.
/// `run()` owns every task (the server, the optional listening report, the round driver); a graceful shutdown
/// (SIGINT/SIGTERM through a `ServiceGroup`) stops the driver between polls and drains the server. State is
/// saved after every completed round, so a stopped or killed coordinator resumes with the same command.
public final class Coordinator<Transport: ServerTransport>: Service {
    public let core: CoordinatorCore
    let server: GRPCServer<Transport>
    let options: CoordinatorOptions
    let dataset: Dataset
    let initialModel: CoordinatorModel
    let store: StateStore
    let runFingerprint: String
    let hasState: Bool
    let logger: Logger
    let onListening: (@Sendable () async throws -> Void)?
    /// Called after every completed round (progress display, tests).
    let onRound: (@Sendable (RoundRecord) -> Void)?

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
        self.hasState = hasState
        self.logger = logger
        self.onListening = onListening
        self.onRound = onRound
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.server.serve() }
                if let onListening { group.addTask { try await onListening() } }
                do {
                    try await self.drive()
                } catch {
                    self.server.beginGracefulShutdown()
                    throw error
                }
                self.server.beginGracefulShutdown()
            }
        } onGracefulShutdown: {
            self.logger.info("shutdown requested: stopping after saving state")
            self.core.requestStop()
        }
    }

    private var interrupted: CoordinatorError {
        CoordinatorError(
            code: .interrupted,
            message: "stopped after \(core.completedRounds) of \(options.rounds) round(s); the state is saved in "
                + "\(options.stateDirectory): run the same command to resume")
    }

    private func drive() async throws {
        let clock = core.clock
        try await waitForEnrolment()
        var model = initialModel
        if !hasState { try persist(model) }
        let sampler = ClientSampler(selection: options.cohort, seed: options.seed &+ 0x5EED)
        while core.completedRounds < options.rounds {
            guard !core.isStopping else { throw interrupted }
            guard
                let (round, attempt) = core.state.withLock({ s in
                    s.machine.currentRound.flatMap { r in s.machine.currentAttempt.map { (r, $0) } }
                })
            else { throw CoordinatorError(code: .roundFailed, message: "the round machine has failed") }
            let cohort = sampler.cohort(round: round, attempt: attempt, from: core.enrolledClients)
            let payload = GlobalModelPayload(
                round: round, userTower: model.userTower.flattened(), itemEmbeddings: model.itemEmbeddings
            ).encoded()
            let started = clock.now
            let roundSeed = options.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(round)
            var action = core.openRound(cohort: cohort, payload: payload, seed: roundSeed)
            if case .startRound(_, _, let cohort, _) = action {
                logger.info("round \(round) attempt \(attempt): cohort of \(cohort.count)")
                while true {
                    if let next = core.poll() {
                        action = next
                        break
                    }
                    guard !core.isStopping else { throw interrupted }
                    try await clock.sleep(for: .milliseconds(10))
                }
            }
            switch action {
            case .closeRound(let result):
                model.apply(result.aggregate)
                let completed = core.completedRounds + 1
                var recall: Double? = nil
                if options.evaluationInterval > 0,
                    completed % options.evaluationInterval == 0 || completed == options.rounds
                {
                    recall = CentralTraining.evaluate(
                        model: model.model, dataset: dataset, fold: options.fold, cutoffs: [20]
                    )
                    .value(.recall, at: 20)
                }
                let traffic = core.traffic()
                let record = RoundRecord(
                    round: round, attempt: attempt, participants: result.aggregate.participants.count,
                    examples: result.aggregate.exampleCount, meanLoss: result.aggregate.meanLoss,
                    bytesReceived: traffic.received, bytesSent: traffic.sent,
                    seconds: Double((clock.now.offset - started.offset) / .milliseconds(1)) / 1000,
                    recallAt20: recall, rejected: result.rejections.count, stragglers: result.stragglers.count)
                core.completed(record)
                try persist(model)
                logger.info(
                    "round \(round) closed",
                    metadata: [
                        "participants": "\(record.participants)", "stragglers": "\(record.stragglers)",
                        "dropped": "\(result.droppedOut.count)", "excluded": "\(result.excluded.count)",
                        "loss": "\(record.meanLoss)", "recall@20": "\(recall.map { String($0) } ?? "-")",
                    ])
                onRound?(record)
            case .retryRound(let round, let attempt, let reason, _):
                logger.warning("round \(round) retried (attempt \(attempt)): \(reason.message)")
            case .fail(let error):
                throw CoordinatorError(code: .roundFailed, message: error.description)
            default:
                break
            }
        }
        core.finish()
        logger.info("completed \(core.completedRounds) round(s)")
        // Let client processes learn that training is over before the server stops.
        let lingerStart = clock.now
        while !core.isStopping, clock.now.offset - lingerStart.offset < options.finishLinger {
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

    /// Model file, then `state.json` (the commit point).
    private func persist(_ model: CoordinatorModel) throws {
        let snapshot = core.snapshot()
        let name = StateStore.modelFileName(completedRounds: snapshot.completed)
        do {
            try FileManager.default.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
            try ModelFile(
                model: model.model, itemFeatures: model.itemFeatures, datasetChecksum: dataset.checksum,
                itemIDs: dataset.itemIDs, extraMetadata: ["federated_rounds": "\(snapshot.completed)"]
            ).write(to: store.directory + "/" + name)
        } catch {
            throw CoordinatorError(code: .state, message: "cannot write \(store.directory)/\(name): \(error)")
        }
        try store.save(
            PersistedState(
                runFingerprint: runFingerprint, completedRounds: snapshot.completed, nextRound: snapshot.next,
                enrolled: snapshot.enrolled, replayGuard: snapshot.replayGuard, serverOptimizer: model.serverOptimizer,
                modelFile: name, rounds: snapshot.records))
    }
}
