public import FedRecData
public import FedRecModel
public import FedRecTensor

/// Hyper-parameters of a client's local training.
public struct ClientTrainingConfiguration: Sendable, Equatable, Codable {
    /// A batch size no client's examples reach: every client takes one step over all its examples (FedSGD).
    public static let wholeClientBatch = Int(Int32.max)

    /// Passes over the client's examples per round (E).
    public var localEpochs: Int
    /// Mini-batch size (B); a client with fewer examples takes one batch.
    public var batchSize: Int
    /// Local optimizer (fresh state every round: clients keep nothing between rounds).
    public var optimizer: OptimizerConfiguration
    /// FedProx proximal coefficient mu (`mu/2 ||w - w_global||^2` added to the local loss); 0 disables it.
    public var proximalMu: Float
    /// Upper bound on local steps per round (nil: none), to bound a heavy client's work.
    public var maximumSteps: Int?
    /// Differential privacy: the L2 bound S of the whole update (user-tower delta and item-embedding gradient
    /// together); a larger update is scaled down to norm S before it leaves the client, which reports whether
    /// it had to (`ClientUpdate.unclipped`, for adaptive clipping) (nil: no clipping).
    public var clipNorm: Float? = nil

    public init(
        localEpochs: Int = 1, batchSize: Int = 32, optimizer: OptimizerConfiguration = .sgd(learningRate: 0.5),
        proximalMu: Float = 0, maximumSteps: Int? = nil, clipNorm: Float? = nil
    ) {
        precondition(clipNorm.map { $0 > 0 && $0.isFinite } ?? true, "clip norm must be positive")
        self.clipNorm = clipNorm
        precondition(localEpochs > 0, "local epochs must be positive")
        precondition(batchSize > 0, "batch size must be positive")
        precondition(proximalMu >= 0 && proximalMu.isFinite, "proximal mu must be non-negative")
        precondition(maximumSteps.map { $0 > 0 } ?? true, "maximum steps must be positive")
        self.localEpochs = localEpochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.proximalMu = proximalMu
        self.maximumSteps = maximumSteps
    }

    /// The first rule this configuration breaks, or nil. A decoded configuration (a coordinator's round header)
    /// has skipped the initialiser's checks: clients call this and refuse the round.
    public var problem: String? {
        if !(1...1_000_000).contains(localEpochs) { return "local epochs \(localEpochs) must lie in 1...1000000" }
        if batchSize < 1 { return "batch size \(batchSize) must be positive" }
        if !(proximalMu >= 0 && proximalMu.isFinite) { return "proximal mu \(proximalMu) must be non-negative" }
        if let maximumSteps, maximumSteps < 1 { return "maximum steps \(maximumSteps) must be positive" }
        if let clipNorm, !(clipNorm > 0 && clipNorm.isFinite) { return "clip norm \(clipNorm) must be positive" }
        return optimizer.problem
    }
}

/// Local training of one virtual client at a time. One trainer serves any number of virtual clients in turn:
/// its buffers (batch, forward/backward workspace, gradients) are reused, so a virtual client costs only its
/// own data between rounds.
///
/// Examples are the user's leave-one-out pairs (target = one known item, history = the other known items, cut
/// to `maxHistory`), trained with full softmax against the FIXED item-embedding matrix of the round.
public struct ClientTrainer: Sendable {
    /// May change between calls (a round's clip norm, under adaptive clipping); the buffers stay.
    public var configuration: ClientTrainingConfiguration
    private var workspace = UserStepWorkspace()
    private var gradients: UserTowerGradients?
    private var stepItemGradient = Matrix(rows: 0, columns: 0)
    private var itemGradientSum = Matrix(rows: 0, columns: 0)
    private var batch = TrainingBatch(form: .leaveOneOut)
    private var order: [Int32] = []

    public init(configuration: ClientTrainingConfiguration) {
        self.configuration = configuration
    }

