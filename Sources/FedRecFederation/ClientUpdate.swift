public import FedRecTensor

/// A client's gradient w.r.t. the item-embedding matrix it was sent.
public enum ItemEmbeddingGradient: Sendable, Equatable {
    /// Every row (full softmax touches the whole catalogue).
    case dense(Matrix)
    /// Only some rows (sampled softmax, or a client that scored a subset).
    case rowSparse(RowSparseGradient)

    public var rows: Int {
        switch self {
        case .dense(let m): m.rows
        case .rowSparse(let g): g.tableRows
        }
    }

    public var columns: Int {
        switch self {
        case .dense(let m): m.columns
        case .rowSparse(let g): g.columns
        }
    }

    /// The stored values (dense: all; row-sparse: the touched rows).
    public var storedValues: [Float] {
        switch self {
        case .dense(let m): m.storage
        case .rowSparse(let g): g.values
        }
    }

    /// `target += weight * self`.
    public func add(scaledBy weight: Float, to target: inout Matrix) {
        precondition(target.rows == rows && target.columns == columns, "item-embedding gradient shape")
        switch self {
        case .dense(let m):
            target.storage.withUnsafeMutableBufferPointer { t in
                m.storage.withUnsafeBufferPointer { s in
                    for i in 0..<t.count { t[i] += weight * s[i] }
                }
            }
        case .rowSparse(let g):
            let d = g.columns
            target.storage.withUnsafeMutableBufferPointer { t in
                g.values.withUnsafeBufferPointer { s in
                    for (slot, row) in g.rowIndices.enumerated() {
                        for j in 0..<d { t[Int(row) * d + j] += weight * s[slot * d + j] }
                    }
                }
            }
        }
    }

    /// A dense copy.
    public var dense: Matrix {
        switch self {
        case .dense(let m): m
        case .rowSparse(let g): g.dense()
        }
    }
}

/// What a client returns for one round.
public struct ClientUpdate: Sendable, Equatable {
    /// `local - global` user-tower parameters, flattened in `ParameterLayout.userTower` order.
    public var userTowerDelta: [Float]
    /// Example-weighted mean over the client's local steps of the gradient of its mean loss w.r.t. the
    /// (fixed) item-embedding matrix.
    public var itemEmbeddingGradient: ItemEmbeddingGradient
    /// Distinct local examples (the aggregation weight).
    public var exampleCount: Int
    /// Example-weighted mean data loss over the local steps (without the proximal term).
    public var meanLoss: Float
    /// Differential privacy: whether the update was within the round's clip norm before clipping (adaptive
    /// clipping's bit, `AdaptiveClippingState`); nil when the client did not clip.
    public var unclipped: Bool? = nil

    public init(
        userTowerDelta: [Float], itemEmbeddingGradient: ItemEmbeddingGradient, exampleCount: Int, meanLoss: Float
    ) {
        self.userTowerDelta = userTowerDelta
        self.itemEmbeddingGradient = itemEmbeddingGradient
        self.exampleCount = exampleCount
        self.meanLoss = meanLoss
    }
}

/// Checks an untrusted update before it reaches the aggregate.
extension ClientUpdate {
    /// L2 norm of the whole update: user-tower delta and item-embedding gradient as one vector.
    public var norm: Double {
        let delta = FlatVector.l2Norm(userTowerDelta)
        let gradient = FlatVector.l2Norm(itemEmbeddingGradient.storedValues)
        return (delta * delta + gradient * gradient).squareRoot()
    }

    /// Scales the whole update (delta and item gradient together) to L2 norm at most `bound` (DP-FedAvg's
    /// per-client clipping); returns whether it was scaled. Direction is preserved.
    @discardableResult
    public mutating func clip(toNorm bound: Float) -> Bool {
        precondition(bound > 0 && bound.isFinite, "clip norm must be positive")
        let norm = self.norm
        guard norm > Double(bound) else { return false }
        let scale = Float(Double(bound) / norm)
        for i in userTowerDelta.indices { userTowerDelta[i] *= scale }
        switch itemEmbeddingGradient {
        case .dense(var m):
            for i in 0..<m.storage.count { m.storage[i] *= scale }
            itemEmbeddingGradient = .dense(m)
        case .rowSparse(var g):
            g.scale(by: scale)
            itemEmbeddingGradient = .rowSparse(g)
        }
        return true
    }
}

