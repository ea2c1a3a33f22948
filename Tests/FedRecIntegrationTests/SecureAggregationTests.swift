import FedRecClient
import FedRecCoordinator
import FedRecData
import FedRecEvaluation
import FedRecFederation
import FedRecModel
import FedRecProtocol
import FedRecTensor
import Foundation
import GRPCInProcessTransport
import Testing

/// What round 0 of a FedAvg (server learning rate 1) run must produce from the given survivors, recomputed here
/// from the same data, initial model and seeds the processes use: the check that secure aggregation returned
/// the survivors' exact weighted mean (within quantisation error) and nothing else.
enum ExpectedRound {
    /// `clipRange`: secure aggregation sums each element clamped to [-c, c] (its quantisation range). Clients
    /// train from the model as `o.wirePrecision` delivers it; plain updates (no `clipRange`) travel in it too.
    static func userTower(
        fixture: Fixture, options o: CoordinatorOptions, survivors: Set<String>, clipRange: Float? = nil
    ) throws -> [Float] {
        let data = try Dataset.load(from: fixture.dataset)
        var central = CentralTrainingConfiguration()
        central.dimension = o.dimension
        central.hiddenWidth = o.hiddenWidth
        central.tau = o.tau
        central.useUserFeatures = o.useUserFeatures
        central.useItemFeatures = o.useItemFeatures
        let configuration = central.modelConfiguration(for: data)
        let model = TwoTowerModel(configuration: configuration, seed: o.seed)
        var items = model.itemTower.embeddings(itemFeatures: CentralTraining.itemFeatures(of: data, for: configuration))
        o.wirePrecision.round(&items.storage)
        let sentTower = UserTower(
            configuration: configuration, flattened: o.wirePrecision.rounded(model.userTower.flattened()))
        var trainer = ClientTrainer(configuration: o.clientTraining)
        let roundSeed = o.seed &* 0x9E37_79B9_7F4A_7C15
        let layout = ParameterLayout.userTower(configuration)
        var aggregator = WeightedAggregator(
            deltaCount: layout.count, itemRows: configuration.itemCount, dimension: configuration.dimension)
        for user in data.split.fold(o.fold)
        where survivors.contains(Wire.clientID(forUser: data.userIDs[user.userIndex])) {
            var update = trainer.train(
                globalUserTower: sentTower, itemEmbeddings: items, user: user,
                userFeatures: configuration.userFeatureCount == 0 ? nil : data.userFeatures,
                seed: SplitMix64.stream(seed: roundSeed, index: UInt64(user.userIndex)).state)
            if let c = clipRange {
                update.userTowerDelta = update.userTowerDelta.map { min(max($0, -c), c) }
            } else {
                update = update.rounded(to: o.wirePrecision)
            }
            aggregator.add(update, from: "\(user.userIndex)")
        }
        let mean = try #require(aggregator.result()).meanDelta
        var tower = model.userTower.flattened()
        FlatVector.add(mean, to: &tower)
        return tower
    }

    /// The user tower of the model saved after the first round.
    static func savedUserTower(_ fixture: Fixture) throws -> [Float] {
        let file = try ModelFile.read(from: fixture.state + "/" + StateStore.modelFileName(completedRounds: 1))
        return file.model.userTower.flattened()
    }

    static func expectClose(_ actual: [Float], _ expected: [Float], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(actual.count == expected.count, sourceLocation: sourceLocation)
        let scale = expected.map { abs($0) }.max() ?? 1
        let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        #expect(
            worst <= 1e-4 * scale + 1e-6, "largest difference \(worst) at scale \(scale)",
            sourceLocation: sourceLocation)
    }
}

@Suite("Secure aggregation end to end")
struct SecureAggregationTests {
    func options(_ fixture: Fixture, rounds: Int) -> CoordinatorOptions {
        var o = fixture.coordinatorOptions(rounds: rounds)
        o.serverOptimizer = .fedAvg(learningRate: 1)
        o.minimumClients = 2
        o.evaluationInterval = 0
        var secure = SecureAggregationOptions()
        secure.stageDeadline = .seconds(20)
        // The tiny fixture's updates have elements near 10 (tau 0.1): a range that clips nothing, so the secure
        // aggregate must equal plain FedAvg.
        secure.clipRange = 100
        o.secureAggregation = secure
        return o
    }