    /// Trains a copy of `globalUserTower` on `user`'s examples and returns its update. `seed` drives the example
    /// order (derive it from the run seed, round and client). A user with no known items gives an update with
    /// `exampleCount == 0` (which validation rejects).
    public mutating func train(
        globalUserTower global: UserTower, itemEmbeddings: Matrix, user: FoldUser, userFeatures: SparseMatrix?,
        seed: UInt64
    ) -> ClientUpdate {
        let config = global.configuration
        precondition(
            !config.usesSampledSoftmax,
            "federated clients train with full softmax (catalogue above the sampled-softmax threshold)")
        precondition(
            itemEmbeddings.rows == config.itemCount && itemEmbeddings.columns == config.dimension,
            "item embeddings must be \(config.itemCount)x\(config.dimension)")
        if gradients == nil || gradients!.hiddenWeight.rows != config.userInputWidth
            || gradients!.historyEmbedding.tableRows != config.itemCount
        {
            gradients = UserTowerGradients(configuration: config)
        }
        var gradients = self.gradients.take()!
        defer { self.gradients = gradients }
        itemGradientSum.reshape(rows: config.itemCount, columns: config.dimension, zeroed: true)
        stepItemGradient.reshape(rows: config.itemCount, columns: config.dimension)

        var local = global
        var optimizer = Optimizer(configuration: configuration.optimizer)
        var rng = SplitMix64(seed: seed)
        let n = user.known.count
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: (0..<Int32(n)))
        let uncut = config.maxHistory.map { $0 >= n - 1 } ?? true
        var lossSum = 0.0
        var processed = 0
        var steps = 0
        training: for _ in 0..<configuration.localEpochs {
            if n > 1 {
                for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            }
            var start = 0
            while start < n {
                if let maximum = configuration.maximumSteps, steps >= maximum { break training }
                let end = min(start + configuration.batchSize, n)
                batch.removeAll(form: .leaveOneOut)
                if uncut {
                    let group = batch.appendUser(known: user.known)
                    for position in order[start..<end] {
                        batch.appendExample(group: group, position: Int(position), userRow: user.userIndex)
                    }
                } else {
                    for position in order[start..<end] {
                        batch.append(
                            known: user.known, position: Int(position), userRow: user.userIndex,
                            maxHistory: config.maxHistory)
                    }
                }
                gradients.reset()
                let loss = local.lossAndGradients(
                    batch: batch, userFeatures: userFeatures, itemEmbeddings: itemEmbeddings,
                    candidates: .full(targets: batch.targets), gradients: &gradients,
                    itemEmbeddingGradient: &stepItemGradient, workspace: &workspace)
                let b = end - start
                lossSum += Double(loss) * Double(b)
                // Example-weighted accumulation of the item-embedding gradient of this step's mean loss.
                let weight = Float(b)
                itemGradientSum.storage.withUnsafeMutableBufferPointer { sum in
                    stepItemGradient.storage.withUnsafeBufferPointer { g in
                        for i in 0..<sum.count { sum[i] += weight * g[i] }
                    }
                }
                if configuration.proximalMu > 0 {
                    Self.addProximalGradient(
                        mu: configuration.proximalMu, local: local, global: global, movableHistoryRows: user.known,
                        to: &gradients)
                }
                optimizer.beginStep()
                local.apply(gradients, optimizer: &optimizer)
                processed += b
                steps += 1
                start = end
            }
        }
        if processed > 0 {
            let scale = 1 / Float(processed)
            itemGradientSum.storage.withUnsafeMutableBufferPointer { sum in
                for i in 0..<sum.count { sum[i] *= scale }
            }
        }
        var update = ClientUpdate(
            userTowerDelta: local.delta(from: global), itemEmbeddingGradient: .dense(itemGradientSum),
            exampleCount: n, meanLoss: processed > 0 ? Float(lossSum / Double(processed)) : 0)
        if let clipNorm = configuration.clipNorm { update.unclipped = !update.clip(toNorm: clipNorm) }
        return update
    }

    /// Adds `mu (w - w_global)`, the gradient of FedProx's `mu/2 ||w - w_global||^2`, to every parameter's
    /// gradient. The history table is row-sparse: only rows a step touched move, and in local training those are
    /// rows of the user's known items, so `movableHistoryRows` (the user's known items) holds every row where
    /// `w` can differ from `w_global`. Each is touched in `gradients` (a zero data gradient when this step's
    /// batch left it out: a one-example last batch leaves out its target's row, a `maxHistory` cut older rows),
    /// so every moved row gets its pull on every step, as the dense proximal term gives. Rows that never moved
    /// get a zero pull either way.
    static func addProximalGradient(
        mu: Float, local: UserTower, global: UserTower, movableHistoryRows: [Int32],
        to gradients: inout UserTowerGradients
    ) {
        func add(_ g: inout Matrix, _ w: Matrix, _ w0: Matrix) {
            g.storage.withUnsafeMutableBufferPointer { gs in
                w.storage.withUnsafeBufferPointer { ws in
                    w0.storage.withUnsafeBufferPointer { w0s in
                        for i in 0..<gs.count { gs[i] += mu * (ws[i] - w0s[i]) }
                    }
                }
            }
        }
        add(&gradients.hiddenWeight, local.hiddenWeight, global.hiddenWeight)
        add(&gradients.hiddenBias, local.hiddenBias, global.hiddenBias)
        add(&gradients.outputWeight, local.outputWeight, global.outputWeight)
        add(&gradients.outputBias, local.outputBias, global.outputBias)
        let d = local.historyEmbedding.columns
        for row in movableHistoryRows { gradients.historyEmbedding.slot(for: Int(row)) }
        let rows = gradients.historyEmbedding.rowIndices
        gradients.historyEmbedding.withUnsafeMutableValues { gs in
            local.historyEmbedding.storage.withUnsafeBufferPointer { ws in
                global.historyEmbedding.storage.withUnsafeBufferPointer { w0s in
                    for (slot, row) in rows.enumerated() {
                        let r = Int(row) * d
                        for j in 0..<d { gs[slot * d + j] += mu * (ws[r + j] - w0s[r + j]) }
                    }
                }
            }
        }
    }
}
