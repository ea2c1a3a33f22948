import FedRecFederation
import PropertyBased
import Testing

/// `--target-epsilon` helpers: round trips and monotonicity.
@Suite struct PrivacyCalibrationTests {
    static let accountant = RDPAccountant()

    static func epsilon(_ q: Double, _ z: Double, _ steps: Int, _ delta: Double) -> Double {
        PrivacyCalibration.epsilon(samplingRate: q, noiseMultiplier: z, steps: steps, delta: delta)
    }

    /// (q, T, δ, target ε): the smallest z reaches the target, 1e-6 less does not.
    @Test(arguments: [
        (0.136, 100, 1.0 / 943, 8.0), (0.034, 1000, 1e-5, 3.0), (0.01, 5000, 1e-6, 1.0), (0.5, 10, 1e-5, 20.0),
        (1.0, 50, 1e-5, 5.0), (0.136, 1000, 1.0 / 943, 150.0),
    ])
    func smallestNoiseMultiplierRoundTrip(q: Double, steps: Int, delta: Double, target: Double) throws {
        let tolerance = 1e-6
        let z = try #require(
            PrivacyCalibration.minimumNoiseMultiplier(
                samplingRate: q, steps: steps, delta: delta, targetEpsilon: target, relativeTolerance: tolerance))
        #expect(Self.epsilon(q, z, steps, delta) <= target, "z = \(z)")
        #expect(Self.epsilon(q, z * (1 - tolerance), steps, delta) > target, "z = \(z)")
    }

    @Test func smallestNoiseMultiplierEdgeCases() {
        #expect(
            PrivacyCalibration.minimumNoiseMultiplier(samplingRate: 0, steps: 100, delta: 1e-5, targetEpsilon: 1) == 0)
        #expect(
            PrivacyCalibration.minimumNoiseMultiplier(samplingRate: 0.1, steps: 0, delta: 1e-5, targetEpsilon: 1) == 0)
        // Any positive target is reachable with enough noise.
        let z = PrivacyCalibration.minimumNoiseMultiplier(
            samplingRate: 0.1, steps: 10, delta: 1e-5, targetEpsilon: 1e-3)
        #expect(z != nil && z! > 10)
    }

    /// (q, z, δ, budget): the largest T fits, T + 1 does not.
    @Test(arguments: [
        (0.136, 1.0, 1.0 / 943, 7.92), (0.034, 1.0, 1e-5, 5.0), (0.01, 0.8, 1e-6, 2.0), (1.0, 2.0, 1e-5, 10.0),
    ])
    func largestStepCountRoundTrip(q: Double, z: Double, delta: Double, budget: Double) throws {
        let steps = try #require(
            PrivacyCalibration.maximumSteps(samplingRate: q, noiseMultiplier: z, delta: delta, epsilonBudget: budget))
        #expect(steps > 0)
        #expect(Self.epsilon(q, z, steps, delta) <= budget)
        #expect(Self.epsilon(q, z, steps + 1, delta) > budget)
    }

    @Test func largestStepCountEdgeCases() {
        // q = 0: unlimited.
        #expect(
            PrivacyCalibration.maximumSteps(samplingRate: 0, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: 1) == nil)
        // z = 0: not one step.
        #expect(
            PrivacyCalibration.maximumSteps(samplingRate: 0.1, noiseMultiplier: 0, delta: 1e-5, epsilonBudget: 100) == 0
        )
        // A budget below one step's epsilon.
        let one = Self.epsilon(0.1, 1, 1, 1e-5)
        #expect(
            PrivacyCalibration.maximumSteps(samplingRate: 0.1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: one / 2)
                == 0)
    }

    // MARK: Monotonicity (property tests)

    @Test func epsilonGrowsWithSteps() async {
        await propertyCheck(
            count: 30, input: Gen.double(in: 0.001...1), Gen.double(in: 0.3...5), Gen.int(in: 1...2000),
            Gen.int(in: 1...2000)
        ) { q, z, a, b in
            let curve = Self.accountant.rdpPerStep(samplingRate: q, noiseMultiplier: z)
            let (few, many) = (min(a, b), max(a, b))
            let epsilonFew = Self.accountant.epsilon(rdp: curve.map { Double(few) * $0 }, delta: 1e-5).epsilon
            let epsilonMany = Self.accountant.epsilon(rdp: curve.map { Double(many) * $0 }, delta: 1e-5).epsilon
            #expect(epsilonFew <= epsilonMany, "q=\(q) z=\(z) T=\(few) vs \(many)")
            if many > few { #expect(epsilonFew < epsilonMany || epsilonFew == 0, "q=\(q) z=\(z)") }
        }
    }

    @Test func epsilonGrowsWithSamplingRate() async {
        await propertyCheck(
            count: 30, input: Gen.double(in: 0.001...1), Gen.double(in: 0.001...1), Gen.double(in: 0.3...5),
            Gen.int(in: 1...1000)
        ) { a, b, z, steps in
            let (low, high) = (min(a, b), max(a, b))
            #expect(
                Self.epsilon(low, z, steps, 1e-5) <= Self.epsilon(high, z, steps, 1e-5) * (1 + 1e-9),
                "q=\(low),\(high) z=\(z)")
        }
    }

    @Test func epsilonShrinksWithNoise() async {
        await propertyCheck(
            count: 30, input: Gen.double(in: 0.001...1), Gen.double(in: 0.3...5), Gen.double(in: 0.3...5),
            Gen.int(in: 1...1000)
        ) { q, a, b, steps in
            let (low, high) = (min(a, b), max(a, b))
            #expect(
                Self.epsilon(q, high, steps, 1e-5) <= Self.epsilon(q, low, steps, 1e-5) * (1 + 1e-9),
                "q=\(q) z=\(low),\(high)")
        }
    }
}
