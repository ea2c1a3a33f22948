/// Calibration helpers for `--target-epsilon`: epsilon after `T` steps, the most steps a budget allows, and
/// the least noise reaching a target. All use an `RDPAccountant` (default: exact fractional orders, dp-accounting's
/// orders and conversion) and rely on two monotonicities of the subsampled Gaussian mechanism's RDP:
/// it grows with the number of steps (additive composition of non-negative terms) and shrinks as the noise
/// multiplier grows (more noise is post-processing, Rényi divergence obeys data processing).
public enum PrivacyCalibration {
    /// Noise multipliers above this are not searched (epsilon is then far below any sensible target).
    public static let largestNoiseMultiplier = 1e6
    /// Step counts above this are reported as unlimited.
    public static let largestStepCount = 1 << 52

    /// `ε` after `steps` steps with sampling rate `q`, noise multiplier `z` and `δ`.
    ///
    /// `z = 0` (and `q > 0`, `steps > 0`) gives `+infinity`; `q = 0` or `steps = 0` gives 0; `q = 1` is the
    /// plain Gaussian mechanism (RDP `α / (2z²)` per step).
    public static func epsilon(
        samplingRate q: Double, noiseMultiplier z: Double, steps: Int, delta: Double,
        accountant: RDPAccountant = RDPAccountant()
    ) -> Double {
        accountant.epsilon(samplingRate: q, noiseMultiplier: z, steps: steps, delta: delta).epsilon
    }

    /// The largest `T` with `ε(T) ≤ epsilonBudget`: 0 when even one step exceeds it, nil when no step count up
    /// to `largestStepCount` does (e.g. `q = 0`).
    public static func maximumSteps(
        samplingRate q: Double, noiseMultiplier z: Double, delta: Double, epsilonBudget: Double,
        accountant: RDPAccountant = RDPAccountant()
    ) -> Int? {
        precondition(epsilonBudget >= 0 && !epsilonBudget.isNaN, "epsilon budget must be non-negative")
        return largestAdditionalSteps(
            spent: [Double](repeating: 0, count: accountant.orders.count),
            perStep: accountant.rdpPerStep(samplingRate: q, noiseMultiplier: z),
            delta: delta, epsilonBudget: epsilonBudget, accountant: accountant)
    }

    /// The largest `T ≥ 0` with `ε(spent + T · perStep) ≤ epsilonBudget` (0 when even `T = 1` does not fit,
    /// including when `spent` alone exceeds the budget), nil when every `T ≤ largestStepCount` fits.
    /// Exponential search, then bisection: `O(log T)` conversions of one curve.
    static func largestAdditionalSteps(
        spent: [Double], perStep: [Double], delta: Double, epsilonBudget: Double, accountant: RDPAccountant
    ) -> Int? {
        func fits(_ steps: Int) -> Bool {
            let curve = zip(spent, perStep).map { base, step in step == 0 ? base : base + Double(steps) * step }
            return accountant.epsilon(rdp: curve, delta: delta).epsilon <= epsilonBudget
        }
        guard fits(1) else { return 0 }
        if perStep.allSatisfy({ $0 == 0 }) { return nil }
        // Invariant: fits(low), !fits(high).
        var low = 1
        var high = 2
        while fits(high) {
            if high >= largestStepCount { return nil }
            low = high
            high *= 2
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if fits(middle) { low = middle } else { high = middle }
        }
        return low
    }

    /// The smallest noise multiplier `z` (to within `relativeTolerance`) with `ε(q, z, steps, δ) ≤ targetEpsilon`,
    /// by bisection. The result `z*` satisfies `ε(z*) ≤ targetEpsilon < ε(z* · (1 − relativeTolerance))`.
    /// Returns 0 when no noise is needed (`q = 0` or `steps = 0`), nil when even `largestNoiseMultiplier`
    /// does not reach the target.
    public static func minimumNoiseMultiplier(
        samplingRate q: Double, steps: Int, delta: Double, targetEpsilon: Double,
        accountant: RDPAccountant = RDPAccountant(), relativeTolerance: Double = 1e-6
    ) -> Double? {
        precondition(targetEpsilon >= 0 && !targetEpsilon.isNaN, "target epsilon must be non-negative")
        precondition(relativeTolerance > 0 && relativeTolerance < 1, "relative tolerance must lie in (0, 1)")
        func reaches(_ z: Double) -> Bool {
            accountant.epsilon(samplingRate: q, noiseMultiplier: z, steps: steps, delta: delta).epsilon <= targetEpsilon
        }
        if reaches(0) { return 0 }
        // Invariant: !reaches(low), reaches(high).
        var low = 0.0
        var high = 1.0
        if reaches(high) {
            // Walk down to bracket without bisecting through many decades.
            while reaches(high / 2) {
                high /= 2
                if high < 1e-9 { return high }
            }
            low = high / 2
        } else {
            while !reaches(high * 2) {
                high *= 2
                if high > largestNoiseMultiplier { return nil }
            }
            low = high
            high *= 2
        }
        while high - low > relativeTolerance * high / 2 {
            let middle = low + (high - low) / 2
            if reaches(middle) { high = middle } else { low = middle }
        }
        return high
    }
}
