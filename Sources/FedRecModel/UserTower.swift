public import FedRecTensor

/// The user tower: `normalize(MLP([mean(historyEmbedding[h] for h in history) | userFeatures]))`,
/// MLP = `Linear(dimension + userFeatureCount, hiddenWidth) -> ReLU -> Linear(hiddenWidth, dimension)`.
///
/// An empty history contributes the zero vector (the user is then represented by its features and the
/// MLP biases only). Parameters (model-file names): `user_tower.history_embedding` (`itemCount x d`),
/// `user_tower.mlp.0.weight` (`in x hidden`), `user_tower.mlp.0.bias`, `user_tower.mlp.2.weight`
/// (`hidden x d`), `user_tower.mlp.2.bias` — indices as in PyTorch's `nn.Sequential(Linear, ReLU, Linear)`,
/// weights stored `in x out` (transposed w.r.t. `nn.Linear.weight`).
/// Initialisation: history embedding `normal(0, 1/sqrt(d))`, `mlp.0` He normal, `mlp.2` Glorot uniform,
/// biases zero; each parameter from its own `SplitMix64.stream(seed:index:)` (a client can build the user
/// tower alone and get the same values).
public struct UserTower: Sendable, Equatable {
    public static let historyEmbeddingName = "user_tower.history_embedding"
    public static let hiddenWeightName = "user_tower.mlp.0.weight"
    public static let hiddenBiasName = "user_tower.mlp.0.bias"
    public static let outputWeightName = "user_tower.mlp.2.weight"
    public static let outputBiasName = "user_tower.mlp.2.bias"

    public let configuration: TwoTowerConfiguration
    public var historyEmbedding: Matrix
    public var hiddenWeight: Matrix
    public var hiddenBias: Matrix
    public var outputWeight: Matrix
    public var outputBias: Matrix

    public init(configuration: TwoTowerConfiguration, seed: UInt64) {
        let (n, d, h, i) = (configuration.itemCount, configuration.dimension, configuration.hiddenWidth, configuration.userInputWidth)
        var rng0 = SplitMix64.stream(seed: seed, index: 11)
        var rng1 = SplitMix64.stream(seed: seed, index: 12)
        var rng2 = SplitMix64.stream(seed: seed, index: 13)
        self.configuration = configuration
        historyEmbedding = .normal(rows: n, columns: d, standardDeviation: 1 / Float(d).squareRoot(), using: &rng0)
        hiddenWeight = .heNormal(fanIn: i, fanOut: h, using: &rng1)
        hiddenBias = Matrix(rows: 1, columns: h)
        outputWeight = .glorotUniform(fanIn: h, fanOut: d, using: &rng2)
        outputBias = Matrix(rows: 1, columns: d)
    }

    public init(
        configuration: TwoTowerConfiguration, historyEmbedding: Matrix, hiddenWeight: Matrix, hiddenBias: Matrix,
        outputWeight: Matrix, outputBias: Matrix
    ) {
        let (n, d, h, i) = (configuration.itemCount, configuration.dimension, configuration.hiddenWidth, configuration.userInputWidth)
        precondition(historyEmbedding.rows == n && historyEmbedding.columns == d, "history embedding must be \(n)x\(d)")
        precondition(hiddenWeight.rows == i && hiddenWeight.columns == h, "mlp.0 weight must be \(i)x\(h)")
        precondition(hiddenBias.count == h && outputBias.count == d, "mlp bias lengths")
        precondition(outputWeight.rows == h && outputWeight.columns == d, "mlp.2 weight must be \(h)x\(d)")
        self.configuration = configuration
        self.historyEmbedding = historyEmbedding
        self.hiddenWeight = hiddenWeight
        self.hiddenBias = Matrix(rows: 1, columns: h, storage: hiddenBias.storage)
        self.outputWeight = outputWeight
        self.outputBias = Matrix(rows: 1, columns: d, storage: outputBias.storage)
    }

    /// Parameters in model-file order, with their file shapes.
    public var namedParameters: [(name: String, shape: [Int], value: Matrix)] {
        [
            (Self.historyEmbeddingName, [historyEmbedding.rows, historyEmbedding.columns], historyEmbedding),
            (Self.hiddenWeightName, [hiddenWeight.rows, hiddenWeight.columns], hiddenWeight),
            (Self.hiddenBiasName, [hiddenBias.count], hiddenBias),
            (Self.outputWeightName, [outputWeight.rows, outputWeight.columns], outputWeight),
            (Self.outputBiasName, [outputBias.count], outputBias),
        ]
    }

