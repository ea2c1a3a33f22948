public import FedRecTensor

/// The two-tower recall model: all parameters as a value type, split into `UserTower` and `ItemTower`.
public struct TwoTowerModel: Sendable, Equatable {
    public let configuration: TwoTowerConfiguration
    public var userTower: UserTower
    public var itemTower: ItemTower

    /// Seeded, reproducible initialisation (see `ItemTower` and `UserTower` for the scheme).
    public init(configuration: TwoTowerConfiguration, seed: UInt64) {
        configuration.validate()
        self.configuration = configuration
        self.userTower = UserTower(configuration: configuration, seed: seed)
        self.itemTower = ItemTower(configuration: configuration, seed: seed)
    }

    /// `init(configuration:seed:)` with the per-item rows (the item-id and history embeddings) dealt out in
    /// `idOrder`, the catalogue's item indices in byte order of their ids (`Dataset.itemIndicesInIDOrder`): the
    /// item `idOrder[k]` starts with the rows index k gets from `seed`. An item's starting rows then do not depend
    /// on the catalogue's index order, which a data set takes from the order of its interactions: a model trained
    /// under differential privacy must not carry that order, and rows that training hardly moves would show it to
    /// anyone who knows the seed. `idOrder` is a permutation of the catalogue's indices.
    public init(configuration: TwoTowerConfiguration, seed: UInt64, idOrder: [Int]) {
        precondition(idOrder.count == configuration.itemCount, "one index per catalogue item")
        self.init(configuration: configuration, seed: seed)
        // Row i of the result is row rank(i) of the seeded one, where idOrder[rank(i)] = i.
        var rank = [Int](repeating: 0, count: idOrder.count)
        for (k, item) in idOrder.enumerated() { rank[item] = k }
        userTower.historyEmbedding = userTower.historyEmbedding.gatheringRows(rank)
        itemTower.idEmbedding = itemTower.idEmbedding.gatheringRows(rank)
    }

    public init(userTower: UserTower, itemTower: ItemTower) {
        precondition(userTower.configuration == itemTower.configuration, "towers built from different configurations")
        self.configuration = userTower.configuration
        self.userTower = userTower
        self.itemTower = itemTower
    }

    /// Builds a model from named parameters (shapes must match `configuration`; see `namedParameters`).
    public init(configuration: TwoTowerConfiguration, parameters: [String: Matrix]) {
        func p(_ name: String) -> Matrix {
            guard let value = parameters[name] else { preconditionFailure("missing parameter \(name)") }
            return value
        }
        self.init(
            userTower: UserTower(
                configuration: configuration, historyEmbedding: p(UserTower.historyEmbeddingName),
                hiddenWeight: p(UserTower.hiddenWeightName), hiddenBias: p(UserTower.hiddenBiasName),
                outputWeight: p(UserTower.outputWeightName), outputBias: p(UserTower.outputBiasName)),
            itemTower: ItemTower(
                configuration: configuration, idEmbedding: p(ItemTower.idEmbeddingName),
                contentWeight: p(ItemTower.contentWeightName), contentBias: p(ItemTower.contentBiasName)))
    }

    /// Every parameter with its model-file name and shape (item tower first).
    public var namedParameters: [(name: String, shape: [Int], value: Matrix)] {
        itemTower.namedParameters + userTower.namedParameters
    }

    /// Normalised embeddings of the whole catalogue (`itemCount x d`).
    public func itemEmbeddings(itemFeatures: SparseMatrix) -> Matrix {
        itemTower.embeddings(itemFeatures: itemFeatures)
    }

    /// Normalised user embeddings (`histories.count x d`); `userRows[b]` is the `userFeatures` row of user `b`
    /// (nil: row `b`). Histories are used as given (no `maxHistory` cut); an empty history means a zero mean.
    public func userEmbeddings(histories: [[Int32]], userFeatures: SparseMatrix?, userRows: [Int]?) -> Matrix {
        userTower.embeddings(
            histories: IndexBags(histories), userFeatures: userFeatures, userRows: userRows?.map { Int32($0) })
    }

    /// Mean loss of `batch` and the gradients of every parameter. With `negatives` the loss is sampled softmax
    /// over those shared negatives (with log-Q correction); without, full softmax over the catalogue.
    public func lossAndGradients(
        batch: TrainingBatch, itemFeatures: SparseMatrix, userFeatures: SparseMatrix?, negatives: NegativeSample? = nil
    ) -> (loss: Float, gradients: TwoTowerGradients) {
        var gradients = TwoTowerGradients(configuration: configuration)
        var workspace = TwoTowerWorkspace()
        let loss = lossAndGradients(
            batch: batch, itemFeatures: itemFeatures, userFeatures: userFeatures, negatives: negatives,
            gradients: &gradients, workspace: &workspace)
        return (loss, gradients)
    }

