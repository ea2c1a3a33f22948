#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rényi differential privacy of one step of the Poisson-subsampled Gaussian mechanism (SGM): each client is
/// included independently with probability `q`, the included clipped updates (L2 sensitivity 1 after dividing
/// by the clip norm) are summed and Gaussian noise of standard deviation `σ` (the noise multiplier) is added.
///
/// Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (arXiv
/// 1908.10530): with `μ0 = N(0, σ²)`, `μ1 = N(1, σ²)` and `μ = (1 − q) μ0 + q μ1`, the SGM is
/// `(α, ε(α))`-RDP with `ε(α) = log(max(A_α, B_α)) / (α − 1)` (Theorem 4), where
///
///     A_α = E_{z∼μ0}[(μ(z) / μ0(z))^α],   B_α = E_{z∼μ}[(μ0(z) / μ(z))^α],
///
/// and `A_α ≥ B_α` (Theorem 5), so dp-accounting reports `log(A_α) / (α − 1)` (add-or-remove-one neighbours).
/// The exact fractional path here takes `max(A_α, B_α)` anyway, so it does not even lean on Theorem 5.
///
/// Everything is computed in log space (log-sum-exp, `lgamma` binomials), so large orders (1024 and beyond),
/// small noise and tiny sampling rates neither overflow nor underflow.
enum SampledGaussianRDP {
    /// Terms dp-accounting 0.6 sums before it gives up on a fractional order (`_MAX_STEPS_LOG_A_FRAC`).
    static let maximumSeriesTerms = 1000

    /// Quadrature grids larger than this (noise multipliers below about 0.015) fall back to the series.
    static let maximumQuadraturePoints = 1 << 17

    /// The RDP `ε(α)` of one SGM step; `+infinity` when it is unbounded or (series evaluation only) when the
    /// series did not converge. Never negative: a rounding residue below zero is reported as 0.
    ///
    /// Edge cases as dp-accounting: `q == 0` gives 0 (nothing is released about anyone), otherwise
    /// `σ == 0` or an infinite order gives `+infinity`, and `q == 1` is the plain Gaussian mechanism,
    /// `α / (2σ²)`.
    static func rdp(
        samplingRate q: Double, noiseMultiplier sigma: Double, order alpha: Double,
        fractionalOrders evaluation: FractionalOrderEvaluation
    ) -> Double {
        precondition(q >= 0 && q <= 1, "sampling rate must lie in [0, 1]")
        precondition(sigma >= 0 && !sigma.isNaN, "noise multiplier must be non-negative")
        precondition(alpha > 1, "RDP orders must exceed 1")
        if q == 0 { return 0 }
        if alpha.isInfinite || sigma == 0 { return .infinity }
        if sigma.isInfinite { return 0 }
        if q == 1 { return alpha / (2 * sigma * sigma) }

        let logA: Double
        if alpha == alpha.rounded(), alpha < 0x1p53 {
            logA = logAIntegerOrder(q: q, sigma: sigma, alpha: Int(alpha))
        } else {
            switch evaluation {
            case .dpAccounting:
                logA = logAFractionalSeries(q: q, sigma: sigma, alpha: alpha) ?? .infinity
            case .exactIntegral:
                if let a = logIntegral(q: q, sigma: sigma, alpha: alpha, exponentOfMixture: alpha),
                    let b = logIntegral(q: q, sigma: sigma, alpha: alpha, exponentOfMixture: 1 - alpha)
                {
                    logA = max(a, b)
                } else {
                    // Grid too fine to afford: the series is an upper bound on A_α, so this stays sound.
                    logA = logAFractionalSeries(q: q, sigma: sigma, alpha: alpha) ?? .infinity
                }
            }
        }
        // NaN (2σ² underflowing to 0 makes 0/0 terms) is no bound at all: +infinity, never `max`'s 0.
        return logA.isNaN ? .infinity : max(0, logA / (alpha - 1))
    }

    // MARK: Integer orders (Mironov et al. 2019, Section 3.2)