    @Test("in-process: every secure round completes with every client")
    func inProcess() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        let (coordinator, _) = try await fixture.trainInProcess(options(fixture, rounds: 2))
        let records = coordinator.core.records
        #expect(records.map(\.round) == [0, 1])
        #expect(records.allSatisfy { $0.participants == fixture.userIDs.count })
        #expect(coordinator.core.rejections.isEmpty)
        // With no one missing, each stage's inputs came back in the answer to the stage's upload: 3 stages a
        // round, no GetStage poll.
        let deliveries = coordinator.core.stageDeliveryCounts
        #expect(deliveries.inline == 3 * 2 && deliveries.polled == 0, "\(deliveries)")
        // Round 1's assignment came in the answer to round 0's unmask upload (a GetRound poll only if the
        // coordinator took longer than the poll's wait to open it).
        let rounds = coordinator.core.roundDeliveryCounts
        #expect(rounds.inline >= 1 && rounds.inline + rounds.polled == 2, "\(rounds)")
    }

    /// Plain and secure, float32 and bfloat16 on the wire: the one-round checkpoint's user tower is the initial
    /// one plus the clients' FedAvg (of updates trained from the model as delivered, and sent as rounded).
    @Test(
        "round 0 moves the user tower by exactly the clients' FedAvg",
        arguments: [false, true], [WirePrecision.float32, .bfloat16])
    func exactMean(secure: Bool, precision: WirePrecision) async throws {
        let single = try Fixture(users: 8)
        defer { single.remove() }
        var o1 = options(single, rounds: 1)
        if !secure { o1.secureAggregation = nil }
        o1.wirePrecision = precision
        try await single.trainInProcess(o1)
        ExpectedRound.expectClose(
            try ExpectedRound.savedUserTower(single),
            try ExpectedRound.userTower(
                fixture: single, options: o1, survivors: Set(single.userIDs.map(Wire.clientID(forUser:))),
                clipRange: secure ? 100 : nil))
    }

    /// Adaptive clipping through the processes, plain and secure: clients clip to the round's norm (sent in the
    /// round's training configuration) and report whether they had to, in their plain update or as one more
    /// element of their masked input; the coordinator moves the norm by the noised count. From a norm far above
    /// every update, all 8 clients report unclipped each round, so it shrinks by exp(-0.2 (8 + noise) / 8 + 0.1)
    /// with count noise 0.3: about exp(-0.1) a round. The state keeps the next round's norm.
    @Test("DP refuses a cohort that is not Poisson at the accountant's sampling rate, and a minimum of clients")
    func privacyNeedsTheLedgersSamplingRate() throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        var o = options(fixture, rounds: 1)
        o.privacy = DifferentialPrivacyConfiguration(
            clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.5, numberOfUsers: fixture.userIDs.count)
        for cohort: CohortSelection in [.poisson(rate: 1), .count(4)] {
            o.cohort = cohort
            let error = try #require(throws: CoordinatorError.self) {
                _ = try CoordinatorBuilder.build(options: o, transport: InProcessTransport().server)
            }
            #expect(error.code == .setup && error.message.contains("sampling rate q = 0.5"), "\(error.message)")
        }
        o.cohort = .poisson(rate: 0.5)
        // A DP round closes with whatever arrived: a minimum it would retry for is refused.
        o.minimumClients = 2
        let minimum = try #require(throws: CoordinatorError.self) {
            _ = try CoordinatorBuilder.build(options: o, transport: InProcessTransport().server)
        }
        #expect(minimum.code == .setup && minimum.message.contains("--min-clients 2"), "\(minimum.message)")
        o.minimumClients = 1
        _ = try CoordinatorBuilder.build(options: o, transport: InProcessTransport().server)
    }

    @Test("adaptive clipping moves the clip norm round by round, plain and secure", arguments: [false, true])
    func adaptiveClipping(secure: Bool) async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        var o = options(fixture, rounds: 3)
        if !secure { o.secureAggregation = nil }
        // A negligible server step: the noise (z_Delta times a clip norm of 1000) must not wreck the model the
        // next rounds' update norms come from.
        o.serverOptimizer = .fedAvg(learningRate: 1e-6)
        o.cohort = .poisson(rate: 1)
        var privacy = DifferentialPrivacyConfiguration(
            clipNorm: 1000, noiseMultiplier: 0.5, samplingRate: 1, numberOfUsers: fixture.userIDs.count)
        privacy.adaptiveClipping = .init(targetQuantile: 0.5, learningRate: 0.2, countNoiseStandardDeviation: 0.3)
        o.privacy = privacy
        o.minimumClients = 1  // a DP round closes with whatever arrived
        let (coordinator, _) = try await fixture.trainInProcess(o)
        let records = coordinator.core.records
        #expect(records.count == 3 && records.allSatisfy { $0.participants == 8 }, "\(records)")
        #expect(coordinator.core.rejections.isEmpty)
        let saved = try #require(try StateStore(directory: fixture.state).load()?.adaptiveClipping)
        let norms = records.compactMap(\.clipNorm) + [saved.clipNorm]
        #expect(norms.count == 4 && norms.first == 1000 && saved.updatesApplied == 3, "\(norms)")
        // Five standard deviations of the count noise: 0.2 * 5 * 0.3 / 8.
        for (before, after) in zip(norms, norms.dropFirst()) {
            #expect(abs(log(after / before) + 0.1) <= 0.04, "\(norms)")
        }
    }
}

