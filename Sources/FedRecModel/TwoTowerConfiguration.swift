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
        if let problem { preconditionFailure(problem) }
    }

    /// Largest accepted sizes: far above any real model, and low enough that no shape product or width sum can
    /// overflow (2^24 · 2^24 · 4 bytes < 2^63).
    public static let maximumWidth = 1 << 24
    public static let maximumCount = 1 << 31

    /// The first rule this configuration breaks, or nil. A decoded configuration (a model file, a coordinator's
    /// message) has skipped the initialiser's checks: readers call this and throw, since release builds of the
    /// numeric modules drop preconditions (`-Ounchecked`).
    public var problem: String? {
        let width = 1...Self.maximumWidth
        if !width.contains(dimension) { return "dimension \(dimension) must lie in \(width)" }
        if !width.contains(hiddenWidth) { return "hiddenWidth \(hiddenWidth) must lie in \(width)" }
        if !(tau > 0 && tau.isFinite) { return "tau \(tau) must be positive and finite" }
        if !(1...Self.maximumCount).contains(itemCount) {
            return "itemCount \(itemCount) must lie in 1...\(Self.maximumCount)"
        }
        if !(0..<Self.maximumWidth).contains(itemFeatureCount) || !(0..<Self.maximumWidth).contains(userFeatureCount) {
            return "feature counts \(itemFeatureCount), \(userFeatureCount) must lie in 0..<\(Self.maximumWidth)"
        }
        if let maxHistory, !(1...Self.maximumCount).contains(maxHistory) {
            return "maxHistory \(maxHistory) must lie in 1...\(Self.maximumCount)"
        }
        if sampledSoftmaxThreshold < 0 {  // only compared with the catalogue size: any non-negative value
            return "sampledSoftmaxThreshold \(sampledSoftmaxThreshold) must be non-negative"
        }
        if !(1...Self.maximumCount).contains(sampledNegatives) {
            return "sampledNegatives \(sampledNegatives) must lie in 1...\(Self.maximumCount)"
        }
        if case .unigram(let alpha) = negativeProposal, !(alpha >= 0 && alpha.isFinite) {
            return "unigram alpha \(alpha) must be non-negative and finite"
        }
        return nil
    }

    /// Whether training uses sampled softmax (catalogue above the threshold).
    public var usesSampledSoftmax: Bool { itemCount > sampledSoftmaxThreshold }

    /// Input width of the user MLP: history mean plus user features.
    public var userInputWidth: Int { dimension + userFeatureCount }
}