    /// Allocation-free central step: accumulates into `gradients` (reset it first).
    ///
    /// Exactly the composition of the two federated halves: `ItemTower.forward` on the candidate rows,
    /// the user-side step against those fixed embeddings (`UserTower.lossAndGradients(...itemEmbeddings:...)`),
    /// then `ItemTower.backward(itemEmbeddingGradient:...)`.
    public func lossAndGradients(
        batch: TrainingBatch, itemFeatures: SparseMatrix, userFeatures: SparseMatrix?, negatives: NegativeSample?,
        gradients: inout TwoTowerGradients, workspace: inout TwoTowerWorkspace
    ) -> Float {
        let clock = ContinuousClock()
        let start = clock.now
        let rows: [Int32]?
        if let negatives {
            workspace.buildCandidates(batch: batch, negatives: negatives, itemCount: configuration.itemCount)
            rows = workspace.candidateRows
        } else {
            workspace.candidates.positives = batch.targets
            workspace.candidates.negatives = nil
            rows = nil
        }
        itemTower.forward(itemFeatures: itemFeatures, rows: rows, cache: &workspace.itemCache)
        let loss = userTower.forwardLoss(
            batch: batch, userFeatures: userFeatures, itemEmbeddings: workspace.itemCache.embeddings,
            candidates: workspace.candidates, workspace: &workspace.user)
        let middle = clock.now
        userTower.backwardLoss(
            batch: batch, itemEmbeddings: workspace.itemCache.embeddings, candidates: workspace.candidates,
            gradients: &gradients.user, itemEmbeddingGradient: &workspace.itemGradient, workspace: &workspace.user)
        itemTower.backward(
            itemEmbeddingGradient: &workspace.itemGradient, cache: workspace.itemCache, itemFeatures: itemFeatures,
            rows: rows, into: &gradients.item)
        if negatives == nil { workspace.candidates.positives = [] }  // keep batch.targets uniquely referenced
        let end = clock.now
        workspace.timing.forward += (middle - start).seconds
        workspace.timing.backward += (end - middle).seconds
        return loss
    }

    /// Applies one optimizer step to both towers (calls `optimizer.beginStep()`).
    public mutating func apply(_ gradients: TwoTowerGradients, optimizer: inout Optimizer) {
        optimizer.beginStep()
        userTower.apply(gradients.user, optimizer: &optimizer)
        itemTower.apply(gradients.item, optimizer: &optimizer)
    }
}

/// The shared negatives of one sampled-softmax batch.
public struct NegativeSample: Sendable {
    /// Catalogue items drawn with replacement from the proposal.
    public var items: [Int32]
    /// Per catalogue item, `log` of its expected count among `items` (`NegativeSampler.logExpectedCounts`).
    public var logExpectedCounts: [Float]

    public init(items: [Int32], logExpectedCounts: [Float]) {
        self.items = items
        self.logExpectedCounts = logExpectedCounts
    }
}

/// Gradients of every parameter of a `TwoTowerModel`.
public struct TwoTowerGradients: Sendable, Equatable {
    public var user: UserTowerGradients
    public var item: ItemTowerGradients

    public init(configuration: TwoTowerConfiguration) {
        user = UserTowerGradients(configuration: configuration)
        item = ItemTowerGradients(configuration: configuration)
    }

    public mutating func reset() {
        user.reset()
        item.reset()
    }

    /// Dense copies by parameter name.
    public var named: [String: Matrix] {
        user.named.merging(item.named) { a, _ in a }
    }
}

/// Seconds spent in each phase (accumulated by the central step and the trainer).
public struct StepTiming: Sendable, Equatable {
    public var forward: Double = 0
    public var backward: Double = 0
    public var optimizer: Double = 0
    public init() {}
    public var total: Double { forward + backward + optimizer }
}

/// Buffers of the central step, reused between steps (nothing is allocated once warm).
public struct TwoTowerWorkspace: Sendable {
    var itemCache = ItemTowerCache()
    var user = UserStepWorkspace()
    var itemGradient = Matrix(rows: 0, columns: 0)
    var candidates = SoftmaxCandidates(positives: [], negatives: [], logCorrection: [])
    var candidateRows: [Int32] = []
    var rowOfItem: [Int32] = []
    /// Phase times accumulated by `lossAndGradients` (reset it freely).
    public var timing = StepTiming()

    public init() {}

    /// Candidate rows = distinct items among the positives and the negatives, in first-seen order.
    mutating func buildCandidates(batch: TrainingBatch, negatives: NegativeSample, itemCount: Int) {
        precondition(negatives.logExpectedCounts.count == itemCount, "one log expected count per catalogue item")
        if rowOfItem.count != itemCount { rowOfItem = [Int32](repeating: -1, count: itemCount) }
        candidateRows.removeAll(keepingCapacity: true)
        var positives = candidates.positives
        var negativeRows = candidates.negatives ?? []
        var correction = candidates.logCorrection
        candidates = SoftmaxCandidates(positives: [], negatives: nil, logCorrection: [])
        positives.removeAll(keepingCapacity: true)
        negativeRows.removeAll(keepingCapacity: true)
        correction.removeAll(keepingCapacity: true)
        func row(_ item: Int32) -> Int32 {
            precondition(item >= 0 && Int(item) < itemCount, "item \(item) outside the catalogue")
            let existing = rowOfItem[Int(item)]
            if existing >= 0 { return existing }
            let new = Int32(candidateRows.count)
            rowOfItem[Int(item)] = new
            candidateRows.append(item)
            correction.append(negatives.logExpectedCounts[Int(item)])
            return new
        }
        for item in batch.targets { positives.append(row(item)) }
        for item in negatives.items { negativeRows.append(row(item)) }
        for item in candidateRows { rowOfItem[Int(item)] = -1 }
        candidates = SoftmaxCandidates(positives: positives, negatives: negativeRows, logCorrection: correction)
    }
}
