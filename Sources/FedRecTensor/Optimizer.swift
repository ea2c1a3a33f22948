/// Which update rule an `Optimizer` applies.
public enum OptimizerKind: String, Codable, Sendable {
    /// Adam (Kingma & Ba 2015) with bias correction.
    case adam
    /// Plain stochastic gradient descent.
    case sgd
}

/// Hyper-parameters of an `Optimizer`.
public struct OptimizerConfiguration: Codable, Sendable, Equatable {
    public var kind: OptimizerKind
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Decoupled weight decay (AdamW style: `p -= lr * weightDecay * p`); 0 disables it.
    /// Row-sparse updates decay only the touched rows.
    public var weightDecay: Float

    public init(
        kind: OptimizerKind = .adam, learningRate: Float = 0.005, beta1: Float = 0.9, beta2: Float = 0.999,
        epsilon: Float = 1e-8, weightDecay: Float = 0
    ) {
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        if let problem { preconditionFailure(problem) }
    }

    /// The first rule this configuration breaks, or nil: what the initialiser traps on, and what a reader of a
    /// decoded configuration (which skipped the initialiser) refuses.
    public var problem: String? {
        if !(learningRate > 0 && learningRate.isFinite) { return "learning rate \(learningRate) must be positive" }
        if !((0..<1).contains(beta1) && (0..<1).contains(beta2)) { return "optimizer betas must lie in [0, 1)" }
        if !(epsilon > 0 && epsilon.isFinite) { return "optimizer epsilon \(epsilon) must be positive" }
        if !(weightDecay >= 0 && weightDecay.isFinite) { return "weight decay \(weightDecay) must be non-negative" }
        return nil
    }

    public static func adam(learningRate: Float = 0.005, weightDecay: Float = 0) -> OptimizerConfiguration {
        OptimizerConfiguration(kind: .adam, learningRate: learningRate, weightDecay: weightDecay)
    }

    public static func sgd(learningRate: Float, weightDecay: Float = 0) -> OptimizerConfiguration {
        OptimizerConfiguration(kind: .sgd, learningRate: learningRate, weightDecay: weightDecay)
    }
}

/// An optimizer over named parameters: call `beginStep()` once per step, then `update` each parameter.
///
/// Adam moments live per parameter name and are created (zero) on first use. The row-sparse update is
/// "lazy" Adam (as TensorFlow's `LazyAdam`): only touched rows' moments decay and move, with the global
/// step's bias correction; for rows touched at every step it equals dense Adam exactly.
public struct Optimizer: Sendable {
    public let configuration: OptimizerConfiguration
    /// Completed `beginStep()` calls (Adam's `t`).
    public private(set) var step: Int = 0
    /// Multiplier of the configured learning rate for the current step (a schedule's value; 1 by default).
    public private(set) var learningRateScale: Float = 1
    private var moments: [String: Moments] = [:]

    struct Moments: Sendable {
        var first: [Float]
        var second: [Float]
    }

    public init(configuration: OptimizerConfiguration) {
        self.configuration = configuration
    }

    /// Names of the parameters with Adam moments (sorted), for checkpoints.
    public var momentNames: [String] { moments.keys.sorted() }

    /// Adam's first and second moments of `name`, if it has been updated.
    public func moments(of name: String) -> (first: [Float], second: [Float])? {
        moments[name].map { ($0.first, $0.second) }
    }

    /// An optimizer resumed from a checkpoint: `step` completed steps and the moments per parameter name.
    /// Precondition: each pair has two equally long vectors.
    public init(configuration: OptimizerConfiguration, step: Int, moments: [String: (first: [Float], second: [Float])]) {
        precondition(step >= 0, "step must be non-negative")
        self.configuration = configuration
        self.step = step
        for (name, pair) in moments {
            precondition(pair.first.count == pair.second.count, "moments of \(name) differ in length")
            self.moments[name] = Moments(first: pair.first, second: pair.second)
        }
    }

    /// Starts a step (advances Adam's bias-correction counter) whose learning rate is the configured one times
    /// `learningRateScale` (a schedule's multiplier; must be positive and finite).
    public mutating func beginStep(learningRateScale: Float = 1) {
        precondition(learningRateScale > 0 && learningRateScale.isFinite, "learning-rate scale must be positive")
        step += 1
        self.learningRateScale = learningRateScale
    }

    /// The configuration in force for the current step (learning rate scaled).
    private var scaledConfiguration: OptimizerConfiguration {
        var config = configuration
        config.learningRate *= learningRateScale
        return config
    }

    private var biasCorrections: (Float, Float) {
        let t = Double(max(step, 1))
        let c1 = 1 - _pow(Double(configuration.beta1), t)
        let c2 = 1 - _pow(Double(configuration.beta2), t)
        return (Float(c1), Float(c2))
    }

