public import FedRecTensor

/// The item tower: `normalize(idEmbedding[i] + features[i] W + b)`.
///
/// Parameters (model-file names): `item_tower.id_embedding` (`itemCount x d`),
/// `item_tower.content_projection.weight` (`itemFeatureCount x d`, stored `in x out`),
/// `item_tower.content_projection.bias` (`d`).
/// Initialisation: ID embedding `normal(0, 1/sqrt(d))` (rows of about unit norm), projection Glorot uniform,
/// bias zero; each parameter from its own `SplitMix64.stream(seed:index:)`.
public struct ItemTower: Sendable, Equatable {
    public static let idEmbeddingName = "item_tower.id_embedding"
    public static let contentWeightName = "item_tower.content_projection.weight"
    public static let contentBiasName = "item_tower.content_projection.bias"

    public let configuration: TwoTowerConfiguration
    public var idEmbedding: Matrix
    public var contentWeight: Matrix
    public var contentBias: Matrix

    public init(configuration: TwoTowerConfiguration, seed: UInt64) {
        let (n, d, f) = (configuration.itemCount, configuration.dimension, configuration.itemFeatureCount)
        var rng0 = SplitMix64.stream(seed: seed, index: 1)
        var rng1 = SplitMix64.stream(seed: seed, index: 2)
        self.configuration = configuration
        self.idEmbedding = .normal(rows: n, columns: d, standardDeviation: 1 / Float(d).squareRoot(), using: &rng0)
        self.contentWeight = .glorotUniform(fanIn: f, fanOut: d, using: &rng1)
        self.contentBias = Matrix(rows: 1, columns: d)
    }

    public init(configuration: TwoTowerConfiguration, idEmbedding: Matrix, contentWeight: Matrix, contentBias: Matrix) {
        let (n, d, f) = (configuration.itemCount, configuration.dimension, configuration.itemFeatureCount)
        precondition(idEmbedding.rows == n && idEmbedding.columns == d, "item id embedding must be \(n)x\(d)")
        precondition(contentWeight.rows == f && contentWeight.columns == d, "content projection must be \(f)x\(d)")
        precondition(contentBias.count == d, "content bias must have \(d) entries")
        self.configuration = configuration
        self.idEmbedding = idEmbedding
        self.contentWeight = contentWeight
        self.contentBias = Matrix(rows: 1, columns: d, storage: contentBias.storage)
    }

    /// Parameters in model-file order, with their file shapes.
    public var namedParameters: [(name: String, shape: [Int], value: Matrix)] {
        [
            (Self.idEmbeddingName, [idEmbedding.rows, idEmbedding.columns], idEmbedding),
            (Self.contentWeightName, [contentWeight.rows, contentWeight.columns], contentWeight),
            (Self.contentBiasName, [contentBias.count], contentBias),
        ]
    }

    /// L2-normalised embeddings of catalogue items `rows` (nil: the whole catalogue, `itemCount x d`).
    public func embeddings(itemFeatures: SparseMatrix, rows: [Int32]? = nil) -> Matrix {
        var cache = ItemTowerCache()
        forward(itemFeatures: itemFeatures, rows: rows, cache: &cache)
        return cache.embeddings
    }

    /// Forward pass into a reusable cache.
    public func forward(itemFeatures: SparseMatrix, rows: [Int32]?, cache: inout ItemTowerCache) {
        checkFeatures(itemFeatures)
        let d = configuration.dimension
        SparseLinear.forward(features: itemFeatures, rows: rows, weight: contentWeight, bias: contentBias, into: &cache.embeddings)
        let n = cache.embeddings.rows
        idEmbedding.storage.withUnsafeBufferPointer { e in
            cache.embeddings.storage.withUnsafeMutableBufferPointer { out in
                for i in 0..<n {
                    let r = rows.map { Int($0[i]) } ?? i
                    precondition(r >= 0 && r < configuration.itemCount, "item \(r) outside the catalogue")
                    let src = e.baseAddress! + r * d, dst = out.baseAddress! + i * d
                    for j in 0..<d { dst[j] += src[j] }
                }
            }
        }
        L2Normalize.forwardInPlace(&cache.embeddings, norms: &cache.norms)
    }

