import ArgumentParser
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecSecurity
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
            7 bad data set/keys/allow-list, 8 the privacy budget (--target-epsilon) would be exceeded, 10 stopped by \
            a signal before the last round (resumable), 1 other.
            """)

    @Option(help: "Data-set folder (fedrec data import).") var dataset: String
    @Option(help: "Folder holding the coordinator's identity, coordinator.key.") var keys: String
    @Option(name: .customLong("allow-list"), help: "Allow-list of client public identities.") var allowList: String
    @Option(help: "State folder (created when missing; resumed when it holds a state).") var state: String
    @Option(help: "Address to listen on, IPv4:PORT (port 0: any free port).") var address: HostPort = HostPort(
        argument: "127.0.0.1:50051")!
    @Option(parsing: .unconditional, help: "Rounds to complete.") var rounds: Int = 10
    @Option(parsing: .unconditional, help: "Clients per round (count; default 32 unless --fraction is given).")
    var cohort: Int?
    @Option(parsing: .unconditional, help: "Clients per round (fraction of the enrolled clients).") var fraction:
        Double?
    @Option(
        name: .customLong("min-clients"), parsing: .unconditional,
        help: "Fewest updates that close a round (with DP it must stay 1: a DP round closes with what arrived).")
    var minClients: Int = 1
    @Option(parsing: .unconditional, help: "Seconds from opening a round to its deadline.") var deadline: Double = 60
    @Option(name: .customLong("max-attempts"), parsing: .unconditional, help: "Attempts per round before giving up.")
    var maxAttempts: Int = 5
    /// The `--server-optimizer` names (`demo` forwards its own to this command and checks it against them).
    static let serverOptimizers = ["fedavg", "fedadam", "fedyogi", "adam"]
    @Option(name: .customLong("server-optimizer"), help: "fedavg, fedadam, fedyogi or adam (bias-corrected).")
    var serverOptimizer: String =
        "fedadam"
    @Option(
        name: .customLong("server-lr"), parsing: .unconditional,
        help: "Server learning rate (default: 1 for fedavg, 0.005 otherwise).")
    var serverLR: Float?
    @Option(
        name: .customLong("item-lr"), parsing: .unconditional,
        help: "Learning rate of the central item-tower Adam step.") var itemLR: Float = 0.005
    @Option(name: .customLong("client-lr"), parsing: .unconditional, help: "Clients' local SGD learning rate.")
    var clientLR: Float = 1
    @Option(name: .customLong("local-epochs"), parsing: .unconditional, help: "Clients' local epochs per round.")
    var localEpochs: Int = 1
    @Option(
        name: [.customLong("local-batch"), .customLong("batch-size")], parsing: .unconditional,
        help:
            "Clients' local batch size, as simulate's --local-batch (0: all of a client's examples in one step, FedSGD)."
    )
    var localBatch: Int = 0
    @Option(
        name: .customLong("server-beta1"), parsing: .unconditional,
        help: "Server first-moment decay (FedAdam, FedYogi, Adam).")
    var serverBeta1: Float = 0.9
    @Option(
        name: .customLong("server-beta2"), parsing: .unconditional,
        help: "Server second-moment decay (FedAdam, FedYogi, Adam).")
    var serverBeta2: Float =
        0.999
    @Option(name: .customLong("server-tau"), parsing: .unconditional, help: "FedAdam/FedYogi adaptivity (epsilon).")
    var serverTau: Float = 1e-8
    @Option(name: .customLong("proximal-mu"), parsing: .unconditional, help: "FedProx proximal coefficient (0: off).")
    var proximalMu: Float = 0
    @Option(parsing: .unconditional, help: "Embedding dimension d.") var dimension: Int = 64
    @Option(name: .customLong("hidden"), parsing: .unconditional, help: "User-tower hidden width.") var hidden: Int =
        128
    @Option(parsing: .unconditional, help: "Softmax temperature.") var tau: Float = 0.1
    @Flag(name: .customLong("no-user-features")) var noUserFeatures = false
    @Flag(name: .customLong("no-item-features")) var noItemFeatures = false
    @Option(help: "Fold trained on: validation (Recall@20 on the validation slice) or test.") var fold: String =
        "validation"
    @Option(
        name: .customLong("eval-every"), parsing: .unconditional, help: "Evaluate Recall@20 every N rounds (0: never).")
    var evalEvery: Int =
        5
    @Option(parsing: .unconditional, help: "Seed of the model and the cohorts.") var seed: UInt64 = 1
    @Option(
        name: .customLong("wait-for"), parsing: .unconditional,
        help: "Start once this many clients are enrolled (default: the whole allow-list).") var waitFor: Int?
    @Option(
        name: .customLong("enrol-grace"), parsing: .unconditional,
        help: "...or after this many seconds with at least --min-clients.")
    var enrolGrace: Double = 30
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: String =
        "info"
    @Option(
        name: .customLong("local-steps"), parsing: .unconditional,
        help: "Cap on clients' local steps per round (default: none).")
    var localSteps: Int?
    @Option(help: "Write CPU seconds per phase, peak memory and wall time here (JSON) when the process ends.")
    var stats: String?
    @Option(
        name: .customLong("max-connections"), parsing: .unconditional,
        help: ArgumentHelp(
            "Connections open at once; one beyond it is closed at once and logged.",
            discussion:
                "Each client process keeps one. Lowered, with a warning, to fit the descriptor limit (ulimit -n) "
                + "less the descriptors open at start and \(ConnectionGate.reservedDescriptors) kept for the "
                + "coordinator's own files."))
    var maxConnections: Int = 1_024
    @Option(
        name: .customLong("noise-multiplier"), parsing: .unconditional,
        help: "Differential privacy: Gaussian noise multiplier z (noise z*S on the sum); turns DP-FedAvg on.")
    var noiseMultiplier: Double?
    @Option(
        name: .customLong("clip-norm"), parsing: .unconditional,
        help: "Differential privacy: L2 clip norm S of each client's whole update.")
    var clipNorm: Double?
    @Option(
        name: .customLong("target-epsilon"), parsing: .unconditional,
        help: "Differential privacy: refuse to start when the configured rounds would spend more than this epsilon.")
    var targetEpsilon: Double?
    @Option(parsing: .unconditional, help: "Differential privacy: delta (default 1 / allow-listed clients).") var delta:
        Double?
    @OptionGroup var clipping: AdaptiveClippingOptions
    @Flag(
        name: .customLong("secure-aggregation"),
        help: "SecAgg+: the coordinator only learns the sum of the cohort's updates.")
    var secureAggregation = false
    @Option(
        name: .customLong("secagg-neighbours"), parsing: .unconditional,
        help: "SecAgg+ neighbours per client (default: of order log2 n).")
    var secaggNeighbours: Int?
    @Option(
        name: .customLong("secagg-threshold"), parsing: .unconditional,
        help: "SecAgg+ shares needed to reconstruct a secret.")
    var secaggThreshold: Int?
    @Option(
        name: .customLong("secagg-clip-range"), parsing: .unconditional,
        help: ArgumentHelp(
            "SecAgg+: each update element is clipped to [-R, R] before quantisation.",
            discussion:
                "Default: the clip norm (no element of a clipped update exceeds it), 10 times the initial one under "
                + "adaptive clipping, or 10 without differential privacy. Under adaptive clipping a round's range is "
                + "at least its clip norm, which may grow past R."))
    var secaggClipRange: Float?
    @Option(
        name: .customLong("stage-deadline"), parsing: .unconditional,
        help: ArgumentHelp(
            "SecAgg+: seconds for each of the share-keys, masked-input and unmask stages (advertising keys has "
                + "--deadline)."))
    var stageDeadline: Double = 30
    @Option(help: "Learning-rate schedule of the server and item steps: constant or cosine (decay over --rounds).")
    var schedule: String = "constant"
    @Option(parsing: .unconditional, help: "Cosine schedule: warm-up rounds.") var warmup: Int = 0
    @Option(
        name: .customLong("lr-floor"), parsing: .unconditional,
        help: "Cosine schedule: final multiplier of the learning rates.")
    var lrFloor: Float = 0.01
    @Option(
        parsing: .unconditional,
        help:
            "Evaluate and save a moving average of the global model (Polyak averaging across rounds) with this decay (0: the raw model)."
    )
    var average: Float = 0.99
    @Option(
        name: .customLong("average-warmup"), parsing: .unconditional,
        help:
            "Warm-up w of the average's decay min(decay, (1+t)/(w+t)) at round t (> 1; 2: a running mean of every round's model until the decay caps it)."
    )
    var averageWarmup: Float = 2
    @Option(help: wirePrecisionHelp) var wirePrecision: WirePrecisionArgument = .f32
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1, got \(rounds)") }
        if cohort != nil && fraction != nil { throw ValidationError("give --cohort or --fraction, not both") }
        if let cohort, cohort < 1 { throw ValidationError("--cohort must be at least 1, got \(cohort)") }
        if let fraction, !(fraction > 0 && fraction <= 1) {
            throw ValidationError("--fraction must lie in (0, 1], got \(fraction)")
        }
        guard minClients >= 1 else { throw ValidationError("--min-clients must be at least 1, got \(minClients)") }
        try OptionChecks.seconds(deadline, "--deadline")
        for (option, path) in [
            ("--state", state), ("--dataset", dataset), ("--keys", keys), ("--allow-list", allowList),
        ]
        where path.isEmpty {
            throw ValidationError("\(option) is empty")
        }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        guard maxConnections >= 1 else {
            throw ValidationError("--max-connections must be at least 1, got \(maxConnections)")
        }
        guard Self.serverOptimizers.contains(serverOptimizer) else {
            throw ValidationError(
                "--server-optimizer must be fedavg, fedadam, fedyogi or adam (bias-corrected), got '\(serverOptimizer)'"
            )
        }
        if let serverLR, !(serverLR > 0 && serverLR.isFinite) { throw ValidationError("--server-lr must be positive") }
        try OptionChecks.positive(Double(clientLR), "--client-lr")
        try OptionChecks.positive(Double(itemLR), "--item-lr")
        if noiseMultiplier != nil || clipNorm != nil || targetEpsilon != nil || delta != nil {
            guard let noiseMultiplier, let clipNorm else {
                throw ValidationError("differential privacy needs --noise-multiplier and --clip-norm")
            }
            try OptionChecks.nonNegative(noiseMultiplier, "--noise-multiplier")
            try OptionChecks.positive(clipNorm, "--clip-norm")
            if let targetEpsilon, !(targetEpsilon > 0) { throw ValidationError("--target-epsilon must be positive") }
            if let delta, !(delta > 0 && delta < 1) { throw ValidationError("--delta must lie in (0, 1)") }
        }
        if clipping.adaptiveClipping, noiseMultiplier == nil {
            throw ValidationError("--adaptive-clipping needs differential privacy (--noise-multiplier, --clip-norm)")
        }
        if let secaggNeighbours, secaggNeighbours < 1 { throw ValidationError("--secagg-neighbours must be >= 1") }
        if let secaggThreshold, secaggThreshold < 1 { throw ValidationError("--secagg-threshold must be >= 1") }
        // k <= 254 (Shamir shares are numbered 1...255) and k/2 < t <= k, checked here rather than replaced round
        // by round. An odd k is SecAgg+'s Harary graph only when it is n - 1 (classic SecAgg); otherwise a round
        // takes the complete graph.
        if let k = secaggNeighbours {
            guard k <= 254 else { throw ValidationError("--secagg-neighbours must be at most 254, got \(k)") }
            if let t = secaggThreshold, !(2 * t > k && t <= k) {
                throw ValidationError("--secagg-threshold must satisfy k/2 < t <= k with k = \(k), got \(t)")
            }
        }
        if let secaggClipRange, !(secaggClipRange > 0) { throw ValidationError("--secagg-clip-range must be > 0") }
        try OptionChecks.seconds(stageDeadline, "--stage-deadline")
        if let localSteps, localSteps < 1 {
            throw ValidationError("--local-steps must be at least 1, got \(localSteps)")
        }
        guard serverBeta1 >= 0, serverBeta1 < 1, serverBeta2 >= 0, serverBeta2 < 1, serverTau > 0 else {
            throw ValidationError("--server-beta1/--server-beta2 must be in [0, 1) and --server-tau positive")
        }
        guard localEpochs >= 1, localBatch >= 0 else {
            throw ValidationError("--local-epochs must be at least 1 and --local-batch at least 0")
        }
        try OptionChecks.nonNegative(Double(proximalMu), "--proximal-mu")
        guard dimension >= 1, hidden >= 1, tau > 0, tau.isFinite else {
            throw ValidationError("--dimension, --hidden and --tau must be positive")
        }
        try OptionChecks.dimension(dimension)
        guard Fold(rawValue: fold) != nil else {
            throw ValidationError("--fold must be validation or test, got '\(fold)'")
        }
        guard ["constant", "cosine"].contains(schedule) else {
            throw ValidationError("--schedule must be constant or cosine, got '\(schedule)'")
        }
        guard warmup >= 0, warmup < rounds else { throw ValidationError("--warmup must lie in 0..<--rounds") }
        guard lrFloor > 0, lrFloor <= 1 else { throw ValidationError("--lr-floor must lie in (0, 1]") }
        guard average >= 0, average < 1 else { throw ValidationError("--average must lie in [0, 1), got \(average)") }
        guard averageWarmup > 1, averageWarmup.isFinite else {
            throw ValidationError("--average-warmup must exceed 1, got \(averageWarmup)")
        }
        guard evalEvery >= 0 else { throw ValidationError("--eval-every must be non-negative") }
        try OptionChecks.seconds(enrolGrace, "--enrol-grace", allowZero: true)
        try OptionChecks.logLevel(logLevel)
        if let waitFor, waitFor < 1 { throw ValidationError("--wait-for must be at least 1") }
    }

    var options: CoordinatorOptions {
        var o = CoordinatorOptions(
            datasetPath: dataset, keysDirectory: keys, allowListPath: allowList, stateDirectory: state)
        o.host = address.host
        o.port = address.port
        o.rounds = rounds
        o.cohort = cohort.map { .count($0) } ?? fraction.map { .fraction($0) } ?? .count(32)
        o.minimumClients = minClients
        o.deadline = .milliseconds(Int64(deadline * 1000))
        o.maximumAttempts = maxAttempts
        switch serverOptimizer {
        case "fedadam":
            o.serverOptimizer = .fedAdam(
                learningRate: serverLR ?? 0.005, beta1: serverBeta1, beta2: serverBeta2, tau: serverTau)
        case "fedyogi":
            o.serverOptimizer = .fedYogi(
                learningRate: serverLR ?? 0.005, beta1: serverBeta1, beta2: serverBeta2, tau: serverTau)
        case "adam":
            o.serverOptimizer = .adam(
                learningRate: serverLR ?? 0.005, beta1: serverBeta1, beta2: serverBeta2, epsilon: serverTau)
        default: o.serverOptimizer = .fedAvg(learningRate: serverLR ?? 1)
        }
        o.itemOptimizer = .adam(learningRate: itemLR)
        o.clientTraining = ClientTrainingConfiguration(
            localEpochs: localEpochs,
            batchSize: localBatch == 0 ? ClientTrainingConfiguration.wholeClientBatch : localBatch,
            optimizer: .sgd(learningRate: clientLR), proximalMu: proximalMu, maximumSteps: localSteps)
        o.dimension = dimension
        o.hiddenWidth = hidden
        o.tau = tau
        o.useUserFeatures = !noUserFeatures
        o.useItemFeatures = !noItemFeatures
        o.fold = Fold(rawValue: fold) ?? .validation
        o.evaluationInterval = evalEvery
        if schedule == "cosine" { o.learningRateSchedule = .cosine(rounds: rounds, warmup: warmup, floor: lrFloor) }
        o.averageDecay = average > 0 ? average : nil
        o.averageWarmup = averageWarmup
        o.wirePrecision = wirePrecision.precision
        o.seed = seed
        o.waitForClients = waitFor
        o.enrolmentGrace = .milliseconds(Int64(enrolGrace * 1000))
        if secureAggregation {
            var secure = SecureAggregationOptions()
            secure.neighbours = secaggNeighbours
            secure.threshold = secaggThreshold
            secure.clipRange =
                secaggClipRange ?? clipNorm.map { Float(clipping.adaptiveClipping ? 10 * $0 : $0) } ?? 10
            secure.stageDeadline = .milliseconds(Int64(stageDeadline * 1000))
            o.secureAggregation = secure
        }
        return o
    }

    /// DP-FedAvg's configuration, when asked for: the cohort becomes Poisson-sampled with rate q = --fraction,
    /// or --cohort / allow-listed clients.
    func privacy(population: Int) -> DifferentialPrivacyConfiguration? {
        guard let noiseMultiplier, let clipNorm else { return nil }
        let q = fraction ?? min(1, Double(cohort ?? 32) / Double(max(population, 1)))
        return DifferentialPrivacyConfiguration(
            clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, samplingRate: q, numberOfUsers: max(population, 1),
            delta: delta, targetEpsilon: targetEpsilon)
    }

    func run() async throws {
        runtime.apply()
        let tunedAllocator = AllocatorTuning.apply()
        let logger = ProcessLogging.logger(label: "fedrec.coordinator", level: logLevel)
        if !tunedAllocator { logger.warning("glibc refused the allocator settings; running with its defaults") }
        var options = self.options
        if noiseMultiplier != nil {
            let population: Int
            do { population = try KeyFiles.loadAllowList(path: allowList).entries.count } catch {
                throw ExitCode(FederationExit.code(for: CoordinatorError(code: .setup, message: "\(error)")))
            }
            do {
                options.privacy = try privacy(population: population).map {
                    try clipping.applied(to: $0, population: population)
                }
            } catch let error as PrivacyError where error.field == "targetEpsilon" {
                // A budget one round already spends (found here when adaptive clipping validates the whole
                // configuration): exit code 8, as the builder's budget check gives without it.
                throw ExitCode(
                    FederationExit.code(
                        for: CoordinatorError(code: .privacyBudget, message: "refusing to start: \(error)")))
            } catch {
                throw ExitCode(FederationExit.code(for: CoordinatorError(code: .setup, message: "\(error)")))
            }
            options.cohort = .poisson(rate: options.privacy!.samplingRate)
        }
        let connectionLimit = ConnectionGate.effectiveLimit(requested: maxConnections)
        if connectionLimit < maxConnections {
            logger.warning(
                """
                at most \(connectionLimit) connections (--max-connections \(maxConnections) does not fit the \
                descriptor limit, ulimit -n, with the descriptors open and \(ConnectionGate.reservedDescriptors) \
                kept for files)
                """)

        }
        let transport = ConnectionLimitedListener.transport(
            host: options.host, port: options.port, gate: ConnectionGate(limit: connectionLimit, logger: logger),
            config: TransportTuning.server)
        do {
            let coordinator = try CoordinatorBuilder.build(
                options: options, transport: transport, logger: logger,
                onListening: {
                    // Nil when the listener failed (a port in use): then the server's error is the outcome, and
                    // nothing may announce an address that another process owns (`demo` starts clients on it).
                    guard let bound = await transport.listeningAddress?.ipv4 else { return }
                    printFlushed("listening on \(bound.host):\(bound.port)")
                },
                onRound: { r in printFlushed(StatusCommand.line(r)) })
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: coordinator, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            coordinator.core.meter.samplesMemory = stats != nil
            defer { if let stats { try? coordinator.core.meter.report().write(to: stats) } }
            try await group.run()
            printFlushed("completed \(coordinator.core.completedRounds) round(s); state in \(options.stateDirectory)")
        } catch {
            throw ExitCode(FederationExit.code(for: error))
        }
    }
}
