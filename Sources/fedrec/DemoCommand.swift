import ArgumentParser
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import Foundation
import Synchronization

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

    @Option(parsing: .unconditional, help: "Client processes.") var clients: Int = 4
    @Option(parsing: .unconditional, help: "Rounds.") var rounds: Int = 100
    @Option(parsing: .unconditional, help: "Clients per round.") var cohort: Int = 32
    @Option(parsing: .unconditional, help: "Seconds per round before stragglers are dropped.") var deadline: Double =
        120
    @Option(name: .customLong("server-optimizer"), help: "fedavg, fedadam, fedyogi or adam (bias-corrected).")
    var serverOptimizer: String =
        "fedadam"
    @Option(name: .customLong("server-lr"), parsing: .unconditional, help: "Server learning rate.") var serverLR:
        Double = 0.005
    @Option(
        name: .customLong("server-beta2"), parsing: .unconditional,
        help: "Server second-moment decay (FedAdam, FedYogi, Adam).")
    var serverBeta2: Double = 0.999
    @Option(
        name: .customLong("item-lr"), parsing: .unconditional,
        help: "Learning rate of the central item-tower Adam step.")
    var itemLR: Double = 0.005
    @Option(parsing: .unconditional, help: "Decay of the served moving average of the global model (0: the raw model).")
    var average: Float =
        0.99
    @Option(help: wirePrecisionHelp) var wirePrecision: WirePrecisionArgument = .f32
    @Option(parsing: .unconditional, help: "Embedding dimension d.") var dimension: Int = 64
    @Option(
        name: .customLong("client-lr"), parsing: .unconditional,
        help: "Clients' local SGD learning rate (default: the coordinator's).")
    var clientLR: Float?
    @Option(
        name: .customLong("local-epochs"), parsing: .unconditional,
        help: "Clients' local epochs per round (default: the coordinator's).")
    var localEpochs: Int?
    @Option(
        name: .customLong("local-batch"), parsing: .unconditional,
        help: "Clients' local batch size, 0 for FedSGD (default: the coordinator's).")
    var localBatch: Int?
    @Option(help: "Source data (a MovieLens or generic folder).") var source: String = "demo/data/ml-latest-small"
    @Option(help: "Output folder.") var out: String = "runs/federated-demo"
    @Option(parsing: .unconditional, help: "Port of the coordinator (0: any free port).") var port: Int = 0
    @Option(help: "User for the sample recall (default: the first user).") var user: String?
    @Flag(help: "Start from scratch: remove OUT's data set, keys, allow-list, state and model first.") var fresh = false

    func validate() throws {
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1, got \(clients)") }
        guard average >= 0, average < 1 else { throw ValidationError("--average must lie in [0, 1), got \(average)") }
        guard rounds >= 1, cohort >= 1, deadline > 0 else {
            throw ValidationError("--rounds, --cohort and --deadline must be positive")
        }
        // Checked here, before any import or key, rather than by the coordinator after them.
        guard (0...65_535).contains(port) else { throw ValidationError("--port must lie in 0...65535, got \(port)") }
        guard dimension >= 1 else { throw ValidationError("--dimension must be positive, got \(dimension)") }
        let optimizers = CoordinatorCommand.serverOptimizers
        guard optimizers.contains(serverOptimizer) else {
            throw ValidationError(
                "--server-optimizer must be one of \(optimizers.joined(separator: ", ")), got '\(serverOptimizer)'")
        }
        guard clientLR.map({ $0 > 0 }) ?? true, localEpochs.map({ $0 >= 1 }) ?? true,
            localBatch.map({ $0 >= 0 }) ?? true
        else {
            throw ValidationError(
                "--client-lr must be positive, --local-epochs at least 1 and --local-batch at least 0")
        }
        guard serverLR > 0, itemLR > 0, serverBeta2 > 0, serverBeta2 < 1 else {
            throw ValidationError("--server-lr and --item-lr must be positive and --server-beta2 in (0, 1)")
        }
    }

    func run() async throws {
        let fm = FileManager.default
        let datasetPath = out + "/dataset"
        let keys = out + "/keys"
        let allowList = out + "/allow-list"
        let state = out + "/state"
        let model = out + "/model.safetensors"
        // The source a data set was imported from: a later run with another --source must not quietly reuse it.
        let sourceRecord = out + "/dataset-source"
        // One demo per --out at a time, before anything is removed or written: --fresh would otherwise delete a
        // running demo's folder under its coordinator (which then went on writing into the new one).
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let lock = try Self.lockFolder(out)
        defer { close(lock) }
        if fresh {
            for path in [datasetPath, keys, allowList, state, model, sourceRecord] { try? fm.removeItem(atPath: path) }
        }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let sourcePath = URL(fileURLWithPath: source).standardizedFileURL.path
        let dataset: Dataset
        if fm.fileExists(atPath: datasetPath + "/manifest.json") {
            if let recorded = try? String(contentsOfFile: sourceRecord, encoding: .utf8), recorded != sourcePath {
                throw ValidationError(
                    "\(datasetPath) was imported from \(recorded), not \(sourcePath): pass --fresh to start over from "
                        + "\(source), or another --out")
            }
            do {
                dataset = try Dataset.load(from: datasetPath)
            } catch let error as DataError where error.code == .formatVersionMismatch {
                throw ValidationError("\(error.message): pass --fresh to import \(source) again and start over")
            }
            printFlushed("== data set: \(datasetPath) (\(dataset.userIDs.count) users, \(dataset.itemIDs.count) items)")
        } else {
            printFlushed("== importing \(source) into \(datasetPath)")
            dataset = try DatasetImporter.importDataset(source: source).write(to: datasetPath)
            try sourcePath.write(toFile: sourceRecord, atomically: true, encoding: .utf8)
        }
        let sample = user ?? dataset.userIDs[0]
        guard dataset.userIDs.contains(sample) else {
            throw ValidationError("--user '\(sample)' is not a user of \(datasetPath)")
        }

        if !fm.fileExists(atPath: allowList) {
            printFlushed("== creating keys for the coordinator and \(dataset.userIDs.count) users in \(keys)")
            try fm.createDirectory(
                atPath: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            /// A key already in the folder is kept (a secret key is never overwritten); a missing one is made.
            func identity(named name: String) throws -> Identity {
                let path = keys + "/\(name).key"
                if fm.fileExists(atPath: path) { return try KeyFiles.loadIdentity(path: path) }
                let made = try Identity.generate(name: name)
                _ = try KeyFiles.write(made, directory: keys, overwrite: false)
                return made
            }
            // A key file's temporary copy left by a demo stopped while it wrote keys (a secret, mode 0600):
            // nothing else writes here while this demo holds the folder's lock.
            for name in (try? fm.contentsOfDirectory(atPath: keys)) ?? []
            where name.contains(".key.tmp-") || name.contains(".pub.tmp-") {
                try? fm.removeItem(atPath: keys + "/" + name)
            }
            _ = try identity(named: CoordinatorBuilder.identityName)
            var lines = ""
            for user in dataset.userIDs {
                lines += try identity(named: Wire.clientID(forUser: user)).publicIdentity.line + "\n"
            }
            try lines.write(toFile: allowList, atomically: true, encoding: .utf8)
        }

        let group = DemoChildren()
        do {
            try await train(group: group, datasetPath: datasetPath, keys: keys, allowList: allowList, state: state)
        } catch {
            await group.stopAll()
            throw error
        }

        // A Ctrl-C while the clients were stopping: stop here, not after evaluate and recall.
        if group.wasInterrupted { throw ExitCode(FederationExit.interrupted) }
        guard let saved = try StateStore(directory: state).load() else { throw ExitCode(FederationExit.state) }
        // Copied beside the target and renamed over it: a stop midway leaves the earlier model file whole.
        let partial = model + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: partial)
        try fm.copyItem(atPath: state + "/" + saved.modelFile, toPath: partial)
        guard rename(partial, model) == 0 else {
            let reason = String(cString: strerror(errno))
            try? fm.removeItem(atPath: partial)
            throw ValidationError("cannot move the model into \(model): \(reason)")
        }
        printFlushed("== aggregated model after \(saved.completedRounds) round(s): \(model)")

        printFlushed("== evaluate on the test set")
        try await group.runToEnd(
            ChildProcess(
                name: "evaluate", arguments: ["evaluate", "--model", model, "--dataset", datasetPath], echo: true))
        printFlushed("== top-10 recall for user \(sample)")
        try await group.runToEnd(
            ChildProcess(
                name: "recall",
                arguments: ["recall", "--model", model, "--dataset", datasetPath, "--user", sample, "--k", "10"],
                echo: true))
    }

    /// The local-training options given, as the coordinator's flags.
    private var localTraining: [String] {
        var flags: [String] = []
        if let clientLR { flags += ["--client-lr", "\(clientLR)"] }
        if let localEpochs { flags += ["--local-epochs", "\(localEpochs)"] }
        if let localBatch { flags += ["--local-batch", "\(localBatch)"] }
        return flags
    }

    /// The coordinator and the client processes, to the end of training. A client process that fails while the
    /// coordinator runs stops the demo with the client's exit code and its last output lines; SIGINT or SIGTERM
    /// stops every child (the coordinator saves its state) and the demo exits with the coordinator's code (10).
    private func train(group: DemoChildren, datasetPath: String, keys: String, allowList: String, state: String)
        async throws
    {
        printFlushed("== starting the coordinator and \(clients) client process(es)")
        let coordinator = try group.start(
            name: "coordinator",
            arguments: [
                "coordinator", "--dataset", datasetPath, "--keys", keys, "--allow-list", allowList, "--state", state,
                "--address", "127.0.0.1:\(port)", "--rounds", "\(rounds)", "--cohort", "\(cohort)",
                "--deadline", "\(deadline)", "--server-optimizer", serverOptimizer, "--server-lr", "\(serverLR)",
                "--server-beta2", "\(serverBeta2)", "--item-lr", "\(itemLR)",
                "--average", "\(average)", "--wire-precision", wirePrecision.rawValue,
                "--dimension", "\(dimension)", "--fold", "test", "--eval-every", "0", "--enrol-grace", "120",
                "--log-level", "warning",
            ] + localTraining, echo: true)
        guard let listening = try await coordinator.waitForLine(containing: "listening on ") else {
            let status = try await coordinator.waitForExit()
            // Stopped by Ctrl-C while it was starting (before its own handlers): interrupted, as the README says.
            if group.wasInterrupted {
                printFlushed("== interrupted while the coordinator was starting")
                throw ExitCode(FederationExit.interrupted)
            }
            printFlushed("coordinator: \(coordinator.ending)")
            if status == FederationExit.state {
                // Locked by a coordinator still running (another demo on this --out): --fresh would delete its
                // files under it, so that case gets its own advice.
                if coordinator.output.contains(where: { $0.contains("in use by another coordinator") }) {
                    printFlushed("(another demo or coordinator is using \(state): stop it first, or use another --out)")
                } else {
                    printFlushed("(the state in \(state) is another run's or unreadable: pass --fresh to start over)")
                }
            }
            throw ExitCode(status)
        }
        let address = String(listening.split(separator: " ").last ?? "")
        var children: [ChildProcess] = []
        for index in 0..<clients {
            children.append(
                try group.start(
                    name: "client \(index + 1)",
                    arguments: [
                        "client", "--coordinator", address, "--dataset", datasetPath, "--keys", keys,
                        "--shard", "\(index)/\(clients)", "--log-level", "warning",
                    ], echo: false))
        }
        // Since when the coordinator has been ending (told to stop, or past its last round and closing its calls).
        var endingSince: ContinuousClock.Instant? = nil
        var killed = Set<Int32>()
        while coordinator.isRunning {
            if !group.wasInterrupted, let failed = children.first(where: { !$0.isRunning && $0.exitCode != 0 }) {
                printFlushed("== \(failed.name) failed (\(failed.ending)); its last output:")
                for line in failed.output.suffix(20) { printFlushed("[\(failed.name)] \(line)") }
                await group.stopAll()
                throw ExitCode(failed.exitCode)
            }
            // An ending coordinator waits for its connections to close; a client process that neither answers nor
            // exits (stopped, hung) would hold it, and so the demo, forever: 10 s on, such a client is killed (the
            // coordinator has saved its state by then).
            if endingSince == nil,
                group.wasInterrupted
                    || coordinator.output.suffix(5).contains(where: {
                        $0.contains("calls still open after the last round")
                    })
            {
                endingSince = .now
            }
            if let endingSince, ContinuousClock.now - endingSince > .seconds(10) {
                for child in children where child.isRunning && killed.insert(child.pid).inserted {
                    printFlushed("== \(child.name) does not stop: killing it")
                    child.signal(SIGKILL)
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let coordinatorStatus = coordinator.exitCode
        // Clients stop by themselves once the coordinator says training is over; those still running after 5 s
        // in all (not each) are told to stop.
        var waited = 0
        while children.contains(where: \.isRunning) && waited < 100 {
            try await Task.sleep(for: .milliseconds(50))
            waited += 1
        }
        for child in children {
            child.signal(SIGTERM)
            _ = try await child.waitForExit(killingAfter: .seconds(10))
        }
        printFlushed("== client processes stopped: \(children.map(\.ending).joined(separator: ", "))")
        guard coordinatorStatus == 0 else {
            printFlushed("coordinator: \(coordinator.ending)")
            if coordinatorStatus == FederationExit.state {
                printFlushed("(the state in \(state) is another run's or unreadable: pass --fresh to start over)")
            }
            throw ExitCode(coordinatorStatus)
        }
    }
}

/// The demo's child processes. Foundation starts each child in its own process group, so a terminal's Ctrl-C
/// reaches only the demo: SIGINT and SIGTERM are caught here and passed on to every running child as SIGTERM
/// (if the demo dies outright, each child notices within a second and stops itself: `ChildProcess.stopWithParent`).
final class DemoChildren: @unchecked Sendable {
    private let children = Mutex<[ChildProcess]>([])
    private let interrupted = Mutex(false)
    private var sources: [any DispatchSourceSignal] = []

    init() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                let again = interrupted.withLock { before in
                    defer { before = true }
                    return before
                }
                // A second Ctrl-C does not wait for children that do not stop (a stopped or hung process).
                for child in children.withLock({ $0 }) { child.signal(again ? SIGKILL : SIGTERM) }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Whether SIGINT or SIGTERM has arrived (a second one SIGKILLs every child still running).
    var wasInterrupted: Bool { interrupted.withLock { $0 } }

    func start(name: String, arguments: [String], echo: Bool) throws -> ChildProcess {
        let child = try ChildProcess(name: name, arguments: arguments, echo: echo)
        children.withLock { $0.append(child) }
        if wasInterrupted { child.signal(SIGTERM) }
        return child
    }

    /// Starts `child` and runs it to its end; a failure, or a signal before it started, ends the demo.
    func runToEnd(_ child: @autoclosure () throws -> ChildProcess) async throws {
        if wasInterrupted { throw ExitCode(FederationExit.interrupted) }
        let started = try child()
        children.withLock { $0.append(started) }
        let status = try await started.waitForExit()
        guard status == 0 else {
            if wasInterrupted {
                printFlushed("== interrupted during \(started.name)")
                throw ExitCode(FederationExit.interrupted)
            }
            printFlushed("== \(started.name) failed (\(started.ending))")
            throw ExitCode(status)
        }
    }

    /// SIGTERM to every running child, then waits for all of them (SIGKILL after 10 s).
    func stopAll() async {
        let all = children.withLock { $0 }
        for child in all { child.signal(SIGTERM) }
        for child in all { _ = try? await child.waitForExit(killingAfter: .seconds(10)) }
    }
}

extension DemoCommand {
    /// Takes an exclusive `flock` on `folder/.demo.lock`; the descriptor holds it until closed (or the process
    /// ends). Throws exit code 6 when another demo holds it.
    static func lockFolder(_ folder: String) throws -> Int32 {
        let path = folder + "/.demo.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            printFlushed("cannot open \(path) (errno \(errno)): is \(folder) writable?")
            throw ExitCode(FederationExit.state)
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let error = errno
            close(descriptor)
            guard error == EWOULDBLOCK else { return -1 }  // no flock on this file system: go on unlocked
            printFlushed("another demo is running on \(folder): stop it first, or use another --out")
            throw ExitCode(FederationExit.state)
        }
        return descriptor
    }
}