public struct UpdateValidator: Sendable, Hashable {
    public var layout: ParameterLayout
    /// Shape of the item-embedding matrix (catalogue x d).
    public var itemRows: Int
    public var dimension: Int
    /// Upper bound on the L2 norm of the user-tower delta (nil: none).
    public var maximumDeltaNorm: Double?
    /// Upper bound on the L2 norm of the item-embedding gradient (nil: none).
    public var maximumItemGradientNorm: Double?
    /// Upper bound on the example count (nil: none); a client cannot buy weight by claiming many examples.
    public var maximumExampleCount: Int?

    public init(
        layout: ParameterLayout, itemRows: Int, dimension: Int, maximumDeltaNorm: Double? = nil,
        maximumItemGradientNorm: Double? = nil, maximumExampleCount: Int? = nil
    ) {
        self.layout = layout
        self.itemRows = itemRows
        self.dimension = dimension
        self.maximumDeltaNorm = maximumDeltaNorm
        self.maximumItemGradientNorm = maximumItemGradientNorm
        self.maximumExampleCount = maximumExampleCount
    }

    /// Throws a `FederationError` naming `client` and `round` for the first problem found: shape, example count,
    /// non-finite values, norm bounds (in that order).
    public func validate(_ update: ClientUpdate, client: ClientID, round: Int) throws {
        func fail(_ code: FederationError.Code, _ message: String) -> FederationError {
            FederationError(code: code, message: message, client: client, round: round)
        }
        guard update.userTowerDelta.count == layout.count else {
            throw fail(
                .wrongShape, "user-tower delta has \(update.userTowerDelta.count) values, expected \(layout.count)")
        }
        let g = update.itemEmbeddingGradient
        guard g.rows == itemRows, g.columns == dimension else {
            throw fail(
                .wrongShape, "item-embedding gradient is \(g.rows)x\(g.columns), expected \(itemRows)x\(dimension)")
        }
        if case .rowSparse(let sparse) = g {
            guard sparse.values.count == sparse.rowIndices.count * dimension,
                sparse.rowIndices.allSatisfy({ $0 >= 0 && Int($0) < itemRows })
            else { throw fail(.wrongShape, "row-sparse item-embedding gradient is inconsistent") }
        }
        guard update.exampleCount > 0 else {
            throw fail(.noExamples, "example count \(update.exampleCount) must be positive")
        }
        if let maximum = maximumExampleCount, update.exampleCount > maximum {
            throw fail(.tooManyExamples, "example count \(update.exampleCount) exceeds \(maximum)")
        }
        guard FlatVector.isFinite(update.userTowerDelta) else {
            throw fail(.nonFinite, "user-tower delta is not finite")
        }
        guard FlatVector.isFinite(g.storedValues) else {
            throw fail(.nonFinite, "item-embedding gradient is not finite")
        }
        guard update.meanLoss.isFinite else { throw fail(.nonFinite, "mean loss is not finite") }
        if let maximum = maximumDeltaNorm {
            let norm = FlatVector.l2Norm(update.userTowerDelta)
            guard norm <= maximum else { throw fail(.normTooLarge, "user-tower delta norm \(norm) exceeds \(maximum)") }
        }
        if let maximum = maximumItemGradientNorm {
            let norm = FlatVector.l2Norm(g.storedValues)
            guard norm <= maximum else {
                throw fail(.normTooLarge, "item-embedding gradient norm \(norm) exceeds \(maximum)")
            }
        }
    }
}

/// The example-weighted mean of a round's accepted updates.
public struct AggregateUpdate: Sendable, Equatable {
    /// `sum_k n_k delta_k / sum_k n_k`.
    public var meanDelta: [Float]
    /// `sum_k n_k g_k / sum_k n_k`.
    public var meanItemEmbeddingGradient: Matrix
    /// `sum_k n_k`.
    public var exampleCount: Int
    /// Example-weighted mean of the clients' mean losses.
    public var meanLoss: Double
    /// Contributors, in order of arrival.
    public var participants: [ClientID]
    /// Adaptive clipping: how many contributors reported an unclipped update (nil when none reported). Exact
    /// in plain aggregation; under secure aggregation it is a decoded sum, within the quantiser's error.
    public var unclippedCount: Double? = nil

