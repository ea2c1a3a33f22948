import FedRecFederation
import FedRecTensor
import Foundation
import Testing

@Suite struct PrivacyAdaptiveClippingTests {
    static func state(clipNorm: Double = 1) -> AdaptiveClippingState {
        AdaptiveClippingState(
            initialClipNorm: clipNorm, targetQuantile: 0.5, learningRate: 0.2, countNoiseStandardDeviation: 2)
    }

    @Test func clipNormShrinksAboveTheQuantileAndGrowsBelow() {
        var above = Self.state()
        above.update(noisyUnclippedFraction: 0.9)
        #expect(above.clipNorm < 1)
        #expect(PrivacyFixtures.isClose(above.clipNorm, exp(-0.2 * 0.4), relative: 1e-15))
        var below = Self.state()
        below.update(noisyUnclippedFraction: 0.1)
        #expect(below.clipNorm > 1)
        #expect(PrivacyFixtures.isClose(below.clipNorm, exp(0.2 * 0.4), relative: 1e-15))
        var at = Self.state()
        at.update(noisyUnclippedFraction: 0.5)
        #expect(at.clipNorm == 1 && at.updatesApplied == 1)
    }

    /// However far the noisy fractions push it, the norm stays a positive, finite Float (what clients clip with).
    @Test func clipNormStaysAFinitePositiveFloat() {
        var shrinking = Self.state(clipNorm: 1e-30)
        for _ in 0..<2_000 { shrinking.update(noisyUnclippedFraction: 1e3) }
        #expect(shrinking.clipNorm == Double(Float.leastNormalMagnitude) && Float(shrinking.clipNorm) > 0)
        var growing = Self.state(clipNorm: 1e30)
        for _ in 0..<2_000 { growing.update(noisyUnclippedFraction: -1e3) }
        #expect(growing.clipNorm == Double(Float.greatestFiniteMagnitude) && Float(growing.clipNorm).isFinite)
        #expect(growing.updatesApplied == 2_000)
    }

    @Test func bitsAndNoisyFraction() {
        #expect(AdaptiveClippingState.unclippedBit(norm: 1, clipNorm: 1) == 1)
        #expect(AdaptiveClippingState.unclippedBit(norm: 1.0001, clipNorm: 1) == 0)
        #expect(AdaptiveClippingState.unclippedBit(norm: .nan, clipNorm: 1) == 0)
        // The noisy fraction is (Σ (b_i − ½) + σ_b·N(0, 1)) / m + ½, with the sampler's next normal: 30 of 36
        // participants unclipped, 40 expected.
        var sampler = GaussianSampler(source: SeededNoiseSource(seed: 3))
        var twin = GaussianSampler(source: SeededNoiseSource(seed: 3))
        var state = Self.state()
        let fraction = state.update(unclippedCount: 30, participants: 36, expectedClients: 40, sampler: &sampler)
        #expect(PrivacyFixtures.isClose(fraction, (30 - 18 + 2 * twin.next()) / 40 + 0.5, relative: 1e-15))
        #expect(PrivacyFixtures.isClose(state.clipNorm, exp(-0.2 * (fraction - 0.5)), relative: 1e-15))
    }

    /// With clients' norms from a fixed distribution, the clip norm settles near their γ-quantile.
    @Test(arguments: [0.2, 0.5, 0.8])
    func tracksTheTargetQuantile(gamma: Double) {
        var rng = SplitMix64(seed: 11)
        var sampler = GaussianSampler(source: SeededNoiseSource(seed: 12))
        var state = AdaptiveClippingState(
            initialClipNorm: 0.1, targetQuantile: gamma, learningRate: 0.2, countNoiseStandardDeviation: 5)
        // Norms exp(N(0, 0.5²)): the γ-quantile is exp(0.5 Φ⁻¹(γ)).
        let quantile = [0.2: exp(0.5 * -0.841_621), 0.5: 1.0, 0.8: exp(0.5 * 0.841_621)][gamma]!
        var late: [Double] = []
        for round in 0..<600 {
            let norms = (0..<100).map { _ in exp(0.5 * Double(rng.nextGaussian())) }
            let count = norms.reduce(0) { $0 + state.unclippedBit(norm: $1) }
            state.update(unclippedCount: Double(count), participants: 100, expectedClients: 100, sampler: &sampler)
            if round >= 400 { late.append(state.clipNorm) }
        }
        let average = late.reduce(0, +) / Double(late.count)
        #expect(abs(average / quantile - 1) < 0.1, "γ = \(gamma): C ≈ \(average), quantile \(quantile)")
    }

