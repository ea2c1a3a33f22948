#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The coordinator's state for adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021,
/// "Differentially Private Learning with Adaptive Clipping", NeurIPS; Algorithm 1 and Section 3).
///
/// The clip norm `C` tracks the `γ`-quantile of the clients' update norms by private geometric updates:
/// each sampled client reports `b_i = [‖Δ_i‖ ≤ C]` (through secure aggregation, so only the sum is seen),
/// the coordinator forms `b̄ = (Σ (b_i − ½) + N(0, σ_b²)) / m + ½` with `m` the EXPECTED number of clients per
/// round (`q · N`; a fixed denominator keeps the sensitivity of `b̄` bounded) — centring the bits, as Andrew et
/// al. and TF-Privacy's quantile estimator do, makes one client change the noised sum by at most ½ — and sets
///
///     C ← C · exp(−η_C (b̄ − γ))                                              (Andrew et al., Eq. 3)
///
/// so `C` shrinks when more than a fraction `γ` of clients were under it and grows when fewer were.
/// The bit query spends privacy too; with the update noise multiplier `z_Δ = (z^{−2} − (2σ_b)^{−2})^{−1/2}`
/// (Section 3.2) the two Gaussian queries together cost exactly what one query with noise multiplier `z` costs,
/// so the accountant keeps using `z`.
///
/// Pure value state, `Codable`, so the coordinator persists it with its checkpoint.
public struct AdaptiveClippingState: Sendable, Hashable, Codable {
    /// The current clip norm `C > 0`.
    public private(set) var clipNorm: Double
    /// `γ ∈ [0, 1]`, the target fraction of clients whose update is not clipped.
    public let targetQuantile: Double
    /// `η_C > 0`, the step of the geometric update.
    public let learningRate: Double
    /// `σ_b > 0`, the standard deviation of the noise on the count of unclipped clients.
    public let countNoiseStandardDeviation: Double
    /// How many updates have been applied.
    public private(set) var updatesApplied: Int

    public init(
        initialClipNorm: Double, targetQuantile: Double, learningRate: Double, countNoiseStandardDeviation: Double
    ) {
        precondition(initialClipNorm > 0 && initialClipNorm.isFinite, "initial clip norm must be positive and finite")
        precondition(targetQuantile >= 0 && targetQuantile <= 1, "target quantile must lie in [0, 1]")
        precondition(learningRate > 0 && learningRate.isFinite, "clip learning rate must be positive and finite")
        precondition(
            countNoiseStandardDeviation > 0 && countNoiseStandardDeviation.isFinite,
            "count noise standard deviation must be positive and finite")
        self.clipNorm = initialClipNorm
        self.targetQuantile = targetQuantile
        self.learningRate = learningRate
        self.countNoiseStandardDeviation = countNoiseStandardDeviation
        self.updatesApplied = 0
    }

    /// The state a validated configuration starts from (`clipNorm` is the initial `C`); nil when it has no
    /// adaptive clipping options (a fixed clip norm).
    public init?(configuration: DifferentialPrivacyConfiguration) {
        guard let options = configuration.adaptiveClipping else { return nil }
        self.init(
            initialClipNorm: configuration.clipNorm, targetQuantile: options.targetQuantile,
            learningRate: options.learningRate, countNoiseStandardDeviation: options.countNoiseStandardDeviation)
    }

    /// A client's bit: 1 when its update norm is at most the clip norm (not clipped), else 0 (a NaN norm is 0).
    public static func unclippedBit(norm: Double, clipNorm: Double) -> Int {
        norm <= clipNorm ? 1 : 0
    }

    /// This state's bit for an update of norm `norm`.
    public func unclippedBit(norm: Double) -> Int {
        Self.unclippedBit(norm: norm, clipNorm: clipNorm)
    }

    /// `b̄ = (unclippedCount − participants / 2 + N(0, σ_b²)) / expectedClients + ½`: the centred bits
    /// `b_i − ½` of the `participants` clients whose bits were summed (sensitivity ½, which
    /// `updateNoiseMultiplier` accounts for), noised, over the fixed denominator. The count may be fractional:
    /// under secure aggregation it is a decoded sum, within the quantiser's error of the true count.
    public func noisyUnclippedFraction<Source: NoiseSource>(
        unclippedCount: Double, participants: Int, expectedClients: Double, sampler: inout GaussianSampler<Source>
    ) -> Double {
        precondition(unclippedCount.isFinite, "unclipped count must be finite")
        precondition(participants >= 0, "participants must not be negative")
        precondition(expectedClients > 0 && expectedClients.isFinite, "expected clients must be positive")
        let centred = unclippedCount - Double(participants) / 2
        return (centred + countNoiseStandardDeviation * sampler.next()) / expectedClients + 0.5
    }

    /// The range `clipNorm` is kept in: positive and finite as a `Float` (what clients clip with), however long
    /// the run or extreme the noise.
    public static let clipNormRange = Double(Float.leastNormalMagnitude)...Double(Float.greatestFiniteMagnitude)

    /// Applies `C ← C · exp(−η_C (b̄ − γ))` for an already noised fraction `b̄`, then keeps `C` in
    /// `clipNormRange`.
    public mutating func update(noisyUnclippedFraction fraction: Double) {
        precondition(fraction.isFinite, "noisy unclipped fraction must be finite")
        let moved = clipNorm * exp(-learningRate * (fraction - targetQuantile))
        clipNorm = min(
            max(moved.isNaN ? clipNorm : moved, Self.clipNormRange.lowerBound), Self.clipNormRange.upperBound)
        updatesApplied += 1
    }

    /// Noises the count of `participants` clients' bits, applies the update and returns the `b̄` used.
    @discardableResult
    public mutating func update<Source: NoiseSource>(
        unclippedCount: Double, participants: Int, expectedClients: Double, sampler: inout GaussianSampler<Source>
    ) -> Double {
        let fraction = noisyUnclippedFraction(
            unclippedCount: unclippedCount, participants: participants, expectedClients: expectedClients,
            sampler: &sampler)
        update(noisyUnclippedFraction: fraction)
        return fraction
    }

    /// The noise multiplier for the update sum, `z_Δ = (z^{−2} − (2σ_b)^{−2})^{−1/2}` (Andrew et al. 2021,
    /// Section 3.2), so the update query (noise `z_Δ`) and the bit query (sensitivity 1/2 after the centring of
    /// `noisyUnclippedFraction`, noise `σ_b`) together match one Gaussian query with noise multiplier `z`. Requires `2σ_b > z`;
    /// `z_Δ > z` always, and `z_Δ → z` as `σ_b → ∞`.
    public static func updateNoiseMultiplier(noiseMultiplier z: Double, countNoiseStandardDeviation sigmaB: Double)
        -> Double
    {
        precondition(z > 0 && z.isFinite, "noise multiplier must be positive and finite")
        precondition(2 * sigmaB > z, "adaptive clipping needs 2σ_b > z")
        return 1 / (1 / (z * z) - 1 / (4 * sigmaB * sigmaB)).squareRoot()
    }
}
