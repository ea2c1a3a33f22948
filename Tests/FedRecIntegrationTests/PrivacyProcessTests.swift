import FedRecCoordinator
import FedRecData
import FedRecEvaluation
import FedRecModel
import FedRecProtocol
import Foundation
import Testing

@Suite("Differential privacy with real processes", .serialized)
struct PrivacyProcessTests {
    /// Runs a coordinator for `rounds` rounds with `options` and one client process hosting every user to the
    /// end, checks both exited 0, and returns the coordinator (its output lines).
    func train(_ fixture: Fixture, _ options: [String], rounds: Int = 3) async throws -> Child {
        let processes = ProcessTests()
        let coordinator = try Child(
            processes.coordinatorArguments(fixture, rounds: rounds, address: "127.0.0.1:0", deadline: 10) + options)
        defer { coordinator.kill(SIGKILL) }
        let address = try await ProcessTests.address(of: coordinator)
        let client = try Child(processes.clientArguments(fixture, address: address, ["--clients", "100"]))
        defer { client.kill(SIGKILL) }
        #expect(try await coordinator.exit() == 0, "\(coordinator.lines.suffix(10).joined(separator: "\n"))")
        #expect(try await client.exit() == 0)
        return coordinator
    }

    @Test("a run that would exceed --target-epsilon is refused before it starts (exit code 8)")
    func budgetRefused() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        let processes = ProcessTests()
        let arguments =
            processes.coordinatorArguments(fixture, rounds: 50, address: "127.0.0.1:0", deadline: 5) + [
                "--noise-multiplier", "2", "--clip-norm", "1", "--target-epsilon", "3",
            ]
        let coordinator = try Child(arguments)
        defer { coordinator.kill(SIGKILL) }
        #expect(try await coordinator.exit() == 8)
        #expect(coordinator.lines.contains { $0.contains("refusing to start") && $0.contains("epsilon") })
        #expect(coordinator.lines.allSatisfy { !$0.contains("listening on") })
        #expect(!FileManager.default.fileExists(atPath: fixture.state + "/state.json"))
    }

    @Test("a budget one round already spends is refused with exit code 8, with adaptive clipping too")
    func singleRoundBudgetRefused() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        let processes = ProcessTests()
        for extra in [[], ["--adaptive-clipping", "--count-noise", "2"]] {
            let coordinator = try Child(
                processes.coordinatorArguments(fixture, rounds: 5, address: "127.0.0.1:0", deadline: 5) + [
                    "--noise-multiplier", "2", "--clip-norm", "1", "--target-epsilon", "0.001",
                ] + extra)
            defer { coordinator.kill(SIGKILL) }
            #expect(try await coordinator.exit() == 8, "\(extra): \(coordinator.lines.suffix(3))")
            #expect(coordinator.lines.contains { $0.contains("spent by a single round") }, "\(coordinator.lines)")
        }
    }

    @Test("DP-FedAvg rounds print and store a growing epsilon; status shows it")
    func epsilonPerRound() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        let dpOptions = ["--noise-multiplier", "1", "--clip-norm", "1", "--target-epsilon", "100", "--fraction", "0.5"]
        let coordinator = try await train(fixture, dpOptions)
        let records = try ProcessTests.rounds(fixture)
        #expect(records.count == 3)
        let epsilons = records.compactMap(\.epsilon)
        #expect(epsilons.count == 3 && zip(epsilons, epsilons.dropFirst()).allSatisfy { $0 < $1 })
        #expect(coordinator.lines.filter { $0.hasPrefix("round ") && $0.contains("epsilon") }.count == 3)
        let status = try Child(["status", "--state", fixture.state])
        #expect(try await status.exit() == 0)
        #expect(status.lines.filter { $0.contains("epsilon") }.count == 3)

        // The checkpointed model is the DP release: no training popularity, only the catalogue's checksum, and
        // recall still takes it with its data set.
        let saved = try #require(try StateStore(directory: fixture.state).load())
        let modelPath = fixture.state + "/" + saved.modelFile
        let model = try ModelFile.read(from: modelPath)
        #expect(model.itemPopularity == nil)
        #expect(model.extraMetadata[SavedModel.MetadataKey.datasetChecksumScope] == SavedModel.catalogueChecksumScope)
        let dataset = try Dataset.load(from: fixture.dataset)
        #expect(model.datasetChecksum == dataset.catalogueChecksum && model.datasetChecksum != dataset.checksum)
        let recall = try Child([
            "recall", "--model", modelPath, "--user", fixture.userIDs[0], "--dataset", fixture.dataset, "--k", "3",
        ])
        #expect(try await recall.exit() == 0, "\(recall.lines.joined(separator: "\n"))")

        // A restart reads that file back in the data set's item order and goes on from round 3.
        _ = try await train(fixture, dpOptions, rounds: 4)
        let resumed = try ProcessTests.rounds(fixture)
        #expect(resumed.count == 4 && resumed.prefix(3).map(\.epsilon) == records.map(\.epsilon))

        // A restart the budget refuses still removes a checkpoint cut short before its commit (a release no
        // accountant step charged).
        let uncommitted = fixture.state + "/" + StateStore.modelFileName(completedRounds: 5)
        try Data("cut short".utf8).write(to: URL(fileURLWithPath: uncommitted))
        let refused = try Child(
            ProcessTests().coordinatorArguments(fixture, rounds: 1_000_000, address: "127.0.0.1:0", deadline: 10)
                + dpOptions)
        defer { refused.kill(SIGKILL) }
        #expect(try await refused.exit() == 8, "\(refused.lines.suffix(3))")
        #expect(!FileManager.default.fileExists(atPath: uncommitted), "\(refused.lines)")
        #expect(try ProcessTests.rounds(fixture).count == 4)
    }

    @Test("adaptive clipping from the command line: each round prints and stores the clip norm it used")
    func adaptiveClipNormPerRound() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        let coordinator = try await train(
            fixture,
            [
                "--noise-multiplier", "1", "--clip-norm", "1", "--fraction", "0.5", "--adaptive-clipping",
                "--count-noise", "1",
            ])
        let norms = try ProcessTests.rounds(fixture).compactMap(\.clipNorm)
        #expect(norms.count == 3 && norms.first == 1 && norms.allSatisfy { $0 > 0 && $0.isFinite }, "\(norms)")
        #expect(coordinator.lines.filter { $0.hasPrefix("round ") && $0.contains("clip norm") }.count == 3)
        let state = try #require(try StateStore(directory: fixture.state).load())
        #expect(state.adaptiveClipping?.updatesApplied == 3)
    }
}