    @Test func updateNoiseMultiplierKeepsTheTotalPrivacy() {
        let z = 1.0
        let sigmaB = 1.0
        let zDelta = AdaptiveClippingState.updateNoiseMultiplier(
            noiseMultiplier: z, countNoiseStandardDeviation: sigmaB)
        #expect(PrivacyFixtures.isClose(zDelta, 1 / (0.75).squareRoot(), relative: 1e-15))
        // z_Δ^−2 + (2σ_b)^−2 = z^−2, z_Δ > z, and z_Δ → z as σ_b grows.
        #expect(
            PrivacyFixtures.isClose(1 / (zDelta * zDelta) + 1 / (4 * sigmaB * sigmaB), 1 / (z * z), relative: 1e-15))
        let far = AdaptiveClippingState.updateNoiseMultiplier(noiseMultiplier: 0.8, countNoiseStandardDeviation: 1e4)
        #expect(far > 0.8 && far < 0.8 * (1 + 1e-8))
    }

    @Test func codableRoundTrip() throws {
        var state = Self.state(clipNorm: 0.7)
        state.update(noisyUnclippedFraction: 0.3)
        let decoded = try JSONDecoder().decode(AdaptiveClippingState.self, from: JSONEncoder().encode(state))
        #expect(decoded == state)
        #expect(decoded.clipNorm == state.clipNorm && decoded.updatesApplied == 1)
    }
}

@Suite struct PrivacyConfigurationTests {
    static let valid = DifferentialPrivacyConfiguration(
        clipNorm: 1, noiseMultiplier: 1, samplingRate: 128.0 / 943, numberOfUsers: 943, targetEpsilon: 10,
        adaptiveClipping: .init(countNoiseStandardDeviation: 6.4))

    @Test func defaultsAndDerivedValues() throws {
        try Self.valid.validate()
        #expect(Self.valid.delta == 1.0 / 943)
        let explicit = DifferentialPrivacyConfiguration(
            clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.1, numberOfUsers: 943, delta: 1e-6)
        #expect(explicit.delta == 1e-6 && explicit.updateNoiseMultiplier == 1)
        #expect(explicit.updateNoiseStandardDeviation(clipNorm: 0.5) == 0.5)
        let zDelta = AdaptiveClippingState.updateNoiseMultiplier(noiseMultiplier: 1, countNoiseStandardDeviation: 6.4)
        #expect(Self.valid.updateNoiseMultiplier == zDelta && zDelta > 1)
        #expect(Self.valid.adaptiveClipping?.targetQuantile == 0.5 && Self.valid.adaptiveClipping?.learningRate == 0.2)
        #expect(AdaptiveClippingState(configuration: Self.valid)?.clipNorm == 1)
        #expect(AdaptiveClippingState(configuration: explicit) == nil)
    }

    /// One bad value per case, and the field validation must name.
    enum BadValue: CaseIterable, Sendable {
        case zeroClipNorm, infiniteClipNorm, zeroNoise, nanNoise, zeroSampling, samplingAboveOne, deltaOne, deltaZero
        case negativeTarget, targetBelowOneRound, quantileAboveOne, zeroClipLearningRate, countNoiseTooSmall

        var field: String {
            switch self {
            case .zeroClipNorm, .infiniteClipNorm: "clipNorm"
            case .zeroNoise, .nanNoise: "noiseMultiplier"
            case .zeroSampling, .samplingAboveOne: "samplingRate"
            case .deltaOne, .deltaZero: "delta"
            case .negativeTarget, .targetBelowOneRound: "targetEpsilon"
            case .quantileAboveOne: "adaptiveClipping.targetQuantile"
            case .zeroClipLearningRate: "adaptiveClipping.learningRate"
            case .countNoiseTooSmall: "adaptiveClipping.countNoiseStandardDeviation"
            }
        }

        func apply(to c: inout DifferentialPrivacyConfiguration) {
            switch self {
            case .zeroClipNorm: c.clipNorm = 0
            case .infiniteClipNorm: c.clipNorm = .infinity
            case .zeroNoise: c.noiseMultiplier = 0
            case .nanNoise: c.noiseMultiplier = .nan
            case .zeroSampling: c.samplingRate = 0
            case .samplingAboveOne: c.samplingRate = 1.5
            case .deltaOne: c.delta = 1
            case .deltaZero: c.delta = 0
            case .negativeTarget: c.targetEpsilon = -1
            case .targetBelowOneRound: c.targetEpsilon = 0.01
            case .quantileAboveOne: c.adaptiveClipping?.targetQuantile = 1.2
            case .zeroClipLearningRate: c.adaptiveClipping?.learningRate = 0
            case .countNoiseTooSmall: c.adaptiveClipping?.countNoiseStandardDeviation = 0.4  // needs > z/2 = 0.5
            }
        }
    }