    /// L2-normalised user embeddings (`histories.count x d`). `userRows[b]` is the row of `userFeatures`
    /// for bag `b` (nil: row `b`); `userFeatures` may be nil only when `userFeatureCount == 0`.
    public func embeddings(histories: IndexBags, userFeatures: SparseMatrix?, userRows: [Int32]?) -> Matrix {
        var cache = UserTowerCache()
        forward(histories: histories, userFeatures: userFeatures, userRows: userRows, cache: &cache)
        return cache.embeddings
    }

    /// Forward pass into a reusable cache.
    public func forward(histories: IndexBags, userFeatures: SparseMatrix?, userRows: [Int32]?, cache: inout UserTowerCache) {
        forward(history: .bags(histories), userFeatures: userFeatures, userRows: userRows, cache: &cache)
    }

    /// Forward pass into a reusable cache, from either form of history input (same result up to float rounding).
    public func forward(history: HistoryInput, userFeatures: SparseMatrix?, userRows: [Int32]?, cache: inout UserTowerCache) {
        let (d, fu) = (configuration.dimension, configuration.userFeatureCount)
        let b = history.count
        switch history {
        case .bags(let bags):
            EmbeddingBagMean.forward(table: historyEmbedding, bags: bags, into: &cache.historyMean)
        case .leaveOneOut(let bags):
            EmbeddingBagMean.forward(
                table: historyEmbedding, bags: bags, workspace: &cache.groupWorkspace, into: &cache.historyMean)
        }
        // Input = [history mean | user features], densified row by row.
        cache.input.reshape(rows: b, columns: d + fu)
        if fu > 0 {
            let features = userFeatures!
            // Checked in every build (`precondition` is gone under -Ounchecked): a wrong width would write past rows.
            guard features.columns == fu else {
                fatalError("user features have \(features.columns) columns, configuration says \(fu)")
            }
            guard userRows.map({ $0.count == b }) ?? (features.rows == b) else {
                fatalError("one user-feature row per history")
            }
        }
        cache.historyMean.storage.withUnsafeBufferPointer { mean in
            cache.input.storage.withUnsafeMutableBufferPointer { x in
                for i in 0..<b {
                    let dst = x.baseAddress! + i * (d + fu)
                    dst.update(from: mean.baseAddress! + i * d, count: d)
                    guard fu > 0, let features = userFeatures else { continue }
                    for j in 0..<fu { dst[d + j] = 0 }
                    let r = userRows.map { Int($0[i]) } ?? i
                    guard r >= 0 && r < features.rows else { fatalError("user-feature row \(r) out of range") }
                    for k in Int(features.rowOffsets[r])..<Int(features.rowOffsets[r + 1]) {
                        dst[d + Int(features.indices[k])] += features.values[k]
                    }
                }
            }
        }
        DenseLinear.forward(input: cache.input, weight: hiddenWeight, bias: hiddenBias, into: &cache.hiddenPre)
        ReLU.forward(input: cache.hiddenPre, into: &cache.hidden)
        DenseLinear.forward(input: cache.hidden, weight: outputWeight, bias: outputBias, into: &cache.embeddings)
        L2Normalize.forwardInPlace(&cache.embeddings, norms: &cache.norms)
    }

    /// Back-propagates `embeddingGradient` (w.r.t. the normalised user embeddings; consumed) into the
    /// parameters, accumulating into `gradients`.
    public func backward(
        embeddingGradient: inout Matrix, histories: IndexBags, cache: inout UserTowerCache, into gradients: inout UserTowerGradients
    ) {
        backward(embeddingGradient: &embeddingGradient, history: .bags(histories), cache: &cache, into: &gradients)
    }

