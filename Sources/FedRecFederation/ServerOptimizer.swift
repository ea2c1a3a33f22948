public import FedRecModel
public import FedRecTensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the coordinator applies the mean client delta to the global user tower (Reddi et al. 2021,
/// "Adaptive Federated Optimization", Algorithm 2; FedAvg is `x += eta * delta`).
public enum ServerOptimizerConfiguration: Sendable, Hashable, Codable {
    /// `x += learningRate * delta` (learning rate 1: McMahan et al.'s FedAvg).
    case fedAvg(learningRate: Float)
    /// `m = b1 m + (1-b1) delta; v = b2 v + (1-b2) delta^2; x += eta m / (sqrt(v) + tau)`.
    case fedAdam(learningRate: Float, beta1: Float, beta2: Float, tau: Float)
    /// As FedAdam with Yogi's `v = v - (1-b2) delta^2 sign(v - delta^2)`.
    case fedYogi(learningRate: Float, beta1: Float, beta2: Float, tau: Float)
    /// Adam with Kingma & Ba's bias correction on the mean delta: moments from 0,
    /// `x += eta m/(1-b1^t) / (sqrt(v/(1-b2^t)) + epsilon)`. Without the correction (FedAdam as in Reddi et al.)
    /// the first few hundred steps move `(1-b1^t)/sqrt(1-b2^t)` times the learning rate (up to 6.5x at
    /// b2 0.999); with it a FedSGD round is exactly a central Adam step on the cohort's examples.
    case adam(learningRate: Float, beta1: Float, beta2: Float, epsilon: Float)

    public static let fedAvg = ServerOptimizerConfiguration.fedAvg(learningRate: 1)
    public static func fedAdam(learningRate: Float = 0.01, tau: Float = 1e-3) -> ServerOptimizerConfiguration {
        .fedAdam(learningRate: learningRate, beta1: 0.9, beta2: 0.99, tau: tau)
    }
    public static func fedYogi(learningRate: Float = 0.01, tau: Float = 1e-3) -> ServerOptimizerConfiguration {
        .fedYogi(learningRate: learningRate, beta1: 0.9, beta2: 0.99, tau: tau)
    }

    /// What is wrong with the hyper-parameters (for input read from a file), or nil.
    public var problem: String? {
        switch self {
        case .fedAvg(let eta):
            if !(eta > 0 && eta.isFinite) { return "server learning rate \(eta) must be positive" }
        case .fedAdam(let eta, let b1, let b2, let tau), .fedYogi(let eta, let b1, let b2, let tau),
            .adam(let eta, let b1, let b2, let tau):
            if !(eta > 0 && eta.isFinite) { return "server learning rate \(eta) must be positive" }
            if !((0..<1).contains(b1) && (0..<1).contains(b2)) { return "server betas \(b1), \(b2) must lie in [0, 1)" }
            if !(tau > 0 && tau.isFinite) { return "tau \(tau) must be positive" }
        }
        return nil
    }

    /// Traps on invalid hyper-parameters (programmer error).
    public func validate() {
        if let problem { preconditionFailure(problem) }
    }
}

/// Server optimizer state over a flat parameter vector. Adaptive moments start at `m = 0`, `v = tau^2`
/// (the paper's `v_{-1} >= tau^2`), without bias correction, as in the paper.
public struct ServerOptimizer: Sendable, Codable, Equatable {
    public let configuration: ServerOptimizerConfiguration
    /// Applied steps.
    public private(set) var step = 0
    private var first: [Float] = []
    private var second: [Float] = []

    public init(configuration: ServerOptimizerConfiguration) {
        configuration.validate()
        self.configuration = configuration
    }

    /// The adaptive moments (empty before the first FedAdam/FedYogi step and for FedAvg), for checkpoints.
    public var moments: (first: [Float], second: [Float]) { (first, second) }

    /// The same optimizer without its moments (what `state.json` stores; the moments go to a tensor file).
    public var withoutMoments: ServerOptimizer {
        var copy = self
        copy.first = []
        copy.second = []
        return copy
    }

    /// An optimizer resumed from a checkpoint. Precondition: both moments have the same length.
    public init(configuration: ServerOptimizerConfiguration, step: Int, first: [Float], second: [Float]) {
        configuration.validate()
        precondition(step >= 0 && first.count == second.count, "inconsistent server optimizer checkpoint")
        self.configuration = configuration
        self.step = step
        self.first = first
        self.second = second
    }

    /// Moves `parameters` along the mean client `delta` (`local - global`, a negative pseudo-gradient), with the
    /// configured server learning rate times `learningRateScale` (a schedule's multiplier).
    public mutating func apply(delta: [Float], to parameters: inout [Float], learningRateScale: Float = 1) {
        precondition(delta.count == parameters.count, "delta and parameters differ in length")
        precondition(learningRateScale > 0 && learningRateScale.isFinite, "learning-rate scale must be positive")
        step += 1
        switch configuration {
        case .fedAvg(let eta):
            FlatVector.add(delta, scaledBy: eta * learningRateScale, to: &parameters)
        case .adam(let eta, let b1, let b2, let epsilon):
            // 1 - b^t by repeated products would drift; Double's exp/log is exact enough for t in the millions.
            let t = Double(step)
            let c1 = Float(-expm1(t * log(Double(b1))))
            let c2 = Float(-expm1(t * log(Double(b2))))
            applyAdaptive(
                delta: delta, to: &parameters, beta1: b1, beta2: b2, epsilon: epsilon, initialSecond: 0,
                stepSize: eta * learningRateScale / c1, secondScale: 1 / c2, yogi: false)
        case .fedAdam(let eta, let b1, let b2, let tau):
            applyAdaptive(
                delta: delta, to: &parameters, beta1: b1, beta2: b2, epsilon: tau, initialSecond: tau * tau,
                stepSize: eta * learningRateScale, secondScale: 1, yogi: false)
        case .fedYogi(let eta, let b1, let b2, let tau):
            applyAdaptive(
                delta: delta, to: &parameters, beta1: b1, beta2: b2, epsilon: tau, initialSecond: tau * tau,
                stepSize: eta * learningRateScale, secondScale: 1, yogi: true)
        }
    }

    /// One adaptive step shared by FedAdam, FedYogi and bias-corrected Adam: moments start at 0 and
    /// `initialSecond`; `m = b1 m + (1-b1) d`; `v` by Adam's or Yogi's rule;
    /// `x += stepSize m / (sqrt(v secondScale) + epsilon)` (`secondScale` 1 without bias correction).
    private mutating func applyAdaptive(
        delta: [Float], to parameters: inout [Float], beta1 b1: Float, beta2 b2: Float, epsilon: Float,
        initialSecond: Float, stepSize: Float, secondScale: Float, yogi: Bool
    ) {
        let count = delta.count
        if first.count != count {
            first = [Float](repeating: 0, count: count)
            second = [Float](repeating: initialSecond, count: count)
        }
        parameters.withUnsafeMutableBufferPointer { x in
            delta.withUnsafeBufferPointer { g in
                first.withUnsafeMutableBufferPointer { m in
                    second.withUnsafeMutableBufferPointer { v in
                        Self.adaptiveKernel(
                            x.baseAddress!, g.baseAddress!, m.baseAddress!, v.baseAddress!, count: count,
                            beta1: b1, beta2: b2, epsilon: epsilon, stepSize: stepSize, secondScale: secondScale,
                            yogi: yogi)
                    }
                }
            }
        }
    }

    /// The element-wise step of `applyAdaptive`, eight lanes at a time (the compiler cannot vectorise the
    /// scalar loop: as far as it knows the four buffers may alias). Every lane does the scalar loop's operations
    /// in the same order, without fused multiply-adds, so the result is bit for bit the scalar one.
    private static func adaptiveKernel(
        _ x: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
        _ v: UnsafeMutablePointer<Float>, count: Int, beta1 b1: Float, beta2 b2: Float, epsilon: Float,
        stepSize: Float, secondScale: Float, yogi: Bool
    ) {
        typealias V = SIMD8<Float>
        let (xr, gr, mr, vr) = (
            UnsafeMutableRawPointer(x), UnsafeRawPointer(g), UnsafeMutableRawPointer(m), UnsafeMutableRawPointer(v)
        )
        var i = 0
        while i + 8 <= count {
            let offset = i * MemoryLayout<Float>.stride
            let d = gr.loadUnaligned(fromByteOffset: offset, as: V.self)
            let d2 = d * d
            let mi = b1 * mr.loadUnaligned(fromByteOffset: offset, as: V.self) + (1 - b1) * d
            var vi = vr.loadUnaligned(fromByteOffset: offset, as: V.self)
            if yogi {
                var sign = V(repeating: 0)
                sign.replace(with: 1, where: vi .> d2)
                sign.replace(with: -1, where: vi .< d2)
                vi = vi - (1 - b2) * d2 * sign
            } else {
                vi = b2 * vi + (1 - b2) * d2
            }
            mr.storeBytes(of: mi, toByteOffset: offset, as: V.self)
            vr.storeBytes(of: vi, toByteOffset: offset, as: V.self)
            let xi = xr.loadUnaligned(fromByteOffset: offset, as: V.self)
            xr.storeBytes(
                of: xi + stepSize * mi / ((vi * secondScale).squareRoot() + epsilon), toByteOffset: offset, as: V.self)
            i += 8
        }
        while i < count {
            let d = g[i]
            let d2 = d * d
            m[i] = b1 * m[i] + (1 - b1) * d
            if yogi {
                let s: Float = v[i] > d2 ? 1 : (v[i] < d2 ? -1 : 0)
                v[i] = v[i] - (1 - b2) * d2 * s
            } else {
                v[i] = b2 * v[i] + (1 - b2) * d2
            }
            x[i] += stepSize * m[i] / ((v[i] * secondScale).squareRoot() + epsilon)
            i += 1
        }
    }
}

/// The coordinator's model state: the global user tower (moved by a `ServerOptimizer`), the item tower
/// (trained centrally, never sent) and the item-embedding matrix the clients receive.
public struct FederatedServer: Sendable {
    public let configuration: TwoTowerConfiguration
    public private(set) var userTower: UserTower
    public private(set) var itemTower: ItemTower
    /// The item tower's forward pass at its current parameters: the next item step back-propagates through it
    /// instead of running the forward pass again.
    private var itemForward: ItemTowerCache
    /// Normalised item embeddings of the current item tower (what clients train against).
    public var itemEmbeddings: Matrix { itemForward.embeddings }
    public private(set) var serverOptimizer: ServerOptimizer
    public private(set) var itemOptimizer: Optimizer
    public let itemFeatures: SparseMatrix
    public let layout: ParameterLayout
    /// Aggregates applied so far.
    public private(set) var appliedRounds = 0

    /// A server whose optimizers start from zero.
    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, serverOptimizer: ServerOptimizerConfiguration,
        itemOptimizer: OptimizerConfiguration
    ) {
        self.init(
            model: model, itemFeatures: itemFeatures, serverOptimizer: ServerOptimizer(configuration: serverOptimizer),
            itemOptimizer: Optimizer(configuration: itemOptimizer))
    }

    /// A server that continues with existing optimizer state (a resumed coordinator).
    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, serverOptimizer: ServerOptimizer, itemOptimizer: Optimizer
    ) {
        self.configuration = model.configuration
        self.userTower = model.userTower
        self.itemTower = model.itemTower
        self.itemFeatures = itemFeatures
        self.serverOptimizer = serverOptimizer
        self.itemOptimizer = itemOptimizer
        self.layout = .userTower(model.configuration)
        var forward = ItemTowerCache()
        model.itemTower.forward(itemFeatures: itemFeatures, rows: nil, cache: &forward)
        self.itemForward = forward
    }

    public var model: TwoTowerModel { TwoTowerModel(userTower: userTower, itemTower: itemTower) }

    /// Applies one round's aggregate: the server optimizer on the user tower and the central item step
    /// (back-propagate the mean item-embedding gradient through the item tower, one optimizer step, recompute
    /// the item embeddings). Both learning rates are multiplied by `learningRateScale` (a schedule's value).
    /// The two steps share no state and each is deterministic, so they run side by side (two threads when the
    /// machine has them) with the same result as one after the other.
    public mutating func apply(_ aggregate: AggregateUpdate, learningRateScale: Float = 1) {
        var flat = userTower.flattened()
        // Moved out rather than copied: a fresh optimizer holds no moments.
        var userOptimizer = ServerOptimizer(configuration: serverOptimizer.configuration)
        swap(&userOptimizer, &serverOptimizer)
        concurrently {
            userOptimizer.apply(delta: aggregate.meanDelta, to: &flat, learningRateScale: learningRateScale)
        } _: {
            applyItemStep(
                itemEmbeddingGradient: aggregate.meanItemEmbeddingGradient, learningRateScale: learningRateScale)
        }
        swap(&userOptimizer, &serverOptimizer)
        userTower = UserTower(configuration: configuration, flattened: flat)
        appliedRounds += 1
    }

    /// The central item-tower step alone.
    public mutating func applyItemStep(itemEmbeddingGradient: Matrix, learningRateScale: Float = 1) {
        var gradient = itemEmbeddingGradient
        var gradients = ItemTowerGradients(configuration: configuration)
        itemTower.backward(
            itemEmbeddingGradient: &gradient, cache: itemForward, itemFeatures: itemFeatures, rows: nil,
            into: &gradients)
        itemOptimizer.beginStep(learningRateScale: learningRateScale)
        itemTower.apply(gradients, optimizer: &itemOptimizer)
        itemTower.forward(itemFeatures: itemFeatures, rows: nil, cache: &itemForward)
    }
}