    @Test(arguments: BadValue.allCases)
    func validationNamesTheField(bad: BadValue) {
        var configuration = Self.valid
        bad.apply(to: &configuration)
        do {
            try configuration.validate()
            Issue.record("\(bad): accepted")
        } catch let error as PrivacyError {
            #expect(error.code == .invalidConfiguration)
            #expect(error.field == bad.field)
            #expect(error.message.hasPrefix(bad.field + " "), "\(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func defaultDeltaNeedsUsers() {
        let configuration = DifferentialPrivacyConfiguration(
            clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.1, numberOfUsers: 0)
        #expect(throws: PrivacyError.self) { try configuration.validate() }
    }

    @Test func codableRoundTrip() throws {
        let decoded = try JSONDecoder().decode(
            DifferentialPrivacyConfiguration.self, from: JSONEncoder().encode(Self.valid))
        #expect(decoded == Self.valid)
    }
}

@Suite struct PrivacyLedgerTests {
    static let configuration = DifferentialPrivacyConfiguration(
        clipNorm: 1, noiseMultiplier: 1, samplingRate: 128.0 / 943, numberOfUsers: 943, targetEpsilon: 8)

    @Test func spentEpsilonFollowsTheAccountant() {
        var ledger = PrivacyLedger(configuration: Self.configuration)
        #expect(ledger.stepsTaken == 0 && ledger.epsilon == 0)
        ledger.record(steps: 40)
        ledger.record()
        #expect(ledger.stepsTaken == 41 && ledger.history.count == 1)
        let expected = PrivacyCalibration.epsilon(
            samplingRate: 128.0 / 943, noiseMultiplier: 1, steps: 41, delta: 1.0 / 943)
        #expect(PrivacyFixtures.isClose(ledger.epsilon, expected, relative: 1e-12))
        #expect(
            PrivacyFixtures.isClose(
                ledger.epsilon(after: 9),
                PrivacyCalibration.epsilon(samplingRate: 128.0 / 943, noiseMultiplier: 1, steps: 50, delta: 1.0 / 943),
                relative: 1e-12))
    }

    @Test func budgetStopsAtTheLastRoundThatFits() throws {
        var ledger = PrivacyLedger(configuration: Self.configuration)
        let remaining = try #require(ledger.remainingSteps)
        #expect(
            remaining
                == PrivacyCalibration.maximumSteps(
                    samplingRate: 128.0 / 943, noiseMultiplier: 1, delta: 1.0 / 943, epsilonBudget: 8))
        #expect(ledger.canRun(additionalSteps: remaining) && !ledger.canRun(additionalSteps: remaining + 1))
        ledger.record(steps: remaining - 1)
        #expect(ledger.canRun() && ledger.remainingSteps == 1)
        try ledger.checkCanRun()
        ledger.record()
        #expect(!ledger.canRun() && ledger.remainingSteps == 0 && ledger.epsilon <= 8)
        #expect(throws: PrivacyError.self) { try ledger.checkCanRun() }
        do {
            try ledger.checkCanRun()
        } catch let error as PrivacyError {
            #expect(error.code == .budgetExhausted && error.field == "targetEpsilon")
        }
    }

    @Test func noBudgetMeansNoLimit() {
        let ledger = PrivacyLedger(samplingRate: 0.1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: nil)
        #expect(ledger.canRun(additionalSteps: 1_000_000) && ledger.remainingSteps == nil)
    }

    /// Rounds at different sampling rates compose by adding their curves.
    @Test func heterogeneousRoundsCompose() {
        var ledger = PrivacyLedger(samplingRate: 0.05, noiseMultiplier: 1.1, delta: 1e-5, epsilonBudget: nil)
        ledger.record(steps: 30)
        ledger.changeMechanism(samplingRate: 0.2, noiseMultiplier: 1.1)
        ledger.record(steps: 10)
        #expect(ledger.history.count == 2 && ledger.stepsTaken == 40)
        let accountant = RDPAccountant()
        let curve = zip(
            accountant.rdp(samplingRate: 0.05, noiseMultiplier: 1.1, steps: 30),
            accountant.rdp(samplingRate: 0.2, noiseMultiplier: 1.1, steps: 10)
        ).map(+)
        #expect(
            PrivacyFixtures.isClose(
                ledger.epsilon, accountant.epsilon(rdp: curve, delta: 1e-5).epsilon, relative: 1e-12))
        let lower = PrivacyCalibration.epsilon(samplingRate: 0.05, noiseMultiplier: 1.1, steps: 40, delta: 1e-5)
        let upper = PrivacyCalibration.epsilon(samplingRate: 0.2, noiseMultiplier: 1.1, steps: 40, delta: 1e-5)
        #expect(lower < ledger.epsilon && ledger.epsilon < upper)
    }

    @Test func codableRoundTripKeepsTheSpentBudget() throws {
        var ledger = PrivacyLedger(
            configuration: Self.configuration, accountant: RDPAccountant(fractionalOrders: .dpAccounting))
        ledger.record(steps: 25)
        let decoded = try JSONDecoder().decode(PrivacyLedger.self, from: JSONEncoder().encode(ledger))
        #expect(decoded == ledger)
        #expect(decoded.epsilon == ledger.epsilon && decoded.accountant.fractionalOrders == .dpAccounting)
    }
}
