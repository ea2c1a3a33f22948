import ArgumentParser
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import Foundation

/// `fedrec bench rounds`: seconds per federated round with real processes (one coordinator, N client processes
/// of one virtual client each, up to --max-processes; every round's cohort = all N), where the CPU time goes, and peak memory.
struct BenchRoundsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rounds",
        abstract: "Seconds per round with a coordinator and N client processes on this host.",
        discussion: """
            Workload 'flower' is the Flower anchor's: ml-100k, no user features, d 64, hidden 128 (a 124,224-\
            parameter user tower: the 1,682 x 64 history table plus the MLP), one local step of batch 32 per \
            client. Workload 'full' is fedrec's federated defaults (user features, FedSGD over the client's whole \
            data). Rounds are timed on the coordinator from one round's close to the next (checkpoint and payload \
            encoding included), after one warm-up round. CPU time is summed over all processes and split by phase \
            (each process measures its phases with the thread CPU clock; 'transport' is the rest of its CPU time: \
            gRPC, HTTP/2, protobuf, polling). Memory per process: peak resident set (ru_maxrss, which counts the \
            shared libraries' pages in every process), and the largest proportional and private (unique) set \
            sampled once per round.
            """)

    @Option(help: "Source data set (MovieLens folder) or an imported data-set folder.")
    var source: String = "../shared/data/ml-100k"
    @Option(help: "Comma-separated client counts N (client processes = clients per round).")
    var clients: String = "2,8,32"
    @Option(parsing: .unconditional, help: "Timed rounds (after one warm-up round).") var rounds: Int = 10
    @Option(help: "flower or full.") var workload: String = "flower"
    @Option(help: "Work folder (data set, keys, states, stats).") var out: String = "runs/bench-rounds"
    @Option(
        parsing: .unconditional, help: "Most client processes; above it, each process hosts several of the N clients.")
    var maxProcesses: Int = 32
    @Flag(help: "Secure aggregation (SecAgg+ with its default neighbourhood) instead of plain updates.")
    var secureAggregation = false
    @Option(help: wirePrecisionHelp) var wirePrecision: WirePrecisionArgument = .f32

    var counts: [Int] { clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard !counts.isEmpty, counts.count == clients.split(separator: ",").count, counts.allSatisfy({ $0 >= 1 })
        else { throw ValidationError("--clients must be comma-separated positive counts, got '\(clients)'") }
        guard rounds >= 2 else { throw ValidationError("--rounds must be at least 2, got \(rounds)") }
        guard maxProcesses >= 1 else { throw ValidationError("--max-processes must be at least 1") }
        guard ["flower", "full"].contains(workload) else {
            throw ValidationError("--workload must be flower or full, got '\(workload)'")
        }
    }

    func run() async throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let datasetPath: String
        let dataset: Dataset
        if fm.fileExists(atPath: source + "/manifest.json") {
            datasetPath = source
            dataset = try Dataset.load(from: source)
        } else {
            datasetPath = out + "/dataset"
            if fm.fileExists(atPath: datasetPath + "/manifest.json") {
                dataset = try Dataset.load(from: datasetPath)
            } else {
                dataset = try DatasetImporter.importDataset(source: source).write(to: datasetPath)
            }
        }
        let users = dataset.split.fold(.validation).filter { !$0.known.isEmpty }.map { dataset.userIDs[$0.userIndex] }
        let most = counts.max()!
        guard users.count >= most else {
            throw ValidationError("the data set has \(users.count) users with data; --clients asks for \(most)")
        }
        let keys = out + "/keys"
        var lines: [String] = []
        try fm.createDirectory(atPath: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if !fm.fileExists(atPath: keys + "/coordinator.key") {
            _ = try KeyFiles.write(
                Identity.generate(name: CoordinatorBuilder.identityName), directory: keys, overwrite: true)
        }
        for user in users.prefix(most) {
            let id = Wire.clientID(forUser: user)
            let identity: Identity
            if fm.fileExists(atPath: keys + "/\(id).key") {
                identity = try KeyFiles.loadIdentity(path: keys + "/\(id).key")
            } else {
                identity = try Identity.generate(name: id)
                _ = try KeyFiles.write(identity, directory: keys, overwrite: true)
            }
            lines.append(identity.publicIdentity.line)
        }

        printFlushed(
            "workload \(workload)\(secureAggregation ? " with secure aggregation" : "")"
                + "\(wirePrecision == .f32 ? "" : ", \(wirePrecision.rawValue) on the wire"): \(rounds) timed rounds "
                + "after 1 warm-up, data \(datasetPath), "
                + "\(ProcessInfo.processInfo.activeProcessorCount) cores")
        printFlushed(
            "   N   s/round  rounds/min   CPU s/round: train  crypto  codec  aggr  transport  other  overhead"
                + "   coord MiB (RSS/PSS/private)  client MiB (RSS/PSS/private)")
        for n in counts {
            let allowList = out + "/allow-list-\(n)"
            try (lines.prefix(n).joined(separator: "\n") + "\n").write(
                toFile: allowList, atomically: true, encoding: .utf8)
            let state = out + "/state-\(n)"
            try? fm.removeItem(atPath: state)
            let statsPrefix = out + "/stats-\(n)"
            var coordinatorArguments = [
                "coordinator", "--dataset", datasetPath, "--keys", keys, "--allow-list", allowList, "--state", state,
                "--address", "127.0.0.1:0", "--rounds", "\(rounds + 1)", "--cohort", "\(n)", "--min-clients", "\(n)",
                "--wait-for", "\(n)", "--deadline", "600", "--eval-every", "0", "--fold", "validation",
                "--stats", statsPrefix + "-coordinator.json", "--log-level", "warning",
                "--wire-precision", wirePrecision.rawValue,
            ]
            if secureAggregation { coordinatorArguments += ["--secure-aggregation", "--stage-deadline", "600"] }
            if workload == "flower" {
                coordinatorArguments += [
                    "--no-user-features", "--dimension", "64", "--hidden", "128", "--batch-size", "32",
                    "--local-steps", "1",
                ]
            }
            let coordinator = try ChildProcess(name: "coordinator", arguments: coordinatorArguments, echo: false)
            guard let listening = try await coordinator.waitForLine(containing: "listening on ") else {
                printFlushed(coordinator.output.joined(separator: "\n"))
                throw ExitCode(try await coordinator.waitForExit())
            }
            let address = String(listening.split(separator: " ").last ?? "")
            var children: [ChildProcess] = []
            let processes = min(n, maxProcesses)
            for index in 0..<processes {
                let hosted = users.prefix(n).enumerated().filter { $0.offset % processes == index }.map(\.element)
                children.append(
                    try ChildProcess(
                        name: "client \(index + 1)",
                        arguments: [
                            "client", "--coordinator", address, "--dataset", datasetPath, "--keys", keys,
                            "--users", hosted.joined(separator: ","), "--stats",
                            statsPrefix + "-client-\(index).json", "--log-level", "warning",
                        ], echo: false))
            }
            let status = try await coordinator.waitForExit()
            for child in children { _ = try await child.waitForExit() }
            guard status == 0 else {
                printFlushed(coordinator.output.suffix(20).joined(separator: "\n"))
                throw ExitCode(status)
            }
            guard let saved = try StateStore(directory: state).load() else { throw ExitCode(FederationExit.state) }
            let closes = saved.rounds.compactMap(\.finishedAt)
            let periods = zip(closes.dropFirst(), closes).map { $0 - $1 }
            let secondsPerRound = periods.reduce(0, +) / Double(max(periods.count, 1))

            let coordinatorReport = try PhaseReport.read(from: statsPrefix + "-coordinator.json")
            let clientReports = try (0..<processes).map {
                try PhaseReport.read(from: statsPrefix + "-client-\($0).json")
            }
            let all = [coordinatorReport] + clientReports
            let measuredRounds = Double(rounds + 1)
            func perRound(_ phase: String) -> Double {
                all.map { $0.phaseCPUSeconds[phase, default: 0] }.reduce(0, +) / measuredRounds
            }
            let total = all.map(\.cpuSeconds).reduce(0, +) / measuredRounds
            let training = perRound("training")
            let crypto = perRound("crypto")
            let codec = perRound("codec")
            let aggregation = perRound("aggregation")
            let transport = perRound("transport")
            let other = perRound("evaluation") + perRound("persistence")
            let overhead = total > 0 ? (total - training) / total : 0
            /// "RSS / PSS / private" MiB, each the largest over `reports`.
            func memory(_ reports: [PhaseReport]) -> String {
                func mib(_ bytes: [Int?]) -> String {
                    let known = bytes.compactMap { $0 }
                    return known.isEmpty ? "-" : String(format: "%.1f", Double(known.max()!) / 1_048_576)
                }
                return String(
                    format: "%28@",
                    "\(mib(reports.map(\.peakResidentBytes))) / \(mib(reports.map(\.peakProportionalBytes))) / "
                        + mib(reports.map(\.peakPrivateBytes)))
            }
            printFlushed(
                String(
                    format: "%4d  %8.3f  %10.1f   %17.3f  %6.3f  %5.3f  %4.3f  %9.3f  %5.3f  %7.1f%%   %@  %@",
                    n, secondsPerRound, 60 / secondsPerRound, training, crypto, codec, aggregation, transport,
                    other, overhead * 100, memory([coordinatorReport]), memory(clientReports)))
        }
        printFlushed(
            "CPU s/round is summed over the coordinator and all client processes; overhead = 1 - training / total "
                + "CPU. MiB: peak resident set (ru_maxrss, shared library pages counted in full), and the largest "
                + "proportional (PSS) and private (unique set, USS) memory sampled once per round from "
                + "/proc/self/smaps_rollup; the Flower anchor's per-process figures are private memory.")
    }
}
