import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import GRPCInProcessTransport
import Foundation
import Testing

@testable import FedRecCoordinator

@Suite struct StateStoreTests {
    /// A fresh path in the temporary directory (nothing created there).
    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent(
            "fedrec-state-\(UInt32.random(in: 0...UInt32.max))"
        ).path
    }

    func state(rounds: Int, completed: Int? = nil) -> PersistedState {
        PersistedState(
            runFingerprint: "fp", completedRounds: completed ?? rounds, nextRound: rounds,
            enrolled: ["user-1 ed25519:00 x25519:00", "rounds \"quoted\""], replayGuard: ReplayGuard(),
            serverOptimizer: ServerOptimizer(configuration: .fedAvg), modelFile: "model-000001.safetensors",
            optimizerFile: "optimizer-000001.safetensors",
            rounds: (0..<rounds).map { r in
                RoundRecord(
                    round: r, attempt: r % 2, participants: 3 + r, examples: 10 * r, meanLoss: 1.0 / Double(r + 3),
                    bytesReceived: 1000 + r, bytesSent: 2000, seconds: 0.1 * Double(r),
                    recallAt20: r % 3 == 0 ? 0.2 : nil,
                    rejected: 0, stragglers: r % 2, epsilon: r % 4 == 0 ? Double(r) / 7 : nil,
                    finishedAt: Double(r) / 3)
            })
    }

    /// `state.json` is byte for byte what JSONEncoder with sorted keys writes, while the records' JSON is reused
    /// across saves, and stays so when the records are replaced (a resumed run) or shrink.
    @Test func savedBytesEqualJSONEncoderAcrossSaves() throws {
        let directory = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = StateStore(directory: directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var other = state(rounds: 2)
        other.rounds[1].meanLoss = 99
        for saved in [state(rounds: 0), state(rounds: 1), state(rounds: 5), state(rounds: 6), other, state(rounds: 3)] {
            try store.save(saved)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: store.statePath))
            #expect(bytes == (try encoder.encode(saved)))
            let loaded = try #require(try store.load())
            #expect(loaded.rounds == saved.rounds && loaded.completedRounds == saved.completedRounds)
            // The records went through the cache (the splice found its place), not the whole-state fallback.
            #expect(store.recordCache.entries.withLock { $0.map(\.record) } == saved.rounds)
        }
    }

    /// The Status RPC's round metrics: everything of a record, except that under DP only the round number is
    /// given: the statistics of the clients' data (training loss, example count, held-out Recall@20) and what
    /// follows the realised Poisson cohort's size (participants, bytes, stragglers, refusals, attempt, seconds).
    @Test func statusWithholdsEveryDataDependentFigureUnderDP() {
        let record = state(rounds: 4).rounds[3]
        let open = CoordinatorService.metrics(record)
        #expect(open.examples == 30 && open.meanLoss == record.meanLoss && open.participants == 6)
        #expect(open.bytesReceived == 1003 && open.round == 3)
        let withheld = CoordinatorService.metrics(record, withholdingUnderDP: true)
        #expect(withheld == Fedrec_V1_RoundMetrics.with { $0.round = 3; $0.recallAt20 = -1 })
    }

    /// A coordinator takes its state folder before touching it: one at a time (flock), never a folder that holds
    /// checkpoint-named files without `state.json` or the marker, and only checkpoint names are ever removed.
    @Test func claimLocksTheFolderAndLeavesForeignFilesAlone() throws {
        let directory = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let mine = ["model-central.safetensors", "optimizer-best.safetensors", "notes.txt"]
        for name in mine { try Data(name.utf8).write(to: URL(fileURLWithPath: directory + "/" + name)) }
        var first = StateStore(directory: directory)
        try first.claim()
        try first.discardUncommitted(try first.load())
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: directory)).isSuperset(of: mine))
        var second = StateStore(directory: directory)
        let busy = try #require(throws: CoordinatorError.self) { try second.claim() }
        #expect(busy.code == .state && busy.message.contains("in use by another coordinator"), "\(busy.message)")
        first.releaseClaim()
        try second.claim()
        second.releaseClaim()

        // Checkpoint-named files without state.json or the marker: refused, and left as they are.
        let foreign = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: foreign) }
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: foreign + "/model-000003.safetensors"))
        var store = StateStore(directory: foreign)
        let refused = try #require(throws: CoordinatorError.self) { try store.claim() }
        #expect(refused.message.contains("no state.json"), "\(refused.message)")
        #expect(FileManager.default.fileExists(atPath: foreign + "/model-000003.safetensors"))

        // A file is no state folder.
        let file = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data().write(to: URL(fileURLWithPath: file))
        var onFile = StateStore(directory: file)
        #expect(throws: CoordinatorError.self) { try onFile.claim() }
        #expect(StateStore.isCheckpointFile("model-000012.safetensors"))
        #expect(!StateStore.isCheckpointFile("model-12.safetensors") && !StateStore.isCheckpointFile("model-best.safetensors"))
    }

    /// On restart, the files of a checkpoint cut short before its commit are removed (under DP they hold an
    /// uncharged release); the committed files, the spares and other files stay.
    @Test func uncommittedCheckpointFilesAreDiscarded() throws {
        let directory = Self.temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = StateStore(directory: directory)
        // A stop during round 4's checkpoint: its files, the spare it was overwriting, the temporary files of a
        // first checkpoint and of state.json. Files that are not the coordinator's stay.
        let names = [
            "model-000003.safetensors", "optimizer-000003.safetensors", "model-000004.safetensors",
            "optimizer-000004.safetensors", ".spare-model.safetensors", ".spare-optimizer.safetensors",
            ".model-000004.safetensors.tmp-12-34", ".optimizer-000004.safetensors.tmp-12-34",
            ".state.json.tmp-12", "notes.txt", ".notes.txt.tmp-12", ".spare-notes",
        ]
        for name in names { try Data(name.utf8).write(to: URL(fileURLWithPath: directory + "/" + name)) }
        var committed = state(rounds: 3)
        committed.modelFile = "model-000003.safetensors"
        committed.optimizerFile = "optimizer-000003.safetensors"
        try store.discardUncommitted(committed)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == [
                ".notes.txt.tmp-12", ".spare-notes", "model-000003.safetensors", "notes.txt",
                "optimizer-000003.safetensors",
            ])
        // Before the first commit (no state.json yet) every checkpoint file is uncommitted.
        try store.discardUncommitted(nil)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == [
                ".notes.txt.tmp-12", ".spare-notes", "notes.txt",
            ])
    }

    /// After a commit, one obsolete model and one obsolete optimizer file become the spares the next checkpoint
    /// overwrites; every other leftover is removed and the current files stay.
    @Test func leftoversBecomeOneSpareOfEachKind() throws {
        let directory = Self.temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = StateStore(directory: directory)
        for name in [
            "model-000001.safetensors", "optimizer-000001.safetensors", "model-000002.safetensors",
            "model-000003.safetensors", "optimizer-000002.safetensors", "notes.txt",
        ] {
            try Data(name.utf8).write(to: URL(fileURLWithPath: directory + "/" + name))
        }
        var current = state(rounds: 3)
        current.modelFile = "model-000003.safetensors"
        current.optimizerFile = "optimizer-000002.safetensors"
        try store.save(current)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(
            names == [
                ".spare-model.safetensors", ".spare-optimizer.safetensors", "model-000003.safetensors", "notes.txt",
                "optimizer-000002.safetensors", "state.json",
            ])
        #expect(try String(contentsOfFile: store.spareOptimizerPath, encoding: .utf8) == "optimizer-000001.safetensors")
        #expect(
            try String(contentsOfFile: directory + "/model-000003.safetensors", encoding: .utf8)
                == "model-000003.safetensors")
    }

    /// A state.json whose values no coordinator writes (edited by hand, or damaged in a way JSON still parses)
    /// is refused naming the field, before anything traps on it or acts on it.
    @Test func implausibleStateValuesAreRefusedByField() throws {
        let directory = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = StateStore(directory: directory)
        try store.save(state(rounds: 3))
        let original = try Data(contentsOf: URL(fileURLWithPath: store.statePath))
        #expect(try store.load() != nil)
        let edits: [(path: [String], value: Any, field: String)] = [
            (["nextRound"], -5, "nextRound"), (["nextRound"], Int.max, "nextRound"),
            (["completedRounds"], -1, "completedRounds"), (["completedRounds"], 1_000_000_000_000, "completedRounds"),
            (["completedRounds"], 2, "rounds"), (["modelFile"], "../../etc/passwd", "modelFile"),
            (["optimizerFile"], "/tmp/x.safetensors", "optimizerFile"),
            (["serverOptimizer", "step"], -1, "serverOptimizer.step"),
            (["serverOptimizer", "configuration"], ["fedAvg": ["learningRate": -1]], "serverOptimizer.configuration"),
            // Values JSON decoding refuses name their field too.
            (["modelFile"], 7, "modelFile"), (["serverOptimizer", "step"], "many", "serverOptimizer.step"),
        ]
        for (path, value, field) in edits {
            var object = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
            if path.count == 1 {
                object[path[0]] = value
            } else {
                var inner = try #require(object[path[0]] as? [String: Any])
                inner[path[1]] = value
                object[path[0]] = inner
            }
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: store.statePath))
            let error = try #require(throws: CoordinatorError.self) { _ = try store.load() }
            #expect(error.code == .state && error.message.contains("field '\(field)'"), "\(path): \(error.message)")
        }
        // A fraction where a whole number belongs: Foundation names no field and calls the JSON invalid; the
        // message says what is wrong instead.
        var object = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
        object["nextRound"] = 2.5
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: store.statePath))
        let fraction = try #require(throws: CoordinatorError.self) { _ = try store.load() }
        #expect(fraction.message.contains("a number does not fit its field"), "\(fraction.message)")
        #expect(!fraction.message.contains("not valid JSON"), "\(fraction.message)")
        try Data("{\"nextRound\": ".utf8).write(to: URL(fileURLWithPath: store.statePath))
        let cut = try #require(throws: CoordinatorError.self) { _ = try store.load() }
        #expect(!cut.message.contains("a number does not fit"), "\(cut.message)")
    }

    /// Once state.json is written it is only ever replaced, so later rounds' checkpoints without it mean it was
    /// removed: the folder is refused, not started over (which would delete them).
    @Test func checkpointsWithoutTheirStateAreRefused() throws {
        let directory = Self.temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let names = [StateStore.markerName, "model-000002.safetensors", "optimizer-000002.safetensors"]
        for name in names { try Data(name.utf8).write(to: URL(fileURLWithPath: directory + "/" + name)) }
        var store = StateStore(directory: directory)
        let error = try #require(throws: CoordinatorError.self) { try store.claim() }
        #expect(error.message.contains("no state.json") && error.message.contains("model-000002"), "\(error.message)")
        store.releaseClaim()
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: directory)).isSuperset(of: names))
        // Round 0's files alone are a first run cut short before its first commit: it starts over.
        for name in names.dropFirst() { try FileManager.default.removeItem(atPath: directory + "/" + name) }
        try Data().write(to: URL(fileURLWithPath: directory + "/model-000000.safetensors"))
        var fresh = StateStore(directory: directory)
        try fresh.claim()
        fresh.releaseClaim()
    }
}

