public import FedRecModel
public import FedRecTensor

/// Multiplier of the server and item-tower learning rates per round (the coordinator scales both).
///
/// Invariant: `multiplier(round:)` is positive and finite for every round >= 0.
public enum LearningRateSchedule: Sendable, Hashable, Codable {
    /// 1 in every round.
    case constant
    /// Linear warm-up from `1/(warmup+1)` to 1 over the first `warmup` rounds, then cosine decay from 1 to
    /// `floor` at round `rounds - 1` (and `floor` after it).
    case cosine(rounds: Int, warmup: Int, floor: Float)

    /// The multiplier of 0-based round `round`.
    public func multiplier(round: Int) -> Float {
        switch self {
        case .constant:
            return 1
        case .cosine(let rounds, let warmup, let floor):
            if round < warmup { return Float(round + 1) / Float(warmup + 1) }
            let span = max(1, rounds - 1 - warmup)
            let progress = min(1, Double(round - warmup) / Double(span))
            let cosine = 0.5 * (1 + _cos(Double.pi * progress))
            return floor + (1 - floor) * Float(cosine)
        }
    }

    /// Traps on invalid settings (programmer error; the CLI validates first).
    public func validate() {
        if case .cosine(let rounds, let warmup, let floor) = self {
            precondition(rounds >= 1 && warmup >= 0 && warmup < rounds, "cosine schedule needs 0 <= warmup < rounds")
            precondition(floor > 0 && floor <= 1, "cosine schedule floor must lie in (0, 1]")
        }
    }
}

/// An exponential moving average of a model's parameters (Polyak averaging of the global model across
/// rounds), used for evaluation and the saved model while training moves the raw weights.
///
/// The decay of update `t` (1-based) is `min(decay, (1 + t) / (warmup + t))` (warm-up 10 as TensorFlow's
/// `ExponentialMovingAverage(num_updates:)`; 2 is a running mean of every round's model, the start counting
/// twice, until the cap binds), so early
/// rounds are not dominated by the initial weights. Invariant: `parameters` has the model's names and shapes.
public struct ModelAverage: Sendable {
    public let decay: Float
    /// `warmup > 1` in the decay rule above.
    public let warmup: Float
    /// The warm-up of TensorFlow's `ExponentialMovingAverage(num_updates:)`, and fedrec's before `--average-warmup`
    /// existed: the library default, and the value a run fingerprint leaves out.
    public static let standardWarmup: Float = 10
    public private(set) var updates: Int
    private let configuration: TwoTowerConfiguration
    private var parameters: [String: Matrix]

    /// Starts the average at `model`. Precondition: `decay` in [0, 1).
    public init(model: TwoTowerModel, decay: Float, warmup: Float = standardWarmup, updates: Int = 0) {
        precondition(decay >= 0 && decay < 1, "average decay must lie in [0, 1)")
        precondition(warmup > 1 && warmup.isFinite, "average warm-up must exceed 1")
        self.decay = decay
        self.warmup = warmup
        self.updates = updates
        configuration = model.configuration
        parameters = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.value) })
    }

    /// Resumes an average from saved parameters (same names and shapes as the model's).
    public init(
        configuration: TwoTowerConfiguration, parameters: [String: Matrix], decay: Float,
        warmup: Float = standardWarmup,
        updates: Int
    ) {
        precondition(decay >= 0 && decay < 1, "average decay must lie in [0, 1)")
        precondition(warmup > 1 && warmup.isFinite, "average warm-up must exceed 1")
        self.decay = decay
        self.warmup = warmup
        self.updates = updates
        self.configuration = configuration
        self.parameters = parameters
    }

    /// Folds the model after one more round into the average.
    public mutating func update(with model: TwoTowerModel) {
        updates += 1
        let t = Float(updates)
        let d = min(decay, (1 + t) / (warmup + t))
        for (name, _, value) in model.namedParameters {
            precondition(parameters[name]?.count == value.count, "\(name): shape changed")
            // In place: a local copy of the dictionary's matrix would copy its storage every round.
            parameters[name]!.storage.withUnsafeMutableBufferPointer { a in
                value.storage.withUnsafeBufferPointer { x in
                    for i in 0..<a.count { a[i] = d * a[i] + (1 - d) * x[i] }
                }
            }
        }
    }

    /// The averaged model.
    public var model: TwoTowerModel { TwoTowerModel(configuration: configuration, parameters: parameters) }

    /// The averaged parameters by name (for checkpoints).
    public var namedParameters: [String: Matrix] { parameters }
}
