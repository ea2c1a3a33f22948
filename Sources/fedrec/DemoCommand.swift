import ArgumentParser
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import Foundation

/// `fedrec demo`: one coordinator and N client processes on this host, end to end.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Federated training on this host: one coordinator and N client processes, then evaluate and recall.",
        discussion: """
            Imports SOURCE (default: the bundled MovieLens latest-small) into OUT/dataset, creates keys for the \
            coordinator and one identity per user (OUT/keys, mode 0600) and the allow-list, starts `fedrec \
            coordinator` and N `fedrec client` processes (every user a virtual client, users spread across the \
            processes), shows per-round progress, stops them, evaluates the aggregated model on the test set, \
            saves it as OUT/model.safetensors and prints a recall for a sample user.
            """)

    @Option(help: "Client processes.") var clients: Int = 4
    @Option(help: "Rounds.") var rounds: Int = 100
    @Option(help: "Clients per round.") var cohort: Int = 32
    @Option(help: "Seconds per round before stragglers are dropped.") var deadline: Double = 120
    @Option(name: .customLong("server-optimizer"), help: "fedavg, fedadam, fedyogi or adam (bias-corrected).")
    var serverOptimizer: String =
        "fedadam"
    @Option(name: .customLong("server-lr"), help: "Server learning rate.") var serverLR: Double = 0.005
    @Option(name: .customLong("server-beta2"), help: "Server second-moment decay (FedAdam, FedYogi, Adam).")
    var serverBeta2: Double = 0.999
    @Option(name: .customLong("item-lr"), help: "Learning rate of the central item-tower Adam step.")
    var itemLR: Double = 0.005
    @Option(help: "Decay of the served moving average of the global model (0: the raw model).") var average: Float =
        0.99
    @Option(help: wirePrecisionHelp) var wirePrecision: WirePrecisionArgument = .f32
    @Option(help: "Embedding dimension d.") var dimension: Int = 64
    @Option(help: "Source data (a MovieLens or generic folder).") var source: String = "demo/data/ml-latest-small"
    @Option(help: "Output folder.") var out: String = "runs/federated-demo"
    @Option(help: "Port of the coordinator (0: any free port).") var port: Int = 0
    @Option(help: "User for the sample recall (default: the first user).") var user: String?
    @Flag(help: "Start from scratch: remove OUT/state first.") var fresh = false

    func validate() throws {
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1, got \(clients)") }
        guard average >= 0, average < 1 else { throw ValidationError("--average must lie in [0, 1), got \(average)") }
        guard rounds >= 1, cohort >= 1, deadline > 0 else {
            throw ValidationError("--rounds, --cohort and --deadline must be positive")
        }
    }

    func run() async throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let datasetPath = out + "/dataset"
        let dataset: Dataset
        if fm.fileExists(atPath: datasetPath + "/manifest.json") {
            dataset = try Dataset.load(from: datasetPath)
            printFlushed("== data set: \(datasetPath) (\(dataset.userIDs.count) users, \(dataset.itemIDs.count) items)")
        } else {
            printFlushed("== importing \(source) into \(datasetPath)")
            dataset = try DatasetImporter.importDataset(source: source).write(to: datasetPath)
        }

        let keys = out + "/keys"
        let allowList = out + "/allow-list"
        if !fm.fileExists(atPath: allowList) {
            printFlushed("== creating keys for the coordinator and \(dataset.userIDs.count) users in \(keys)")
            try fm.createDirectory(
                atPath: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            _ = try KeyFiles.write(
                Identity.generate(name: CoordinatorBuilder.identityName), directory: keys, overwrite: true)
            var lines = ""
            for user in dataset.userIDs {
                let identity = try Identity.generate(name: Wire.clientID(forUser: user))
                _ = try KeyFiles.write(identity, directory: keys, overwrite: true)
                lines += identity.publicIdentity.line + "\n"
            }
            try lines.write(toFile: allowList, atomically: true, encoding: .utf8)
        }
        let state = out + "/state"
        if fresh { try? fm.removeItem(atPath: state) }

        printFlushed("== starting the coordinator and \(clients) client process(es)")
        let coordinator = try ChildProcess(
            name: "coordinator",
            arguments: [
                "coordinator", "--dataset", datasetPath, "--keys", keys, "--allow-list", allowList, "--state", state,
                "--address", "127.0.0.1:\(port)", "--rounds", "\(rounds)", "--cohort", "\(cohort)",
                "--deadline", "\(deadline)", "--server-optimizer", serverOptimizer, "--server-lr", "\(serverLR)",
                "--server-beta2", "\(serverBeta2)", "--item-lr", "\(itemLR)",
                "--average", "\(average)", "--wire-precision", wirePrecision.rawValue,
                "--dimension", "\(dimension)", "--fold", "test", "--eval-every", "0", "--enrol-grace", "120",
                "--log-level", "warning",
            ], echo: true)
        guard let listening = try await coordinator.waitForLine(containing: "listening on ") else {
            throw ExitCode(try await coordinator.waitForExit())
        }
        let address = String(listening.split(separator: " ").last ?? "")
        var children: [ChildProcess] = []
        for index in 0..<clients {
            children.append(
                try ChildProcess(
                    name: "client \(index + 1)",
                    arguments: [
                        "client", "--coordinator", address, "--dataset", datasetPath, "--keys", keys,
                        "--shard", "\(index)/\(clients)", "--log-level", "warning",
                    ], echo: false))
        }
        let coordinatorStatus = try await coordinator.waitForExit()
        for child in children {
            // Clients stop by themselves once the coordinator says training is over; a straggler is told to stop.
            var waited = 0
            while child.isRunning && waited < 100 {
                try await Task.sleep(for: .milliseconds(50))
                waited += 1
            }
            child.signal(SIGTERM)
            _ = try await child.waitForExit()
        }
        printFlushed("== client processes stopped: exit codes \(children.map(\.exitCode))")
        guard coordinatorStatus == 0 else {
            printFlushed("coordinator exited with \(coordinatorStatus)")
            throw ExitCode(coordinatorStatus)
        }

        guard let saved = try StateStore(directory: state).load() else { throw ExitCode(FederationExit.state) }
        let model = out + "/model.safetensors"
        try? fm.removeItem(atPath: model)
        try fm.copyItem(atPath: state + "/" + saved.modelFile, toPath: model)
        printFlushed("== aggregated model after \(saved.completedRounds) round(s): \(model)")

        printFlushed("== evaluate on the test set")
        let evaluate = try ChildProcess(
            name: "evaluate", arguments: ["evaluate", "--model", model, "--dataset", datasetPath], echo: true)
        _ = try await evaluate.waitForExit()
        let sample = user ?? dataset.userIDs[0]
        printFlushed("== top-10 recall for user \(sample)")
        let recall = try ChildProcess(
            name: "recall",
            arguments: ["recall", "--model", model, "--dataset", datasetPath, "--user", sample, "--k", "10"],
            echo: true)
        _ = try await recall.waitForExit()
    }
}