    /// Back-propagates a gradient w.r.t. the normalised item embeddings of `rows` (nil: the whole catalogue)
    /// into the item-tower parameters. Recomputes the forward pass (cheap next to the loss).
    /// This is the central half of federated training: the coordinator feeds it the aggregated
    /// item-embedding gradient of the clients.
    public func backward(itemEmbeddingGradient: Matrix, itemFeatures: SparseMatrix, rows: [Int32]? = nil) -> ItemTowerGradients {
        var cache = ItemTowerCache()
        forward(itemFeatures: itemFeatures, rows: rows, cache: &cache)
        var gradients = ItemTowerGradients(configuration: configuration)
        var g = itemEmbeddingGradient
        backward(itemEmbeddingGradient: &g, cache: cache, itemFeatures: itemFeatures, rows: rows, into: &gradients)
        return gradients
    }

    /// Allocation-free backward: consumes `itemEmbeddingGradient` (overwritten) and accumulates into `gradients`.
    public func backward(
        itemEmbeddingGradient: inout Matrix, cache: ItemTowerCache, itemFeatures: SparseMatrix, rows: [Int32]?,
        into gradients: inout ItemTowerGradients
    ) {
        let d = configuration.dimension
        let n = rows?.count ?? configuration.itemCount
        precondition(itemEmbeddingGradient.rows == n && itemEmbeddingGradient.columns == d, "item-embedding gradient must be \(n)x\(d)")
        precondition(cache.embeddings.rows == n, "item-tower cache does not match the rows")
        L2Normalize.backward(output: cache.embeddings, norms: cache.norms, gradient: &itemEmbeddingGradient)
        itemEmbeddingGradient.storage.withUnsafeBufferPointer { g in
            gradients.idEmbedding.addRows(rows, count: n, from: g.baseAddress!)
        }
        SparseLinear.backward(
            features: itemFeatures, rows: rows, outputGradient: itemEmbeddingGradient,
            weightGradient: &gradients.contentWeight, biasGradient: &gradients.contentBias)
    }

    /// Applies one optimizer update (the caller calls `optimizer.beginStep()` first).
    public mutating func apply(_ gradients: ItemTowerGradients, optimizer: inout Optimizer) {
        optimizer.update(Self.idEmbeddingName, parameter: &idEmbedding, gradient: gradients.idEmbedding)
        if contentWeight.count > 0 {
            optimizer.update(Self.contentWeightName, parameter: &contentWeight, gradient: gradients.contentWeight)
        }
        optimizer.update(Self.contentBiasName, parameter: &contentBias, gradient: gradients.contentBias)
    }

    /// Checked in every build (`precondition` is gone under -Ounchecked): a wrong shape would read past rows.
    private func checkFeatures(_ features: SparseMatrix) {
        guard features.rows == configuration.itemCount else {
            fatalError("item features have \(features.rows) rows, catalogue has \(configuration.itemCount)")
        }
        guard features.columns == configuration.itemFeatureCount else {
            fatalError(
                "item features have \(features.columns) columns, configuration says \(configuration.itemFeatureCount)")
        }
    }
}

/// Forward state of the item tower kept for its backward pass.
public struct ItemTowerCache: Sendable {
    /// Normalised embeddings of the rows passed to `forward`.
    public internal(set) var embeddings = Matrix(rows: 0, columns: 0)
    var norms: [Float] = []
    public init() {}
}

/// Gradients of the item-tower parameters; the ID-embedding gradient is row-sparse.
public struct ItemTowerGradients: Sendable, Equatable {
    public var idEmbedding: RowSparseGradient
    public var contentWeight: Matrix
    public var contentBias: Matrix

    public init(configuration: TwoTowerConfiguration) {
        idEmbedding = RowSparseGradient(tableRows: configuration.itemCount, columns: configuration.dimension)
        contentWeight = Matrix(rows: configuration.itemFeatureCount, columns: configuration.dimension)
        contentBias = Matrix(rows: 1, columns: configuration.dimension)
    }

    /// Zeroes every gradient (keeps capacity).
    public mutating func reset() {
        idEmbedding.reset()
        contentWeight.zero()
        contentBias.zero()
    }

    /// Dense copies by parameter name (tests, aggregation).
    public var named: [String: Matrix] {
        [ItemTower.idEmbeddingName: idEmbedding.dense(), ItemTower.contentWeightName: contentWeight, ItemTower.contentBiasName: contentBias]
    }
}
