import ArgumentParser
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecTensor
import Foundation
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// `fedrec coordinator`: the coordinator process.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the federated coordinator: enrol clients, run rounds, aggregate, evaluate, checkpoint.",
        discussion: """
            Serves gRPC over plaintext HTTP/2 (every model payload is sealed end to end with XChaCha20-Poly1305 \
            under per-client crypto_kx session keys, so the transport carries no readable weights). State is saved \
            in --state after every round: stopped (SIGINT/SIGTERM) or killed, the same command resumes from the \
            last completed round. Exit codes: 0 completed, 3 a round failed too often, 6 unusable state folder, \
            7 bad data set/keys/allow-list, 10 stopped by a signal before the last round (resumable), 1 other.
            """)

    @Option(help: "Data-set folder (fedrec data import).") var dataset: String
    @Option(help: "Folder holding the coordinator's identity, coordinator.key.") var keys: String
    @Option(name: .customLong("allow-list"), help: "Allow-list of client public identities.") var allowList: String
    @Option(help: "State folder (created when missing; resumed when it holds a state).") var state: String
    @Option(help: "Address to listen on (port 0: any free port).") var address: HostPort = HostPort(
        argument: "127.0.0.1:50051")!
    @Option(help: "Rounds to complete.") var rounds: Int = 10
    @Option(help: "Clients per round (count).") var cohort: Int?
    @Option(help: "Clients per round (fraction of the enrolled clients).") var fraction: Double?
    @Option(name: .customLong("min-clients"), help: "Fewest updates that close a round.") var minClients: Int = 1
    @Option(help: "Seconds from opening a round to its deadline.") var deadline: Double = 60
    @Option(name: .customLong("max-attempts"), help: "Attempts per round before giving up.") var maxAttempts: Int = 5
    @Option(name: .customLong("server-optimizer"), help: "fedavg, fedadam or fedyogi.") var serverOptimizer: String =
        "fedavg"
    @Option(name: .customLong("server-lr"), help: "Server learning rate (default: 1 for fedavg, 0.01 otherwise).")
    var serverLR: Float?
    @Option(name: .customLong("item-lr"), help: "Learning rate of the central item-tower Adam step.") var itemLR:
        Float = 0.005
    @Option(name: .customLong("client-lr"), help: "Clients' local SGD learning rate.") var clientLR: Float = 0.5
    @Option(name: .customLong("local-epochs"), help: "Clients' local epochs per round.") var localEpochs: Int = 1
    @Option(name: .customLong("batch-size"), help: "Clients' local batch size.") var batchSize: Int = 32
    @Option(name: .customLong("proximal-mu"), help: "FedProx proximal coefficient (0: off).") var proximalMu: Float = 0
    @Option(help: "Embedding dimension d.") var dimension: Int = 64
    @Option(name: .customLong("hidden"), help: "User-tower hidden width.") var hidden: Int = 128
    @Option(help: "Softmax temperature.") var tau: Float = 0.1
    @Flag(name: .customLong("no-user-features")) var noUserFeatures = false
    @Flag(name: .customLong("no-item-features")) var noItemFeatures = false
    @Option(help: "Fold trained on: validation (Recall@20 on the validation slice) or test.") var fold: String =
        "validation"
    @Option(name: .customLong("eval-every"), help: "Evaluate Recall@20 every N rounds (0: never).") var evalEvery: Int =
        5
    @Option(help: "Seed of the model and the cohorts.") var seed: UInt64 = 1
    @Option(
        name: .customLong("wait-for"),
        help: "Start once this many clients are enrolled (default: the whole allow-list).") var waitFor: Int?
    @Option(name: .customLong("enrol-grace"), help: "...or after this many seconds with at least --min-clients.")
    var enrolGrace: Double = 30
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: String =
        "info"
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1, got \(rounds)") }
        if cohort != nil && fraction != nil { throw ValidationError("give --cohort or --fraction, not both") }
        if let cohort, cohort < 1 { throw ValidationError("--cohort must be at least 1, got \(cohort)") }
        if let fraction, !(fraction > 0 && fraction <= 1) {
            throw ValidationError("--fraction must lie in (0, 1], got \(fraction)")
        }
        guard minClients >= 1 else { throw ValidationError("--min-clients must be at least 1, got \(minClients)") }
        guard deadline > 0, deadline.isFinite else {
            throw ValidationError("--deadline must be positive, got \(deadline)")
        }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        guard ["fedavg", "fedadam", "fedyogi"].contains(serverOptimizer) else {
            throw ValidationError("--server-optimizer must be fedavg, fedadam or fedyogi, got '\(serverOptimizer)'")
        }
        if let serverLR, !(serverLR > 0 && serverLR.isFinite) { throw ValidationError("--server-lr must be positive") }
        guard clientLR > 0, itemLR > 0 else { throw ValidationError("learning rates must be positive") }
        guard localEpochs >= 1, batchSize >= 1 else {
            throw ValidationError("--local-epochs and --batch-size must be at least 1")
        }
        guard proximalMu >= 0 else { throw ValidationError("--proximal-mu must be non-negative") }
        guard dimension >= 1, hidden >= 1, tau > 0 else {
            throw ValidationError("--dimension, --hidden and --tau must be positive")
        }
        guard Fold(rawValue: fold) != nil else {
            throw ValidationError("--fold must be validation or test, got '\(fold)'")
        }
        guard evalEvery >= 0 else { throw ValidationError("--eval-every must be non-negative") }
        guard enrolGrace >= 0 else { throw ValidationError("--enrol-grace must be non-negative") }
        if let waitFor, waitFor < 1 { throw ValidationError("--wait-for must be at least 1") }
    }

    var options: CoordinatorOptions {
        var o = CoordinatorOptions(
            datasetPath: dataset, keysDirectory: keys, allowListPath: allowList, stateDirectory: state)
        o.host = address.host
        o.port = address.port
        o.rounds = rounds
        o.cohort = cohort.map { .count($0) } ?? .fraction(fraction ?? 0.1)
        o.minimumClients = minClients
        o.deadline = .milliseconds(Int64(deadline * 1000))
        o.maximumAttempts = maxAttempts
        switch serverOptimizer {
        case "fedadam": o.serverOptimizer = .fedAdam(learningRate: serverLR ?? 0.01)
        case "fedyogi": o.serverOptimizer = .fedYogi(learningRate: serverLR ?? 0.01)
        default: o.serverOptimizer = .fedAvg(learningRate: serverLR ?? 1)
        }
        o.itemOptimizer = .adam(learningRate: itemLR)
        o.clientTraining = ClientTrainingConfiguration(
            localEpochs: localEpochs, batchSize: batchSize, optimizer: .sgd(learningRate: clientLR),
            proximalMu: proximalMu)
        o.dimension = dimension
        o.hiddenWidth = hidden
        o.tau = tau
        o.useUserFeatures = !noUserFeatures
        o.useItemFeatures = !noItemFeatures
        o.fold = Fold(rawValue: fold) ?? .validation
        o.evaluationInterval = evalEvery
        o.seed = seed
        o.waitForClients = waitFor
        o.enrolmentGrace = .milliseconds(Int64(enrolGrace * 1000))
        return o
    }

    func run() async throws {
        runtime.apply()
        let logger = ProcessLogging.logger(label: "fedrec.coordinator", level: logLevel)
        let options = self.options
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: options.host, port: options.port), transportSecurity: .plaintext)
        do {
            let coordinator = try CoordinatorBuilder.build(
                options: options, transport: transport, logger: logger,
                onListening: {
                    let bound = try await transport.listeningAddress
                    printFlushed("listening on \(bound.ipv4.map { "\($0.host):\($0.port)" } ?? "\(bound)")")
                },
                onRound: { r in printFlushed(StatusCommand.line(r)) })
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: coordinator, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            printFlushed("completed \(coordinator.core.completedRounds) round(s); state in \(options.stateDirectory)")
        } catch {
            throw ExitCode(FederationExit.code(for: error))
        }
    }
}
