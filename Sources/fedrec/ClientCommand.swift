import ArgumentParser
import FedRecClient
import Foundation
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// `fedrec client`: a client process hosting virtual clients (one per user).
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Run a client process: enrol its users' identities, train each selected one locally per round.",
        discussion: """
            Each hosted user needs KEYS/user-<id>.key; KEYS/coordinator.pub pins the coordinator. Updates are \
            sealed end to end before they reach the transport. Exit codes: 0 training finished, 4 enrolment \
            refused or wrong coordinator, 5 coordinator unreachable, 7 bad data set or keys, 10 stopped by a \
            signal, 1 other.
            """)

    @Option(help: "Coordinator address IPv4:PORT (e.g. 127.0.0.1:50051).") var coordinator: HostPort
    @Option(help: "Data-set folder (the users' shards are read from it).") var dataset: String
    @Option(help: "Folder with user-<id>.key files and coordinator.pub.") var keys: String
    @Option(parsing: .unconditional, help: "Host the first K users (data-set order).") var clients: Int?
    @Option(help: "Host these user ids (comma-separated).") var users: String?
    @Option(help: "Host users I, I+N, I+2N, ... (format I/N).") var shard: String?
    @Option(
        name: .customLong("connect-timeout"), parsing: .unconditional,
        help: "Seconds to keep retrying an unreachable coordinator.")
    var connectTimeout: Double = 60
    @Option(name: .customLong("hang-in-round"), parsing: .unconditional, help: .hidden) var hangInRound: Int?
    @Option(name: .customLong("kill-at-stage"), parsing: .unconditional, help: .hidden) var killAtStage: Int?
    @Option(help: "Write CPU seconds per phase, peak memory and wall time here (JSON) when the process ends.")
    var stats: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: String =
        "info"
    @OptionGroup var runtime: RuntimeOptions

    var shardParts: (Int, Int)? {
        guard let shard else { return nil }
        let parts = shard.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (0..<n).contains(i) else {
            return nil
        }
        return (i, n)
    }

    func validate() throws {
        let given = [clients != nil, users != nil, shard != nil].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give exactly one of --clients, --users and --shard") }
        if let clients, clients < 1 { throw ValidationError("--clients must be at least 1, got \(clients)") }
        if shard != nil, shardParts == nil { throw ValidationError("--shard must be I/N with 0 <= I < N") }
        if let users, users.split(separator: ",").isEmpty { throw ValidationError("--users is empty") }
        try OptionChecks.seconds(connectTimeout, "--connect-timeout")
        try OptionChecks.logLevel(logLevel)
    }

    func run() async throws {
        runtime.apply()
        let tunedAllocator = AllocatorTuning.apply()
        let logger = ProcessLogging.logger(label: "fedrec.client", level: logLevel)
        if !tunedAllocator { logger.warning("glibc refused the allocator settings; running with its defaults") }
        let selection: UserSelection
        if let clients {
            selection = .first(clients)
        } else if let users {
            selection = .ids(users.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
        } else {
            let (i, n) = shardParts!
            selection = .shard(index: i, count: n)
        }
        var options = ClientOptions(datasetPath: dataset, keysDirectory: keys, users: selection)
        options.coordinatorHost = coordinator.host
        options.coordinatorPort = coordinator.port
        options.connectTimeout = .milliseconds(Int64(connectTimeout * 1000))
        options.hangInRound = hangInRound
        options.killAtStage = killAtStage
        do {
            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(address: coordinator.host, port: coordinator.port), transportSecurity: .plaintext,
                config: TransportTuning.client)
            let client = try ClientBuilder.build(
                options: options, transport: transport, logger: logger,
                onAssignment: { round, selected in
                    if selected > 0 { printFlushed("round \(round): training \(selected) client(s)") }
                })
            printFlushed("hosting \(client.clientIDs.count) client(s)")
            client.meter.samplesMemory = stats != nil
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: client, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            defer { if let stats { try? client.meter.report().write(to: stats) } }
            try await group.run()
            printFlushed("training finished: \(client.acceptedUpdates) update(s) accepted")
        } catch {
            throw ExitCode(FederationExit.code(for: error))
        }
    }
}
