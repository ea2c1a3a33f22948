/// How negatives are drawn for sampled softmax.
public enum NegativeProposal: Codable, Sendable, Equatable {
    /// Every catalogue item equally likely.
    case uniform
    /// `Q(i) ∝ (count_i + 1)^alpha` over training-item frequencies (word2vec's 0.75 by default).
    case unigram(alpha: Double)
}

/// Shape and hyper-parameters of the two-tower model (saved in the model file as JSON).
public struct TwoTowerConfiguration: Codable, Sendable, Equatable {
    /// Embedding width `d` of both towers.
    public var dimension: Int
    /// Width of the user-tower MLP's hidden layer.
    public var hiddenWidth: Int
    /// Softmax temperature: logits are `cosine / tau`.
    public var tau: Float
    /// Catalogue size (rows of both embedding tables).
    public var itemCount: Int
    /// Columns of the item content-feature matrix (0: ID embedding only).
    public var itemFeatureCount: Int
    /// Columns of the user-feature matrix (0: history only).
    public var userFeatureCount: Int
    /// Cap on the history: the most recent `maxHistory` other known items; nil uses all of them.
    public var maxHistory: Int?
    /// Catalogues with more items than this train with sampled softmax.
    public var sampledSoftmaxThreshold: Int
    /// Negatives drawn (with replacement) per batch for sampled softmax.
    public var sampledNegatives: Int
    /// Proposal distribution of the sampled negatives.
    public var negativeProposal: NegativeProposal

    public init(
        dimension: Int = 64, hiddenWidth: Int = 128, tau: Float = 0.1, itemCount: Int, itemFeatureCount: Int = 0,
        userFeatureCount: Int = 0, maxHistory: Int? = nil, sampledSoftmaxThreshold: Int = 20_000,
        sampledNegatives: Int = 2_048, negativeProposal: NegativeProposal = .unigram(alpha: 0.75)
    ) {
        self.dimension = dimension
        self.hiddenWidth = hiddenWidth
        self.tau = tau
        self.itemCount = itemCount
        self.itemFeatureCount = itemFeatureCount
        self.userFeatureCount = userFeatureCount
        self.maxHistory = maxHistory
        self.sampledSoftmaxThreshold = sampledSoftmaxThreshold
        self.sampledNegatives = sampledNegatives
        self.negativeProposal = negativeProposal
        validate()
    }

    /// Traps on invalid hyper-parameters (programmer error; CLI input is validated before it gets here).
    public func validate() {
        precondition(dimension > 0, "dimension must be positive")
        precondition(hiddenWidth > 0, "hiddenWidth must be positive")
        precondition(tau > 0 && tau.isFinite, "tau must be positive")
        precondition(itemCount > 0, "itemCount must be positive")
        precondition(itemFeatureCount >= 0 && userFeatureCount >= 0, "feature counts must be non-negative")
        precondition(maxHistory.map { $0 > 0 } ?? true, "maxHistory must be positive")
        precondition(sampledSoftmaxThreshold >= 0, "sampledSoftmaxThreshold must be non-negative")
        precondition(sampledNegatives > 0, "sampledNegatives must be positive")
        if case .unigram(let alpha) = negativeProposal { precondition(alpha >= 0 && alpha.isFinite, "unigram alpha must be >= 0") }
    }

    /// Whether training uses sampled softmax (catalogue above the threshold).
    public var usesSampledSoftmax: Bool { itemCount > sampledSoftmaxThreshold }

    /// Input width of the user MLP: history mean plus user features.
    public var userInputWidth: Int { dimension + userFeatureCount }
}
