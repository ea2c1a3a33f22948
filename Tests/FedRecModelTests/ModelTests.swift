import FedRecData
import FedRecModel
import FedRecTensor
import FedRecTestSupport
import Testing

/// A small problem with item and user features.
struct Fixture {
    let configuration: TwoTowerConfiguration
    let itemFeatures: SparseMatrix
    let userFeatures: SparseMatrix
    let batch: TrainingBatch

    init(tau: Float = 0.2, itemFeatureCount: Int = 5, userFeatureCount: Int = 4, seed: UInt64 = 3) {
        var rng = SplitMix64(seed: seed)
        configuration = TwoTowerConfiguration(
            dimension: 6, hiddenWidth: 8, tau: tau, itemCount: 12, itemFeatureCount: itemFeatureCount,
            userFeatureCount: userFeatureCount, maxHistory: 4, sampledSoftmaxThreshold: 5, sampledNegatives: 6)
        itemFeatures = randomSparse(rows: 12, columns: itemFeatureCount, perRow: 2, &rng)
        userFeatures = randomSparse(rows: 3, columns: userFeatureCount, perRow: 2, &rng)
        var batch = TrainingBatch()
        let users: [[Int32]] = [[0, 5, 7, 2, 9, 11], [3, 4], [8]]
        for (u, known) in users.enumerated() {
            for position in known.indices { batch.append(known: known, position: position, userRow: u, maxHistory: 4) }
        }
        self.batch = batch
    }
}

extension TwoTowerModel {
    func replacing(_ name: String, with values: [Float]) -> TwoTowerModel {
        var parameters: [String: Matrix] = [:]
        for p in namedParameters {
            parameters[p.name] = p.name == name ? Matrix(rows: p.value.rows, columns: p.value.columns, storage: values) : p.value
        }
        return TwoTowerModel(configuration: configuration, parameters: parameters)
    }
}

@Suite struct ModelGradientTests {
    static let names = [
        ItemTower.idEmbeddingName, ItemTower.contentWeightName, ItemTower.contentBiasName,
        UserTower.historyEmbeddingName, UserTower.hiddenWeightName, UserTower.hiddenBiasName,
        UserTower.outputWeightName, UserTower.outputBiasName,
    ]

    /// The whole loss w.r.t. every parameter, full and sampled softmax, against central finite differences.
    @Test(arguments: [false, true]) func lossGradientMatchesFiniteDifferences(sampled: Bool) throws {
        // tau = 0.5 keeps the curvature moderate so a step large against Float round-off stays accurate.
        let fixture = Fixture(tau: 0.5)
        // Hidden biases of +-4 keep every ReLU input away from its kink (both branches are exercised),
        // so the finite differences stay smooth.
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 42)
            .replacing(UserTower.hiddenBiasName, with: (0..<8).map { $0 % 2 == 0 ? 4 : -4 })
        let sampler = NegativeSampler(proposal: .unigram(alpha: 0.75), itemFrequencies: (0..<12).map { $0 % 4 }, sampleCount: 6)
        var rng = SplitMix64(seed: 5)
        var items: [Int32] = []
        sampler.sample(into: &items, using: &rng)
        let negatives = sampled ? NegativeSample(items: items, logExpectedCounts: sampler.logExpectedCounts) : nil
        let (_, gradients) = model.lossAndGradients(
            batch: fixture.batch, itemFeatures: fixture.itemFeatures, userFeatures: fixture.userFeatures, negatives: negatives)
        let named = gradients.named
        for name in Self.names {
            let value = try #require(model.namedParameters.first { $0.name == name }).value
            let analytic = try #require(named[name])
            let error = maxGradientError(at: value.storage, analytic: analytic.storage, step: 1e-1, floor: 1e-3) { x in
                let perturbed = model.replacing(name, with: x)
                return Double(perturbed.lossAndGradients(
                    batch: fixture.batch, itemFeatures: fixture.itemFeatures, userFeatures: fixture.userFeatures,
                    negatives: negatives).loss)
            }
            #expect(error < 1e-3, "\(name): relative error \(error)")
        }
    }

    /// The central step is exactly item forward -> user-side step on fixed item embeddings -> item backward.
    @Test(arguments: [false, true]) func centralStepIsTheCompositionOfTheTwoHalves(sampled: Bool) {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 7)
        let negativeItems: [Int32] = [1, 1, 6, 10, 5, 0]
        let sampler = NegativeSampler(proposal: .uniform, itemFrequencies: [Int](repeating: 1, count: 12), sampleCount: 6)
        let negatives = sampled ? NegativeSample(items: negativeItems, logExpectedCounts: sampler.logExpectedCounts) : nil
        let central = model.lossAndGradients(
            batch: fixture.batch, itemFeatures: fixture.itemFeatures, userFeatures: fixture.userFeatures, negatives: negatives)

        // Federated composition through the public halves.
        let rows: [Int32]?
        let candidates: SoftmaxCandidates
        if sampled {
            var order: [Int32] = []
            for item in fixture.batch.targets + negativeItems where !order.contains(item) { order.append(item) }
            rows = order
            candidates = .sampled(
                positives: fixture.batch.targets.map { Int32(order.firstIndex(of: $0)!) },
                negatives: negativeItems.map { Int32(order.firstIndex(of: $0)!) },
                logCorrection: order.map { sampler.logExpectedCounts[Int($0)] })
        } else {
            rows = nil
            candidates = .full(targets: fixture.batch.targets)
        }
        let itemEmbeddings = model.itemTower.embeddings(itemFeatures: fixture.itemFeatures, rows: rows)
        let user = model.userTower.lossAndGradients(
            batch: fixture.batch, userFeatures: fixture.userFeatures, itemEmbeddings: itemEmbeddings, candidates: candidates)
        let item = model.itemTower.backward(
            itemEmbeddingGradient: user.itemEmbeddingGradient, itemFeatures: fixture.itemFeatures, rows: rows)
        #expect(user.loss == central.loss)
        #expect(user.gradients == central.gradients.user)
        #expect(item == central.gradients.item)
    }

    @Test func emptyHistoryMeansZeroMean() {
        let fixture = Fixture(userFeatureCount: 0)
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 1)
        let embeddings = model.userEmbeddings(histories: [[], [1, 2]], userFeatures: nil, userRows: nil)
        // With a zero input the MLP output is its (zero) biases' image: the zero vector, normalised to zero.
        #expect(embeddings.row(0).allSatisfy { $0 == 0 })
        #expect(abs(embeddings.row(1).reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
    }
}

