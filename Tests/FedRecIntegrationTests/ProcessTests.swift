import FedRecCoordinator
import FedRecProtocol
import Foundation
import Synchronization
import Testing

/// A `fedrec` child process with its merged stdout/stderr collected line by line.
final class Child: @unchecked Sendable {
    private let process = Process()
    private let buffer = Mutex<(lines: [String], partial: [UInt8])>(([], []))

    /// The `fedrec` binary beside the test bundle (swift build puts both in the same folder).
    static let executable: URL = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ].compactMap { $0 }.map { $0.appendingPathComponent("fedrec") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }()

    init(_ arguments: [String]) throws {
        process.executableURL = Self.executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            self.buffer.withLock { b in
                b.partial += Array(data)
                while let newline = b.partial.firstIndex(of: UInt8(ascii: "\n")) {
                    b.lines.append(String(decoding: b.partial[..<newline], as: UTF8.self))
                    b.partial.removeSubrange(...newline)
                }
            }
        }
        try process.run()
    }

    var lines: [String] { buffer.withLock { $0.lines } }
    var pid: Int32 { process.processIdentifier }

    func line(containing text: String) async throws -> String? {
        while true {
            if let line = lines.first(where: { $0.contains(text) }) { return line }
            if !process.isRunning {
                try await Task.sleep(for: .milliseconds(200))
                return lines.first { $0.contains(text) }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func exit() async throws -> Int32 {
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }

    func kill(_ signal: Int32) { if process.isRunning { Foundation.kill(process.processIdentifier, signal) } }
}

@Suite("Real processes over loopback HTTP/2", .serialized)
struct ProcessTests {
    func coordinatorArguments(_ fixture: Fixture, rounds: Int, address: String, deadline: Int) -> [String] {
        [
            "coordinator", "--dataset", fixture.dataset, "--keys", fixture.keys, "--allow-list", fixture.allowList,
            "--state", fixture.state, "--address", address, "--rounds", "\(rounds)", "--fraction", "1",
            "--min-clients", "1", "--deadline", "\(deadline)", "--dimension", "8", "--hidden", "8",
            "--batch-size", "8", "--eval-every", "1", "--enrol-grace", "120",
        ]
    }

    func clientArguments(_ fixture: Fixture, address: String, _ selection: [String]) -> [String] {
        ["client", "--coordinator", address, "--dataset", fixture.dataset, "--keys", fixture.keys] + selection
    }

    /// The address a coordinator child prints once it listens (`listening on HOST:PORT`).
    static func address(of coordinator: Child) async throws -> String {
        let listening = try #require(try await coordinator.line(containing: "listening on "))
        return String(listening.split(separator: " ").last!)
    }

    static func rounds(_ fixture: Fixture) throws -> [RoundRecord] {
        try #require(try StateStore(directory: fixture.state).load()).rounds
    }

    @Test("a client process killed mid-round (SIGKILL): the round closes with the others at the deadline")
    func killedClient() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        let coordinator = try Child(coordinatorArguments(fixture, rounds: 3, address: "127.0.0.1:0", deadline: 4))
        defer { coordinator.kill(SIGKILL) }
        let address = try await ProcessTests.address(of: coordinator)
        let steady = try Child(clientArguments(fixture, address: address, ["--shard", "0/2"]))
        let victim = try Child(clientArguments(fixture, address: address, ["--shard", "1/2", "--hang-in-round", "1"]))
        defer { steady.kill(SIGKILL) }
        _ = try #require(try await victim.line(containing: "hanging in round 1"))
        victim.kill(SIGKILL)
        #expect(try await coordinator.exit() == 0)
        #expect(try await steady.exit() == 0)
        let records = try Self.rounds(fixture)
        #expect(records.map(\.round) == [0, 1, 2])
        // Every cohort member either answered or straggled; the victim's four clients straggle from round 1 on,
        // and the round still closes with the other process's updates.
        #expect(records.allSatisfy { $0.participants + $0.stragglers == 8 && $0.participants >= 1 })
        #expect(records[1].stragglers >= 4 && records[2].stragglers >= 4)
        #expect(records.allSatisfy { $0.recallAt20 != nil })

        // `fedrec status` prints the same rounds.
        let status = try Child(["status", "--state", fixture.state])
        #expect(try await status.exit() == 0)
        #expect(status.lines.filter { $0.hasPrefix("round ") }.count == 3)
    }

    /// A coordinator and two client processes, the second hanging in round 1. Round 1 stays open until its 20 s
    /// deadline, so once this returns the first (`steady`) process's round-1 upload, which asks for round 2, is
    /// held by the coordinator. The caller kills the three; they are killed here if setting up fails.
    func heldUpload(_ fixture: Fixture, steadyOptions: [String] = []) async throws
        -> (coordinator: Child, steady: Child, hanging: Child)
    {
        let coordinator = try Child(coordinatorArguments(fixture, rounds: 3, address: "127.0.0.1:0", deadline: 20))
        var started = [coordinator]
        do {
            let address = try await ProcessTests.address(of: coordinator)
            let steady = try Child(clientArguments(fixture, address: address, ["--shard", "0/2"] + steadyOptions))
            started.append(steady)
            let hanging = try Child(
                clientArguments(fixture, address: address, ["--shard", "1/2", "--hang-in-round", "1"]))
            started.append(hanging)
            _ = try #require(try await steady.line(containing: "round 1: training"))
            _ = try #require(try await hanging.line(containing: "hanging in round 1"))
            try await Task.sleep(for: .milliseconds(500))
            return (coordinator, steady, hanging)
        } catch {
            started.forEach { $0.kill(SIGKILL) }
            throw error
        }
    }

    @Test("a client process stopped by SIGINT while its upload waits for the next round says it was interrupted")
    func interruptedWhileHeld() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        let (coordinator, steady, hanging) = try await heldUpload(fixture)
        defer { [coordinator, steady, hanging].forEach { $0.kill(SIGKILL) } }
        steady.kill(SIGINT)
        #expect(try await steady.exit() == 10)  // interrupted
        #expect(steady.lines.contains { $0.contains("stopped by a signal before training finished") })
        #expect(!steady.lines.contains { $0.contains("refused") || $0.contains("upload failed") }, "\(steady.lines)")
    }

    @Test("a coordinator stopped while it holds a client's upload answer: the client says the call broke off")
    func coordinatorStoppedWhileHeld() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        let (coordinator, steady, hanging) = try await heldUpload(fixture, steadyOptions: ["--connect-timeout", "1"])
        defer { [coordinator, steady, hanging].forEach { $0.kill(SIGKILL) } }
        coordinator.kill(SIGINT)
        _ = try await coordinator.exit()
        #expect(try await steady.exit() == 5)  // unreachable once the coordinator is gone
        #expect(!steady.lines.contains { $0.contains("refused") }, "\(steady.lines)")
    }

    @Test("a coordinator killed between rounds, restarted with the same command, resumes to the same round count")
    func killedCoordinator() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        let first = try Child(coordinatorArguments(fixture, rounds: 4, address: "127.0.0.1:0", deadline: 30))
        defer { first.kill(SIGKILL) }
        let address = try await ProcessTests.address(of: first)
        let client = try Child(clientArguments(fixture, address: address, ["--clients", "100"]))
        defer { client.kill(SIGKILL) }
        _ = try #require(try await first.line(containing: "round    1  participants"))
        first.kill(SIGKILL)
        _ = try await first.exit()
        let completedBefore = try Self.rounds(fixture).count
        #expect(completedBefore >= 2)

        let second = try Child(coordinatorArguments(fixture, rounds: 4, address: address, deadline: 30))
        defer { second.kill(SIGKILL) }
        #expect(try await second.exit() == 0)
        #expect(try await client.exit() == 0)
        #expect(second.lines.contains { $0.contains("resuming after round \(completedBefore)") })
        #expect(try Self.rounds(fixture).map(\.round) == [0, 1, 2, 3])
    }

    @Test("exit codes say what happened: bad options, bad keys, no state, refused enrolment")
    func exitCodes() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        // Option validation (ArgumentParser's usage exit code).
        let both = try Child(clientArguments(fixture, address: "127.0.0.1:1", ["--clients", "2", "--shard", "0/1"]))
        #expect(try await both.exit() == 64)
        // Missing key folder: setup error.
        var arguments = coordinatorArguments(fixture, rounds: 1, address: "127.0.0.1:0", deadline: 5)
        arguments[arguments.firstIndex(of: fixture.keys)!] = fixture.root + "/no-such-keys"
        let noKeys = try Child(arguments)
        #expect(try await noKeys.exit() == 7)
        // No state to report.
        let status = try Child(["status", "--state", fixture.root + "/no-state"])
        #expect(try await status.exit() == 6)

        // A client whose identities are not on the allow-list is refused (exit 4); the coordinator goes on.
        let listed = fixture.userIDs.prefix(3).map { Wire.clientID(forUser: $0) }
        let lines = try String(contentsOfFile: fixture.allowList, encoding: .utf8).split(separator: "\n")
            .filter { line in listed.contains { line.hasPrefix($0 + " ") } }
        try (lines.joined(separator: "\n") + "\n").write(toFile: fixture.allowList, atomically: true, encoding: .utf8)
        let coordinator = try Child(coordinatorArguments(fixture, rounds: 1, address: "127.0.0.1:0", deadline: 5))
        defer { coordinator.kill(SIGKILL) }
        let address = try await ProcessTests.address(of: coordinator)
        let refused = try Child(
            clientArguments(fixture, address: address, ["--users", fixture.userIDs.suffix(3).joined(separator: ",")]))
        #expect(try await refused.exit() == 4)
        let accepted = try Child(
            clientArguments(fixture, address: address, ["--users", fixture.userIDs.prefix(3).joined(separator: ",")]))
        #expect(try await accepted.exit() == 0)
        #expect(try await coordinator.exit() == 0)
    }
}