    public init(
        meanDelta: [Float], meanItemEmbeddingGradient: Matrix, exampleCount: Int, meanLoss: Double,
        participants: [ClientID]
    ) {
        self.meanDelta = meanDelta
        self.meanItemEmbeddingGradient = meanItemEmbeddingGradient
        self.exampleCount = exampleCount
        self.meanLoss = meanLoss
        self.participants = participants
    }

    /// No contributor: zero mean delta and item-embedding gradient, no examples, loss 0. Under differential
    /// privacy a round nobody contributed to still closes, and its release is the noise alone.
    public static func empty(deltaCount: Int, itemRows: Int, dimension: Int) -> AggregateUpdate {
        AggregateUpdate(
            meanDelta: [Float](repeating: 0, count: deltaCount),
            meanItemEmbeddingGradient: Matrix(rows: itemRows, columns: dimension), exampleCount: 0, meanLoss: 0,
            participants: [])
    }
}

/// How updates are weighted in the mean.
public enum AggregationWeighting: String, Sendable, Hashable, Codable {
    /// FedAvg: by example count, `sum_k n_k x_k / sum_k n_k`.
    case examples
    /// DP-FedAvg: every client counts once, `sum_k x_k / K`, so one client's influence is bounded by its clip
    /// norm (`PrivateAggregation` then replaces K by the expected cohort size).
    case uniform
}

/// Streaming weighted sum: memory is one update's size whatever the cohort size.
public struct WeightedAggregator: Sendable {
    public let deltaCount: Int
    public let itemRows: Int
    public let dimension: Int
    public let weighting: AggregationWeighting
    private var weightSum: Double = 0
    private var deltaSum: [Float]
    private var itemGradientSum: Matrix
    private var lossSum: Double = 0
    public private(set) var exampleCount = 0
    public private(set) var participants: [ClientID] = []
    /// Unclipped bits of the added updates that reported one (nil: none did).
    private var unclippedCount: Int? = nil

    public init(deltaCount: Int, itemRows: Int, dimension: Int, weighting: AggregationWeighting = .examples) {
        self.weighting = weighting
        self.deltaCount = deltaCount
        self.itemRows = itemRows
        self.dimension = dimension
        deltaSum = [Float](repeating: 0, count: deltaCount)
        itemGradientSum = Matrix(rows: itemRows, columns: dimension)
    }

    /// Adds a (validated) update with weight `exampleCount`.
    public mutating func add(_ update: ClientUpdate, from client: ClientID) {
        precondition(update.userTowerDelta.count == deltaCount, "validate updates before aggregating them")
        let weight = weighting == .examples ? Float(update.exampleCount) : 1
        FlatVector.add(update.userTowerDelta, scaledBy: weight, to: &deltaSum)
        update.itemEmbeddingGradient.add(scaledBy: weight, to: &itemGradientSum)
        lossSum += Double(update.meanLoss) * Double(weight)
        weightSum += Double(weight)
        exampleCount += update.exampleCount
        participants.append(client)
        if let unclipped = update.unclipped { unclippedCount = (unclippedCount ?? 0) + (unclipped ? 1 : 0) }
    }

    /// The weighted means, or nil when nothing was added.
    public func result() -> AggregateUpdate? {
        guard weightSum > 0 else { return nil }
        let scale = Float(1 / weightSum)
        var gradient = itemGradientSum
        gradient.storage.withUnsafeMutableBufferPointer { g in
            for i in 0..<g.count { g[i] *= scale }
        }
        var aggregate = AggregateUpdate(
            meanDelta: deltaSum.map { $0 * scale }, meanItemEmbeddingGradient: gradient, exampleCount: exampleCount,
            meanLoss: lossSum / weightSum, participants: participants)
        aggregate.unclippedCount = unclippedCount.map(Double.init)
        return aggregate
    }
}

extension ClientUpdate {
    /// Whether the delta, the item-embedding gradient and the loss are all finite (local training that diverged
    /// gives NaN or infinity; the coordinator refuses such an update, so a client does not send it).
    public var isFinite: Bool {
        meanLoss.isFinite && FlatVector.isFinite(userTowerDelta) && FlatVector.isFinite(itemEmbeddingGradient.storedValues)
    }
}