    /// `log A_α` for integer `α`, `0 < q < 1`: the binomial expansion
    /// `A_α = Σ_{i=0}^{α} C(α, i) q^i (1 − q)^{α−i} exp((i² − i) / (2σ²))`, exact (finitely many terms).
    static func logAIntegerOrder(q: Double, sigma: Double, alpha: Int) -> Double {
        let logQ = log(q)
        let log1mQ = log1p(-q)
        let twoSigmaSquared = 2 * sigma * sigma
        var sum = LogSumExp()
        for i in 0...alpha {
            let di = Double(i)
            let logCoefficient = logBinomial(Double(alpha), di) + di * logQ + Double(alpha - i) * log1mQ
            sum.add(logCoefficient + (di * di - di) / twoSigmaSquared)
        }
        return sum.value
    }

    // MARK: Fractional orders, exact: quadrature of the defining integral

    /// `log ∫ φ_σ(z) · m(z)^e dz` with `m(z) = μ(z)/μ0(z) = (1 − q) + q·exp((2z − 1) / (2σ²))`:
    /// `e = α` gives `A_α`, `e = 1 − α` gives `B_α` (since `μ0^α μ^{1−α} = μ0 · m^{1−α}`).
    ///
    /// Trapezoidal rule on a uniform grid, which converges geometrically for integrands analytic in a strip
    /// `|Im z| < a` (Trefethen & Weideman 2014, "The exponentially convergent trapezoidal rule", Theorem 5.1:
    /// error ≲ `M / (e^{2πa/h} − 1)`). For `|Im z| < πσ²`, `m(z)` stays off `(−∞, 0]`, so `m^e` is analytic;
    /// `|m(z)|^α ≤ m(Re z)^α` and `|φ_σ(z)| = φ_σ(Re z) e^{(Im z)²/(2σ²)}`. With `h = min(σ, πσ²) / 8` and
    /// `a = min(σ, 0.9πσ²)` the error factor for `A_α` is below `e^{−44}`: far below double precision
    /// (`B_α ≤ A_α` only guards, its accuracy does not limit the result).
    /// Range: for `e ≥ 1`, `m^e ≤ 2^{e−1}((1 − q)^e + q^e e^{e(2z−1)/(2σ²)})`, i.e. `φ_σ m^e` lies below
    /// `2^{e−1}` times two Gaussians of width `σ` centred at 0 and `e`, each with mass at most `A_α`; for `e < 0`,
    /// `m^e` is below each term alone. Stopping `Kσ` beyond both centres with `K²/2 = 80 + |e| log 2` drops
    /// less than `e^{−80}` relative. Checked against 40-digit `mpmath` quadrature and, at integer orders,
    /// against the exact binomial sum (agreement ~1e−12 relative, ~1e−16 absolute in `log A_α`).
    ///
    /// Returns nil when the grid would exceed `maximumQuadraturePoints` (noise multipliers below ~0.015).
    static func logIntegral(q: Double, sigma: Double, alpha: Double, exponentOfMixture e: Double) -> Double? {
        let h = min(sigma, Double.pi * sigma * sigma) / 8
        let k = (2 * (80 + abs(e) * log(2.0))).squareRoot()
        let lower = min(0, e) - k * sigma
        let upper = max(0, e) + k * sigma
        // Compared before converting: for σ below ~1e-9 the ratio exceeds Int.max (or h underflows to 0).
        let intervals = ((upper - lower) / h).rounded(.up)
        guard intervals.isFinite, intervals < Double(maximumQuadraturePoints) else { return nil }
        let count = Int(intervals) + 1

        let logQ = log(q)
        let log1mQ = log1p(-q)
        let twoSigmaSquared = 2 * sigma * sigma
        let logNormaliser = -0.5 * log(2 * Double.pi) - log(sigma)
        var sum = LogSumExp()
        for index in 0..<count {
            let z = lower + Double(index) * h
            let logRatio = logAdd(log1mQ, logQ + (2 * z - 1) / twoSigmaSquared)
            sum.add(logNormaliser - z * z / twoSigmaSquared + e * logRatio)
        }
        return sum.value + log(h)
    }

    // MARK: Fractional orders, dp-accounting 0.6 (`_compute_log_a_frac`)

