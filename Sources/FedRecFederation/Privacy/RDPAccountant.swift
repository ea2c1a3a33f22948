#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the accountant evaluates the RDP of the sampled Gaussian mechanism at fractional orders (integer
/// orders always use the exact finite binomial sum, Mironov, Talwar, Zhang 2019, Section 3.2).
public enum FractionalOrderEvaluation: String, Sendable, Hashable, Codable, CaseIterable {
    /// The defining integral `A_α = E_{μ0}[(μ/μ0)^α]` (and `B_α`, taking the larger) by an exponentially
    /// convergent trapezoidal rule in log space. Exact to about 1e−12 relative, defined at every order (no
    /// order is excluded) for noise multipliers above ~0.015 (below, where the grid would get too fine, it
    /// falls back to the dp-accounting series, an upper bound), and never above `dpAccounting`'s value, so
    /// the epsilon it reports is at most dp-accounting's and often lower. The default.
    case exactIntegral
    /// Bit-for-bit the rule of Google's dp-accounting 0.6 (`_compute_log_a_frac`): the binomial series of
    /// Mironov et al. Section 3.3 summed with absolute coefficients (an upper bound on `A_α`), and an order
    /// excluded (RDP `+infinity`) when the series has not converged after 1000 terms. Use it to reproduce
    /// dp-accounting's numbers.
    case dpAccounting
}

/// An `(ε, δ)` guarantee derived from an RDP curve, and the order that attained it.
public struct EpsilonGuarantee: Sendable, Hashable {
    public var epsilon: Double
    public var delta: Double
    /// The order whose conversion gave the smallest epsilon (nil when no order was involved, e.g. `δ = 0`).
    public var order: Double?

    public init(epsilon: Double, delta: Double, order: Double?) {
        self.epsilon = epsilon
        self.delta = delta
        self.order = order
    }
}

/// Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism, the accountant of DP-FedAvg
/// (McMahan et al. 2018) with client-level sampling rate `q` and noise multiplier `z = σ / S`.
///
/// Invariants and conventions, all as Google's dp-accounting 0.6 `RdpAccountant`:
/// - RDP curves are arrays aligned with `orders`; each value is `≥ 0` and may be `+infinity`.
/// - Composition is additive per order (Mironov 2017, Proposition 1): `T` identical steps give `T · ε(α)`.
/// - Conversion to `(ε, δ)` is Proposition 12 of Canonne, Kamath, Steinke 2020 (arXiv 2004.00010), also
///   Asoodeh et al. 2020 (arXiv 2001.05990) Equation 20, minimised over the orders (see `epsilon(orders:rdp:delta:)`).
///
/// Fractional orders: dp-accounting 0.6 leaves out low fractional orders whose series did not converge and
/// overestimates the others (`FractionalOrderEvaluation.dpAccounting`). By default (`.exactIntegral`) this
/// accountant evaluates every fractional order exactly, so it reports an epsilon lower than or equal to
/// dp-accounting's, never a higher one; with `.dpAccounting` it reproduces dp-accounting.
public struct RDPAccountant: Sendable, Hashable, Codable {
    /// dp-accounting's default orders: 1.1, 1.2, …, 10.9, then 11, 12, …, 63, then 128, 256, 512, 1024.
    public static let defaultOrders: [Double] =
        (1...99).map { 1 + Double($0) / 10 } + (11...63).map { Double($0) } + [128, 256, 512, 1024]

    /// The orders the curve is evaluated at, each `> 1`.
    public let orders: [Double]
    public let fractionalOrders: FractionalOrderEvaluation

    public init(
        orders: [Double] = RDPAccountant.defaultOrders, fractionalOrders: FractionalOrderEvaluation = .exactIntegral
    ) {
        precondition(!orders.isEmpty, "an RDP accountant needs at least one order")
        precondition(orders.allSatisfy { $0 > 1 }, "RDP orders must exceed 1")
        self.orders = orders
        self.fractionalOrders = fractionalOrders
    }