    /// Dense update of `parameter` with `gradient` of the same shape.
    public mutating func update(_ name: String, parameter: inout Matrix, gradient: Matrix) {
        precondition(parameter.rows == gradient.rows && parameter.columns == gradient.columns, "\(name): gradient shape differs from the parameter")
        let count = parameter.count
        let config = scaledConfiguration
        let decay = 1 - config.learningRate * config.weightDecay
        switch config.kind {
        case .sgd:
            parameter.storage.withUnsafeMutableBufferPointer { p in
                gradient.storage.withUnsafeBufferPointer { g in
                    for i in 0..<count { p[i] = p[i] * decay - config.learningRate * g[i] }
                }
            }
        case .adam:
            let (c1, c2) = biasCorrections
            var state = moments.removeValue(forKey: name) ?? Moments(first: .init(repeating: 0, count: count), second: .init(repeating: 0, count: count))
            precondition(state.first.count == count, "\(name): parameter size changed")
            parameter.storage.withUnsafeMutableBufferPointer { p in
                gradient.storage.withUnsafeBufferPointer { g in
                    state.first.withUnsafeMutableBufferPointer { m in
                        state.second.withUnsafeMutableBufferPointer { v in
                            Self.adamKernel(
                                p.baseAddress!, g.baseAddress!, m.baseAddress!, v.baseAddress!, count: count,
                                config: config, c1: c1, c2: c2, decay: decay)
                        }
                    }
                }
            }
            moments[name] = state
        }
    }

    /// Row-sparse (lazy) update: only the rows in `gradient.rowIndices` change.
    public mutating func update(_ name: String, parameter: inout Matrix, gradient: RowSparseGradient) {
        precondition(parameter.rows == gradient.tableRows && parameter.columns == gradient.columns, "\(name): gradient shape differs from the parameter")
        let d = parameter.columns
        let config = scaledConfiguration
        let decay = 1 - config.learningRate * config.weightDecay
        let (c1, c2) = biasCorrections
        switch config.kind {
        case .sgd:
            parameter.storage.withUnsafeMutableBufferPointer { p in
                gradient.values.withUnsafeBufferPointer { g in
                    for (slot, row) in gradient.rowIndices.enumerated() {
                        let pr = p.baseAddress! + Int(row) * d, gr = g.baseAddress! + slot * d
                        for j in 0..<d { pr[j] = pr[j] * decay - config.learningRate * gr[j] }
                    }
                }
            }
        case .adam:
            var state = moments.removeValue(forKey: name) ?? Moments(first: .init(repeating: 0, count: parameter.count), second: .init(repeating: 0, count: parameter.count))
            precondition(state.first.count == parameter.count, "\(name): parameter size changed")
            parameter.storage.withUnsafeMutableBufferPointer { p in
                gradient.values.withUnsafeBufferPointer { g in
                    state.first.withUnsafeMutableBufferPointer { m in
                        state.second.withUnsafeMutableBufferPointer { v in
                            for (slot, row) in gradient.rowIndices.enumerated() {
                                let offset = Int(row) * d
                                Self.adamKernel(
                                    p.baseAddress! + offset, g.baseAddress! + slot * d, m.baseAddress! + offset,
                                    v.baseAddress! + offset, count: d, config: config, c1: c1, c2: c2, decay: decay)
                            }
                        }
                    }
                }
            }
            moments[name] = state
        }
    }

    private static func adamKernel(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
        _ v: UnsafeMutablePointer<Float>, count: Int, config: OptimizerConfiguration, c1: Float, c2: Float, decay: Float
    ) {
        let (b1, b2) = (config.beta1, config.beta2)
        let stepSize = config.learningRate / c1
        let invC2 = 1 / c2
        let epsilon = config.epsilon
        // Eight lanes at a time (the pointers may alias as far as the compiler knows, so it will not vectorise).
        typealias V = SIMD8<Float>
        var i = 0
        let (pr, gr, mr, vr) = (UnsafeMutableRawPointer(p), UnsafeRawPointer(g), UnsafeMutableRawPointer(m), UnsafeMutableRawPointer(v))
        while i + 8 <= count {
            let offset = i * 4
            let gi = gr.loadUnaligned(fromByteOffset: offset, as: V.self)
            let mi = b1 * mr.loadUnaligned(fromByteOffset: offset, as: V.self) + (1 - b1) * gi
            let vi = b2 * vr.loadUnaligned(fromByteOffset: offset, as: V.self) + (1 - b2) * gi * gi
            mr.storeBytes(of: mi, toByteOffset: offset, as: V.self)
            vr.storeBytes(of: vi, toByteOffset: offset, as: V.self)
            let pi = pr.loadUnaligned(fromByteOffset: offset, as: V.self)
            pr.storeBytes(of: pi * decay - stepSize * mi / ((vi * invC2).squareRoot() + epsilon), toByteOffset: offset, as: V.self)
            i += 8
        }
        while i < count {
            let gi = g[i]
            let mi = b1 * m[i] + (1 - b1) * gi
            let vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = p[i] * decay - stepSize * mi / ((vi * invC2).squareRoot() + epsilon)
            i += 1
        }
    }
}