/// What a refusal keeps of ids and text a sender chose: an allow-listed id as it is, any other as a short escaped
/// prefix with its length, and messages cut to `maximumRecordedMessage` with control characters escaped, so a
/// stream of refusals cannot fill memory or the log, nor forge log lines.
@Suite struct RefusalRecordTests {
    @Test func refusalsKeepBoundedEscapedText() throws {
        let fixture = try Fixture(users: 3)
        defer { fixture.remove() }
        let coordinator = try CoordinatorBuilder.build(
            options: fixture.coordinatorOptions(rounds: 1), transport: InProcessTransport().server)
        let listed = Wire.clientID(forUser: fixture.userIDs[0])
        let huge = String(repeating: "x", count: 1 << 20)
        coordinator.core.record(code: "notEnrolled", client: huge, round: 0, message: "client '\(huge)' refused")
        coordinator.core.record(code: "notEnrolled", client: "evil\nINFO forged line", round: 0, message: "a\nb")
        coordinator.core.record(code: "replayed", client: listed, round: 0, message: "ok")
        let records = coordinator.core.rejections.suffix(3)
        let (first, second, third) = (records[records.startIndex], records[records.startIndex + 1], records.last!)
        #expect(first.client == String(repeating: "x", count: 64) + "…(1048576 bytes)")
        #expect(first.message.count < CoordinatorCore.maximumRecordedMessage + 40)
        #expect(second.client == "evil\\x0aINFO forged line" && second.message == "a\\x0ab")
        #expect(third.client == listed)

        // One message per named client is stored at a time.
        #expect(coordinator.core.beginReceiving(from: listed))
        #expect(!coordinator.core.beginReceiving(from: listed))
        coordinator.core.endReceiving(from: listed)
        #expect(coordinator.core.beginReceiving(from: listed))
    }
}