    /// The RDP curve of ONE step of the Poisson-subsampled Gaussian mechanism with sampling rate `q ∈ [0, 1]`
    /// and noise multiplier `z ≥ 0`, aligned with `orders`.
    public func rdpPerStep(samplingRate q: Double, noiseMultiplier z: Double) -> [Double] {
        orders.map {
            SampledGaussianRDP.rdp(samplingRate: q, noiseMultiplier: z, order: $0, fractionalOrders: fractionalOrders)
        }
    }

    /// The RDP curve of `steps` identical steps (additive composition; `0 · ∞` is taken as 0).
    public func rdp(samplingRate q: Double, noiseMultiplier z: Double, steps: Int) -> [Double] {
        precondition(steps >= 0, "step count must be non-negative")
        if steps == 0 { return [Double](repeating: 0, count: orders.count) }
        return rdpPerStep(samplingRate: q, noiseMultiplier: z).map { Double(steps) * $0 }
    }

    /// `(ε, δ)` of a composed curve (aligned with `orders`).
    public func epsilon(rdp: [Double], delta: Double) -> EpsilonGuarantee {
        Self.epsilon(orders: orders, rdp: rdp, delta: delta)
    }

    /// `(ε, δ)` after `steps` steps of the sampled Gaussian mechanism.
    public func epsilon(samplingRate q: Double, noiseMultiplier z: Double, steps: Int, delta: Double)
        -> EpsilonGuarantee
    {
        epsilon(rdp: rdp(samplingRate: q, noiseMultiplier: z, steps: steps), delta: delta)
    }

    /// dp-accounting's `compute_epsilon`: for each order `α` with RDP `r`,
    ///
    ///     ε(α) = r + log1p(−1/α) − log(δ · α) / (α − 1)          (Canonne, Kamath, Steinke 2020, Prop. 12)
    ///
    /// except that `ε(α) = 0` when `δ² + expm1(−r) > 0` (then `δ ≥ √(1 − e^{−KL})` already, a KL-divergence
    /// bound), `ε(α) = 0` for a negative (rounding) `r`, and `ε(α) = ∞` for `α ≤ 1.01`, where the bound is
    /// numerically unstable. The result is the minimum over orders (first minimising order), floored at 0.
    /// With `δ = 0` the result is 0 if every `r` is 0, else `∞`. Per order this is smaller than the classical
    /// `r − log(δ) / (α − 1)` (Mironov 2017, Proposition 3) by `log(α / (α − 1)) + log(α) / (α − 1) > 0`.
    public static func epsilon(orders: [Double], rdp: [Double], delta: Double) -> EpsilonGuarantee {
        precondition(delta >= 0 && !delta.isNaN, "delta must be non-negative")
        precondition(orders.count == rdp.count, "orders and RDP values must have the same length")
        precondition(!orders.isEmpty, "need at least one order")
        if delta == 0 {
            return EpsilonGuarantee(epsilon: rdp.allSatisfy { $0 == 0 } ? 0 : .infinity, delta: 0, order: nil)
        }
        var best = Double.infinity
        var bestIndex = 0
        for (index, (alpha, r)) in zip(orders, rdp).enumerated() {
            precondition(alpha >= 1, "RDP orders must be at least 1")
            let epsilon: Double
            if r < 0 {
                epsilon = 0
            } else if delta * delta + expm1(-r) > 0 {
                epsilon = 0
            } else if alpha > 1.01 {
                epsilon = r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
            } else {
                epsilon = .infinity
            }
            if epsilon < best {
                best = epsilon
                bestIndex = index
            }
        }
        return EpsilonGuarantee(epsilon: max(0, best), delta: delta, order: orders[bestIndex])
    }

    /// The classical conversion `min_α r(α) − log(δ) / (α − 1)` (Mironov 2017, Proposition 3), looser than
    /// `epsilon(orders:rdp:delta:)`; kept for comparison only, the accountant never uses it.
    public static func classicalEpsilon(orders: [Double], rdp: [Double], delta: Double) -> Double {
        precondition(delta > 0 && orders.count == rdp.count)
        return max(0, zip(orders, rdp).map { alpha, r in r - log(delta) / (alpha - 1) }.min() ?? .infinity)
    }
}