@Suite struct ModelTests {
    @Test func initialisationIsReproducible() {
        let configuration = TwoTowerConfiguration(itemCount: 50, itemFeatureCount: 7, userFeatureCount: 3)
        let a = TwoTowerModel(configuration: configuration, seed: 9)
        let b = TwoTowerModel(configuration: configuration, seed: 9)
        let c = TwoTowerModel(configuration: configuration, seed: 10)
        #expect(a == b)
        #expect(a.itemTower.idEmbedding != c.itemTower.idEmbedding)
        #expect(a.userTower == UserTower(configuration: configuration, seed: 9))
        // Embedding rows have about unit norm under normal(0, 1/sqrt(d)).
        let norms = (0..<50).map { r in a.itemTower.idEmbedding.row(r).reduce(0) { $0 + $1 * $1 } }
        let mean = norms.reduce(0, +) / 50
        #expect(abs(mean - 1) < 0.15)
        #expect(a.namedParameters.map(\.name) == [
            "item_tower.id_embedding", "item_tower.content_projection.weight", "item_tower.content_projection.bias",
            "user_tower.history_embedding", "user_tower.mlp.0.weight", "user_tower.mlp.0.bias",
            "user_tower.mlp.2.weight", "user_tower.mlp.2.bias",
        ])
    }

    @Test(arguments: [(3, nil), (3, 2), (0, 2), (5, 10)] as [(Int, Int?)])
    func historyLeavesTheTargetOutAndKeepsTheMostRecent(position: Int, maxHistory: Int?) {
        let known: [Int32] = [10, 11, 12, 13, 14, 15]
        var batch = TrainingBatch()
        batch.append(known: known, position: position, userRow: 0, maxHistory: maxHistory)
        var others = known
        others.remove(at: position)
        let expected = Array(others.suffix(maxHistory ?? others.count))
        #expect(Array(batch.histories.bag(0)) == expected)
        #expect(batch.targets == [known[position]])
    }

    @Test func itemEmbeddingsAreNormalised() {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 2)
        let e = model.itemEmbeddings(itemFeatures: fixture.itemFeatures)
        #expect(e.rows == 12 && e.columns == 6)
        for r in 0..<12 { #expect(abs(e.row(r).reduce(0) { $0 + $1 * $1 } - 1) < 1e-5) }
    }

    /// Users who like one "cluster" of items: the next item is predictable from the history.
    static func clusteredUsers(items: Int, users: Int, clusters: Int, perUser: Int, seed: UInt64) -> [FoldUser] {
        var rng = SplitMix64(seed: seed)
        let clusterSize = items / clusters
        return (0..<users).map { u in
            let cluster = u % clusters
            let known = (0..<perUser).map { _ in Int32(cluster * clusterSize + Int(rng.next() % UInt64(clusterSize))) }
            return FoldUser(userIndex: u, known: known, heldOut: [])
        }
    }

    @Test(arguments: [false, true]) func trainingReducesTheLoss(sampled: Bool) {
        let users = Self.clusteredUsers(items: 60, users: 40, clusters: 4, perUser: 8, seed: 4)
        let configuration = TwoTowerConfiguration(
            dimension: 16, hiddenWidth: 32, itemCount: 60, sampledSoftmaxThreshold: sampled ? 10 : 20_000,
            sampledNegatives: 20, negativeProposal: .unigram(alpha: 0.75))
        var trainer = Trainer(model: TwoTowerModel(configuration: configuration, seed: 1), optimizer: .adam(learningRate: 0.01), seed: 2)
        let features = SparseMatrix.empty(rows: 60)
        let first = trainer.trainEpoch(users: users, itemFeatures: features, userFeatures: nil, batchSize: 32)
        var last = first
        for _ in 0..<9 { last = trainer.trainEpoch(users: users, itemFeatures: features, userFeatures: nil, batchSize: 32) }
        #expect(first.examples == 320)
        #expect(last.meanLoss < first.meanLoss * 0.8, "loss \(first.meanLoss) -> \(last.meanLoss)")
        // Full-softmax loss of the trained model is well below chance (log 60 = 4.09) when trained centrally.
        if !sampled { #expect(last.meanLoss < 3.2) }
    }

    @Test func trainingIsReproducible() {
        let users = Self.clusteredUsers(items: 30, users: 10, clusters: 3, perUser: 5, seed: 8)
        let configuration = TwoTowerConfiguration(dimension: 8, hiddenWidth: 8, itemCount: 30)
        func run() -> TwoTowerModel {
            var trainer = Trainer(model: TwoTowerModel(configuration: configuration, seed: 3), optimizer: .adam(), seed: 4)
            _ = trainer.trainEpoch(users: users, itemFeatures: .empty(rows: 30), userFeatures: nil, batchSize: 7)
            return trainer.model
        }
        #expect(run() == run())
    }
}