    /// Backward pass for the history input given to the matching `forward(history:...)`.
    public func backward(
        embeddingGradient: inout Matrix, history: HistoryInput, cache: inout UserTowerCache,
        into gradients: inout UserTowerGradients
    ) {
        let (d, h) = (configuration.dimension, configuration.hiddenWidth)
        let b = history.count
        precondition(embeddingGradient.rows == b && embeddingGradient.columns == d, "user-embedding gradient must be \(b)x\(d)")
        L2Normalize.backward(output: cache.embeddings, norms: cache.norms, gradient: &embeddingGradient)
        DenseLinear.backward(
            input: cache.hidden, weight: outputWeight, outputGradient: embeddingGradient,
            weightGradient: &gradients.outputWeight, biasGradient: &gradients.outputBias)
        DenseLinear.inputGradient(outputGradient: embeddingGradient, weight: outputWeight, into: &cache.hiddenGradient)
        ReLU.backward(output: cache.hidden, gradient: &cache.hiddenGradient)
        DenseLinear.backward(
            input: cache.input, weight: hiddenWeight, outputGradient: cache.hiddenGradient,
            weightGradient: &gradients.hiddenWeight, biasGradient: &gradients.hiddenBias)
        // Only the history-mean part of the input gradient is needed (user features have no parameters):
        // d mean = g_hidden (B x h) * W0[0..<d, :]^T.
        cache.historyMeanGradient.reshape(rows: b, columns: d)
        cache.hiddenGradient.storage.withUnsafeBufferPointer { g in
            hiddenWeight.storage.withUnsafeBufferPointer { w in
                cache.historyMeanGradient.storage.withUnsafeMutableBufferPointer { out in
                    BLAS.sgemm(
                        .none, .transpose, m: b, n: d, k: h, alpha: 1, a: g.baseAddress!, lda: h,
                        b: w.baseAddress!, ldb: h, beta: 0, c: out.baseAddress!, ldc: d)
                }
            }
        }
        switch history {
        case .bags(let bags):
            EmbeddingBagMean.backward(outputGradient: cache.historyMeanGradient, bags: bags, into: &gradients.historyEmbedding)
        case .leaveOneOut(let bags):
            EmbeddingBagMean.backward(
                outputGradient: cache.historyMeanGradient, bags: bags, workspace: &cache.groupWorkspace,
                into: &gradients.historyEmbedding)
        }
    }

    /// Applies one optimizer update (the caller calls `optimizer.beginStep()` first).
    public mutating func apply(_ gradients: UserTowerGradients, optimizer: inout Optimizer) {
        optimizer.update(Self.historyEmbeddingName, parameter: &historyEmbedding, gradient: gradients.historyEmbedding)
        optimizer.update(Self.hiddenWeightName, parameter: &hiddenWeight, gradient: gradients.hiddenWeight)
        optimizer.update(Self.hiddenBiasName, parameter: &hiddenBias, gradient: gradients.hiddenBias)
        optimizer.update(Self.outputWeightName, parameter: &outputWeight, gradient: gradients.outputWeight)
        optimizer.update(Self.outputBiasName, parameter: &outputBias, gradient: gradients.outputBias)
    }
}

/// Forward state of the user tower kept for its backward pass (and reused between steps).
public struct UserTowerCache: Sendable {
    /// Normalised user embeddings of the last forward pass.
    public internal(set) var embeddings = Matrix(rows: 0, columns: 0)
    var historyMean = Matrix(rows: 0, columns: 0)
    var input = Matrix(rows: 0, columns: 0)
    var hiddenPre = Matrix(rows: 0, columns: 0)
    var hidden = Matrix(rows: 0, columns: 0)
    var norms: [Float] = []
    var hiddenGradient = Matrix(rows: 0, columns: 0)
    var historyMeanGradient = Matrix(rows: 0, columns: 0)
    var groupWorkspace = EmbeddingBagMean.GroupWorkspace()
    public init() {}
}

/// Gradients of the user-tower parameters; the history-embedding gradient is row-sparse.
public struct UserTowerGradients: Sendable, Equatable {
    public var historyEmbedding: RowSparseGradient
    public var hiddenWeight: Matrix
    public var hiddenBias: Matrix
    public var outputWeight: Matrix
    public var outputBias: Matrix

    public init(configuration: TwoTowerConfiguration) {
        let (n, d, h, i) = (configuration.itemCount, configuration.dimension, configuration.hiddenWidth, configuration.userInputWidth)
        historyEmbedding = RowSparseGradient(tableRows: n, columns: d)
        hiddenWeight = Matrix(rows: i, columns: h)
        hiddenBias = Matrix(rows: 1, columns: h)
        outputWeight = Matrix(rows: h, columns: d)
        outputBias = Matrix(rows: 1, columns: d)
    }

    /// Zeroes every gradient (keeps capacity).
    public mutating func reset() {
        historyEmbedding.reset()
        hiddenWeight.zero()
        hiddenBias.zero()
        outputWeight.zero()
        outputBias.zero()
    }

    /// Dense copies by parameter name (tests, aggregation).
    public var named: [String: Matrix] {
        [
            UserTower.historyEmbeddingName: historyEmbedding.dense(), UserTower.hiddenWeightName: hiddenWeight,
            UserTower.hiddenBiasName: hiddenBias, UserTower.outputWeightName: outputWeight, UserTower.outputBiasName: outputBias,
        ]
    }
}
