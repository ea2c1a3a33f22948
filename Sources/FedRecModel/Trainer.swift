public import FedRecTensor
public import FedRecData

/// Figures of one training epoch.
public struct EpochStatistics: Sendable, Equatable {
    /// Example-weighted mean of the batch losses.
    public var meanLoss: Float
    public var examples: Int
    public var batches: Int
    public var seconds: Double
    public var examplesPerSecond: Double { seconds > 0 ? Double(examples) / seconds : 0 }
    /// Time per phase.
    public var timing: StepTiming
}

/// Central training: a model, its optimizer and the seeded generator that shuffles examples and draws negatives.
public struct Trainer: Sendable {
    public var model: TwoTowerModel
    public var optimizer: Optimizer
    public var rng: SplitMix64
    /// Proposal for sampled softmax (built from the training items on first use when the catalogue needs it).
    public var negativeSampler: NegativeSampler?
    private var workspace = TwoTowerWorkspace()
    private var gradients: TwoTowerGradients
    private var batch = TrainingBatch(form: .leaveOneOut)
    private var negatives = NegativeSample(items: [], logExpectedCounts: [])

    public init(model: TwoTowerModel, optimizer: OptimizerConfiguration, seed: UInt64, negativeSampler: NegativeSampler? = nil) {
        self.model = model
        self.optimizer = Optimizer(configuration: optimizer)
        self.rng = SplitMix64(seed: seed)
        self.negativeSampler = negativeSampler
        self.gradients = TwoTowerGradients(configuration: model.configuration)
    }

    /// One pass over every (user, known item) example in an order shuffled by `rng`; the last batch may be smaller.
    /// Batches use the grouped history form (`HistoryInput.leaveOneOut`): one group per user of the batch whose
    /// history is not cut by `maxHistory`, one own bag per example whose history is.
    public mutating func trainEpoch(
        users: [FoldUser], itemFeatures: SparseMatrix, userFeatures: SparseMatrix?, batchSize: Int
    ) -> EpochStatistics {
        precondition(batchSize > 0, "batch size must be positive")
        let configuration = model.configuration
        if configuration.usesSampledSoftmax && negativeSampler == nil {
            var frequencies = [Int](repeating: 0, count: configuration.itemCount)
            for user in users { for item in user.known { frequencies[Int(item)] += 1 } }
            negativeSampler = NegativeSampler(
                proposal: configuration.negativeProposal, itemFrequencies: frequencies,
                sampleCount: configuration.sampledNegatives)
        }
        // Examples as (user slot, position), shuffled by Fisher-Yates on our own generator.
        var examples: [(user: Int32, position: Int32)] = []
        examples.reserveCapacity(users.reduce(0) { $0 + $1.known.count })
        for (u, user) in users.enumerated() {
            for position in user.known.indices { examples.append((Int32(u), Int32(position))) }
        }
        if examples.count > 1 {
            for i in stride(from: examples.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                examples.swapAt(i, j)
            }
        }
        var groupOfUser = [Int32](repeating: -1, count: users.count)
        var groupedUsers: [Int32] = []
        let clock = ContinuousClock()
        let start = clock.now
        var timing = StepTiming()
        var lossSum: Double = 0
        var batches = 0
        var index = 0
        while index < examples.count {
            let end = min(index + batchSize, examples.count)
            // Grouped form: a user whose whole leave-one-out history is used (no cut) contributes its known items
            // once; a cut history depends on the target's position, so such an example keeps a bag of its own.
            batch.removeAll(form: .leaveOneOut)
            for (u, position) in examples[index..<end] {
                let user = users[Int(u)]
                if configuration.maxHistory.map({ $0 >= user.known.count - 1 }) ?? true {
                    var group = Int(groupOfUser[Int(u)])
                    if group < 0 {
                        group = batch.appendUser(known: user.known)
                        groupOfUser[Int(u)] = Int32(group)
                        groupedUsers.append(u)
                    }
                    batch.appendExample(group: group, position: Int(position), userRow: user.userIndex)
                } else {
                    batch.append(known: user.known, position: Int(position), userRow: user.userIndex, maxHistory: configuration.maxHistory)
                }
            }
            for u in groupedUsers { groupOfUser[Int(u)] = -1 }
            groupedUsers.removeAll(keepingCapacity: true)
            let result = step(batch: batch, itemFeatures: itemFeatures, userFeatures: userFeatures)
            lossSum += Double(result.loss) * Double(end - index)
            timing.forward += result.timing.forward
            timing.backward += result.timing.backward
            timing.optimizer += result.timing.optimizer
            batches += 1
            index = end
        }
        return EpochStatistics(
            meanLoss: examples.isEmpty ? 0 : Float(lossSum / Double(examples.count)), examples: examples.count,
            batches: batches, seconds: (clock.now - start).seconds, timing: timing)
    }

    /// One optimizer step on `batch` (sampled softmax when the configuration asks for it).
    public mutating func step(batch: TrainingBatch, itemFeatures: SparseMatrix, userFeatures: SparseMatrix?)
        -> (loss: Float, timing: StepTiming)
    {
        var sample: NegativeSample? = nil
        if model.configuration.usesSampledSoftmax {
            guard let sampler = negativeSampler else {
                preconditionFailure("sampled softmax needs a negative sampler (set negativeSampler or call trainEpoch)")
            }
            sampler.sample(into: &negatives.items, using: &rng)
            if negatives.logExpectedCounts.count != sampler.logExpectedCounts.count {
                negatives.logExpectedCounts = sampler.logExpectedCounts
            }
            sample = negatives
        }
        let clock = ContinuousClock()
        workspace.timing = StepTiming()
        gradients.reset()
        let loss = model.lossAndGradients(
            batch: batch, itemFeatures: itemFeatures, userFeatures: userFeatures, negatives: sample,
            gradients: &gradients, workspace: &workspace)
        let start = clock.now
        model.apply(gradients, optimizer: &optimizer)
        var timing = workspace.timing
        timing.optimizer = (clock.now - start).seconds
        return (loss, timing)
    }
}