@Suite("Secure aggregation with real processes: 30% SIGKILLed at each stage", .serialized)
struct SecureAggregationDropoutTests {
    /// Ten client processes of one user each; three SIGKILL themselves (none for stage 0) before sending stage `stage`'s
    /// messages. Killed before the masked input (stages 1-3), their updates are out and their masks are removed;
    /// killed before unmasking (stage 4), their masked inputs are already in and the survivors' shares unmask
    /// them. Either way the round must close with exactly the FedAvg of the inputs it reports.
    @Test("the round completes with the survivors' exact sum", arguments: [-1, 0, 1, 2, 3, 4])
    func killedAtStage(stage: Int) async throws {
        let fixture = try Fixture(users: 10)
        defer { fixture.remove() }
        let processes = ProcessTests()
        var arguments = processes.coordinatorArguments(fixture, rounds: 1, address: "127.0.0.1:0", deadline: 60)
        arguments += [
            "--stage-deadline", "8", "--server-optimizer", "fedavg", "--server-lr", "1",
            "--eval-every", "0", "--min-clients", "2", "--secagg-clip-range", "100",
            // The saved model is the raw aggregate, not the moving average the CLI serves by default.
            "--average", "0",
        ]
        if stage >= 0 { arguments.append("--secure-aggregation") }
        let coordinator = try Child(arguments)
        defer { coordinator.kill(SIGKILL) }
        let address = try await ProcessTests.address(of: coordinator)
        var children: [Child] = []
        for (index, user) in fixture.userIDs.enumerated() {
            var selection = ["--users", user]
            if index < 3, stage > 0 { selection += ["--kill-at-stage", "\(stage)"] }
            children.append(try Child(processes.clientArguments(fixture, address: address, selection)))
        }
        defer { for child in children { child.kill(SIGKILL) } }
        #expect(try await coordinator.exit() == 0, "\(coordinator.lines.suffix(15).joined(separator: "\n"))")
        for child in children[3...] { #expect(try await child.exit() == 0) }
        for child in children[..<3] { #expect((try await child.exit() == 0) == (stage <= 0)) }
        let records = try ProcessTests.rounds(fixture)
        #expect(records.count == 1)
        let killed = Set(fixture.userIDs.prefix(3).map(Wire.clientID(forUser:)))
        let everyone = Set(fixture.userIDs.map(Wire.clientID(forUser:)))
        let survivors = stage <= 0 || stage == 4 ? everyone : everyone.subtracting(killed)
        #expect(records.first?.participants == survivors.count)

        // The same options the command line set, for the recomputation.
        var o = fixture.coordinatorOptions(rounds: 1)
        o.clientTraining = ClientTrainingConfiguration(
            localEpochs: 1, batchSize: 8, optimizer: .sgd(learningRate: 1))
        ExpectedRound.expectClose(
            try ExpectedRound.savedUserTower(fixture),
            try ExpectedRound.userTower(
                fixture: fixture, options: o, survivors: survivors, clipRange: stage >= 0 ? 100 : nil))
    }
}
