/// Client-level differential privacy for DP-FedAvg / DP-FedAdam (McMahan, Ramage, Talwar, Zhang 2018): each
/// round samples clients independently with probability `samplingRate`, clips each client's whole update to
/// L2 norm `clipNorm`, and adds `N(0, (z·S)²)` to the sum, `z` being `noiseMultiplier` (or `z_Δ` with adaptive
/// clipping). Privacy is accounted per round with `RDPAccountant` at `delta`.
///
/// Plain data: `validate()` checks it and throws `PrivacyError` (`invalidConfiguration`) naming the field.
public struct DifferentialPrivacyConfiguration: Sendable, Hashable, Codable {
    /// Adaptive clipping options (Andrew, Thakkar, McMahan, Ramaswamy 2021). With these, `clipNorm` is the
    /// initial clip norm and the update noise multiplier becomes `z_Δ`.
    public struct AdaptiveClipping: Sendable, Hashable, Codable {
        /// `γ ∈ [0, 1]`: the fraction of clients meant to stay unclipped (the paper's default 0.5).
        public var targetQuantile: Double
        /// `η_C > 0`: the geometric learning rate of the clip norm (the paper's default 0.2).
        public var learningRate: Double
        /// `σ_b > z/2`: noise on the count of unclipped clients, in clients (the paper suggests
        /// `m / 20`, `m` the expected clients per round).
        public var countNoiseStandardDeviation: Double

        public init(targetQuantile: Double = 0.5, learningRate: Double = 0.2, countNoiseStandardDeviation: Double) {
            self.targetQuantile = targetQuantile
            self.learningRate = learningRate
            self.countNoiseStandardDeviation = countNoiseStandardDeviation
        }
    }

    /// `S > 0`: the L2 bound on one client's whole update (initial `C` when adaptive).
    public var clipNorm: Double
    /// `z > 0`: noise standard deviation over clip norm, the `z` the accountant charges.
    public var noiseMultiplier: Double
    /// `q ∈ (0, 1]`: the Poisson sampling probability of each client per round.
    public var samplingRate: Double
    /// `δ ∈ (0, 1)`.
    public var delta: Double
    /// When set, training stops before a round would take epsilon past it.
    public var targetEpsilon: Double?
    public var adaptiveClipping: AdaptiveClipping?

    /// `delta` defaults to `1 / numberOfUsers` (the population the sampling rate applies to).
    public init(
        clipNorm: Double, noiseMultiplier: Double, samplingRate: Double, numberOfUsers: Int, delta: Double? = nil,
        targetEpsilon: Double? = nil, adaptiveClipping: AdaptiveClipping? = nil
    ) {
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.samplingRate = samplingRate
        self.delta = delta ?? 1 / Double(numberOfUsers)
        self.targetEpsilon = targetEpsilon
        self.adaptiveClipping = adaptiveClipping
    }

    /// Throws `invalidConfiguration` naming the first bad field: `clipNorm`, `noiseMultiplier`, `samplingRate`,
    /// `delta`, `targetEpsilon` (also when one round alone would spend more than it), or
    /// `adaptiveClipping.targetQuantile` / `.learningRate` / `.countNoiseStandardDeviation` (which must exceed
    /// `noiseMultiplier / 2`, else `z_Δ` is undefined).
    public func validate(accountant: RDPAccountant = RDPAccountant()) throws {
        func refuse(_ field: String, _ requirement: String, _ value: Double) -> PrivacyError {
            PrivacyError(code: .invalidConfiguration, message: "\(field) \(requirement), got \(value)", field: field)
        }
        guard clipNorm > 0, clipNorm.isFinite else { throw refuse("clipNorm", "must be positive and finite", clipNorm) }
        guard noiseMultiplier > 0, noiseMultiplier.isFinite else {
            throw refuse("noiseMultiplier", "must be positive and finite (0 gives epsilon = infinity)", noiseMultiplier)
        }
        guard samplingRate > 0, samplingRate <= 1 else {
            throw refuse("samplingRate", "must lie in (0, 1]", samplingRate)
        }
        guard delta > 0, delta < 1 else {
            throw refuse("delta", "must lie in (0, 1) (default 1/numberOfUsers needs numberOfUsers > 1)", delta)
        }
        if let options = adaptiveClipping {
            guard options.targetQuantile >= 0, options.targetQuantile <= 1 else {
                throw refuse("adaptiveClipping.targetQuantile", "must lie in [0, 1]", options.targetQuantile)
            }
            guard options.learningRate > 0, options.learningRate.isFinite else {
                throw refuse("adaptiveClipping.learningRate", "must be positive and finite", options.learningRate)
            }
            guard options.countNoiseStandardDeviation.isFinite,
                2 * options.countNoiseStandardDeviation > noiseMultiplier
            else {
                throw refuse(
                    "adaptiveClipping.countNoiseStandardDeviation",
                    "must be finite and exceed noiseMultiplier / 2 = \(noiseMultiplier / 2)",
                    options.countNoiseStandardDeviation)
            }
        }
        if let target = targetEpsilon {
            guard target > 0, target.isFinite else {
                throw refuse("targetEpsilon", "must be positive and finite", target)
            }
            let oneRound = accountant.epsilon(
                samplingRate: samplingRate, noiseMultiplier: noiseMultiplier, steps: 1, delta: delta
            ).epsilon
            guard oneRound <= target else {
                throw refuse(
                    "targetEpsilon",
                    "is spent by a single round (epsilon \(oneRound) at samplingRate \(samplingRate), "
                        + "noiseMultiplier \(noiseMultiplier)): raise it or the noise multiplier", target)
            }
        }
    }

    /// The noise multiplier applied to the update sum: `z`, or `z_Δ = (z^{−2} − (2σ_b)^{−2})^{−1/2}` with
    /// adaptive clipping (Andrew et al. 2021, Section 3.2). The accountant always charges `noiseMultiplier`.
    public var updateNoiseMultiplier: Double {
        guard let options = adaptiveClipping else { return noiseMultiplier }
        return AdaptiveClippingState.updateNoiseMultiplier(
            noiseMultiplier: noiseMultiplier, countNoiseStandardDeviation: options.countNoiseStandardDeviation)
    }

    /// The standard deviation of the noise on the sum of updates clipped at `clipNorm` (the current adaptive
    /// clip norm when adaptive): `updateNoiseMultiplier · clipNorm`.
    public func updateNoiseStandardDeviation(clipNorm currentClipNorm: Double? = nil) -> Double {
        GaussianNoise.standardDeviation(noiseMultiplier: updateNoiseMultiplier, clipNorm: currentClipNorm ?? clipNorm)
    }
}