/// The grouped leave-one-out history form against the per-example bags it stands for.
@Suite struct LeaveOneOutBatchTests {
    /// Random users with several examples each in the batch (examples interleaved across users).
    static func batches(maxHistory: Int?, seed: UInt64) -> (grouped: TrainingBatch, perExample: TrainingBatch) {
        var rng = SplitMix64(seed: seed)
        let users: [[Int32]] = [5, 2, 1, 7, 4].map { n in (0..<n).map { _ in Int32(rng.next() % 12) } }
        var examples: [(user: Int, position: Int)] = []
        for (u, known) in users.enumerated() { for p in known.indices where u != 3 || p % 2 == 0 { examples.append((u, p)) } }
        for i in stride(from: examples.count - 1, to: 0, by: -1) { examples.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var grouped = TrainingBatch(form: .leaveOneOut), perExample = TrainingBatch()
        var groups: [Int: Int] = [:]
        for (u, p) in examples {
            perExample.append(known: users[u], position: p, userRow: u % 3, maxHistory: maxHistory)
            if let cap = maxHistory, cap < users[u].count - 1 {
                grouped.append(known: users[u], position: p, userRow: u % 3, maxHistory: maxHistory)
            } else {
                let group = groups[u] ?? grouped.appendUser(known: users[u])
                groups[u] = group
                grouped.appendExample(group: group, position: p, userRow: u % 3)
            }
        }
        return (grouped, perExample)
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    @Test(arguments: [(false, nil), (true, nil), (false, 3), (true, 3)] as [(Bool, Int?)])
    func lossAndGradientsEqualThePerExamplePath(sampled: Bool, maxHistory: Int?) throws {
        let fixture = Fixture()
        let (grouped, perExample) = Self.batches(maxHistory: maxHistory, seed: 21)
        #expect(grouped.histories == perExample.histories)
        #expect(grouped.targets == perExample.targets && grouped.userRows == perExample.userRows)
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 17)
        let sampler = NegativeSampler(proposal: .uniform, itemFrequencies: [Int](repeating: 1, count: 12), sampleCount: 6)
        let negatives = sampled ? NegativeSample(items: [1, 1, 6, 10, 5, 0], logExpectedCounts: sampler.logExpectedCounts) : nil
        let a = model.lossAndGradients(
            batch: grouped, itemFeatures: fixture.itemFeatures, userFeatures: fixture.userFeatures, negatives: negatives)
        let b = model.lossAndGradients(
            batch: perExample, itemFeatures: fixture.itemFeatures, userFeatures: fixture.userFeatures, negatives: negatives)
        #expect(abs(a.loss - b.loss) <= 1e-5 * abs(b.loss))
        let (ga, gb) = (a.gradients.named, b.gradients.named)
        for name in ModelGradientTests.names {
            let x = try #require(ga[name]), y = try #require(gb[name])
            let error = Self.relativeError(x.storage, y.storage)
            #expect(error <= 1e-5, "\(name): relative error \(error)")
        }
        // The same rows move under a lazy optimizer.
        #expect(Set(a.gradients.user.historyEmbedding.rowIndices) == Set(b.gradients.user.historyEmbedding.rowIndices))
    }

    @Test func singleKnownItemGivesAZeroMean() {
        let configuration = TwoTowerConfiguration(dimension: 6, hiddenWidth: 8, itemCount: 12)
        let tower = UserTower(configuration: configuration, seed: 3)
        var batch = TrainingBatch(form: .leaveOneOut)
        let lone = batch.appendUser(known: [7])
        let pair = batch.appendUser(known: [2, 9])
        batch.appendExample(group: lone, position: 0, userRow: 0)
        batch.appendExample(group: pair, position: 1, userRow: 1)
        var cache = UserTowerCache()
        tower.forward(history: batch.history, userFeatures: nil, userRows: batch.userRows, cache: &cache)
        // Zero mean, zero (initial) biases: the zero embedding, as for an empty per-example bag.
        #expect(cache.embeddings.row(0).allSatisfy { $0 == 0 })
        let reference = tower.embeddings(histories: IndexBags([[], [2]]), userFeatures: nil, userRows: nil)
        #expect(Self.relativeError(cache.embeddings.storage, reference.storage) <= 1e-6)
        // No gradient reaches the lone user's item.
        var gradients = UserTowerGradients(configuration: configuration)
        var upstream = Matrix(rows: 2, columns: 6, storage: (0..<12).map { Float($0) - 5 })
        tower.backward(embeddingGradient: &upstream, history: batch.history, cache: &cache, into: &gradients)
        #expect(gradients.historyEmbedding.existingSlot(for: 7) == nil)
        #expect(gradients.historyEmbedding.existingSlot(for: 9) == nil)
        #expect(gradients.historyEmbedding.existingSlot(for: 2) != nil)
    }

    /// The trainer's grouped batches train exactly as per-example batches would, up to float rounding.
    @Test(arguments: [nil, 3] as [Int?]) func trainerGroupedEpochMatchesPerExampleSteps(maxHistory: Int?) {
        let users = ModelTests.clusteredUsers(items: 30, users: 6, clusters: 3, perUser: 5, seed: 8)
        var configuration = TwoTowerConfiguration(dimension: 8, hiddenWidth: 8, itemCount: 30)
        configuration.maxHistory = maxHistory
        let model = TwoTowerModel(configuration: configuration, seed: 3)
        var trainer = Trainer(model: model, optimizer: .sgd(learningRate: 0.1), seed: 4)
        let statistics = trainer.trainEpoch(users: users, itemFeatures: .empty(rows: 30), userFeatures: nil, batchSize: 64)
        // One batch holds every example; replay it as per-example bags in the trainer's shuffled order.
        var rng = SplitMix64(seed: 4)
        var examples: [(Int, Int)] = []
        for (u, user) in users.enumerated() { for p in user.known.indices { examples.append((u, p)) } }
        for i in stride(from: examples.count - 1, to: 0, by: -1) { examples.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var batch = TrainingBatch()
        for (u, p) in examples {
            batch.append(known: users[u].known, position: p, userRow: users[u].userIndex, maxHistory: maxHistory)
        }
        var reference = Trainer(model: model, optimizer: .sgd(learningRate: 0.1), seed: 4)
        let loss = reference.step(batch: batch, itemFeatures: .empty(rows: 30), userFeatures: nil).loss
        #expect(statistics.batches == 1)
        #expect(abs(statistics.meanLoss - loss) <= 1e-5 * loss)
        for (x, y) in zip(trainer.model.namedParameters, reference.model.namedParameters) {
            #expect(Self.relativeError(x.value.storage, y.value.storage) <= 1e-5, "\(x.name)")
        }
    }
}