    /// dp-accounting 0.6's series for `log A_α` at fractional `α` (Mironov et al. 2019, Section 3.3): the
    /// integral is split at `z0 = σ² log(1/q − 1) + 1/2` and each half expanded binomially. dp-accounting adds
    /// the terms with the magnitude `|C(α, i)|` of the coefficients (whose sign alternates for `i > α + 1`), so
    /// its value is an upper bound on `A_α`, and it gives up (returns nil here, `inf` there, which excludes the
    /// order) unless within 1000 terms both halves' terms decrease and fall 30 nats below the running total.
    static func logAFractionalSeries(q: Double, sigma: Double, alpha: Double) -> Double? {
        var logA0 = -Double.infinity
        var logA1 = -Double.infinity
        let z0 = sigma * sigma * log(1 / q - 1) + 0.5
        let logQ = log(q)
        let log1mQ = log1p(-q)
        let twoSigmaSquared = 2 * sigma * sigma
        let sqrt2Sigma = 2.0.squareRoot() * sigma
        var lastS0 = -Double.infinity
        var lastS1 = -Double.infinity
        for i in 0..<maximumSeriesTerms {
            let di = Double(i)
            let logCoefficient = logBinomial(alpha, di)
            let j = alpha - di
            let logT0 = logCoefficient + di * logQ + j * log1mQ
            let logT1 = logCoefficient + j * logQ + di * log1mQ
            let logE0 = log(0.5) + logErfc((di - z0) / sqrt2Sigma)
            let logE1 = log(0.5) + logErfc((z0 - j) / sqrt2Sigma)
            let logS0 = logT0 + (di * di - di) / twoSigmaSquared + logE0
            let logS1 = logT1 + (j * j - j) / twoSigmaSquared + logE1
            logA0 = logAdd(logA0, logS0)
            logA1 = logAdd(logA1, logS1)
            let total = logAdd(logA0, logA1)
            if logS0 < lastS0, logS1 < lastS1, max(logS0, logS1) < total - 30 {
                return total
            }
            lastS0 = logS0
            lastS1 = logS1
        }
        return nil
    }

    // MARK: Log-space helpers

    /// `log(exp(a) + exp(b))` without overflow.
    @inline(__always) static func logAdd(_ a: Double, _ b: Double) -> Double {
        let (low, high) = a < b ? (a, b) : (b, a)
        if low == -.infinity { return high }
        return high + log1p(exp(low - high))
    }

    /// `log |C(n, k)|` for real `n`, `k` (`lgamma` is `log |Γ|`, so negative non-integer arguments work).
    static func logBinomial(_ n: Double, _ k: Double) -> Double {
        logAbsGamma(n + 1) - logAbsGamma(k + 1) - logAbsGamma(n - k + 1)
    }

    /// `log |Γ(x)|`, re-entrant (`lgamma_r` leaves the global `signgam` alone).
    static func logAbsGamma(_ x: Double) -> Double {
        var sign: Int32 = 0
        return lgamma_r(x, &sign)
    }

    /// `log(erfc(x))`, accurate where `erfc` underflows: `erfc` directly below 25 (`erfc(25) ≈ 8e−274`, still
    /// a normal double), beyond that the asymptotic expansion
    /// `erfc(x) = e^{−x²} / (x√π) · (1 − t + 3t² − 15t³ + 105t⁴ − …)` with `t = 1/(2x²)` (Abramowitz &
    /// Stegun 7.1.23; truncation error below `945 t⁵ < 1e−12` relative).
    static func logErfc(_ x: Double) -> Double {
        if x < 25 { return log(erfc(x)) }
        let t = 1 / (2 * x * x)
        let series = 1 - t * (1 - t * (3 - t * (15 - t * 105)))
        return -x * x - log(x) - 0.5 * log(Double.pi) + log(series)
    }
}

/// Streaming `log Σ exp(x_i)`: one `exp` per term, rescaling when a new maximum arrives.
struct LogSumExp {
    private(set) var maximum = -Double.infinity
    private var scaledSum = 0.0

    @inline(__always) mutating func add(_ x: Double) {
        if x == -.infinity { return }
        if x <= maximum {
            scaledSum += exp(x - maximum)
        } else {
            scaledSum = scaledSum * exp(maximum - x) + 1
            maximum = x
        }
    }

    var value: Double { maximum == -.infinity ? -.infinity : maximum + log(scaledSum) }
}
