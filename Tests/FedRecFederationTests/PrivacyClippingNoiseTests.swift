import FedRecFederation
import FedRecTensor
import PropertyBased
import Testing

@Suite struct PrivacyClippingTests {
    @Test func longVectorsAreScaledToTheBound() async {
        await propertyCheck(
            count: 200, input: Gen.float(in: -100...100).array(of: 1...300), Gen.double(in: 0.01...50)
        ) { vector, bound in
            var clipped = vector
            let result = L2Clipping.clip(&clipped, to: bound)
            let norm = L2Clipping.norm(vector)
            #expect(result.originalNorm == norm)
            #expect(L2Clipping.norm(clipped) <= bound * (1 + 1e-6))
            if norm > bound {
                #expect(result.wasClipped)
                #expect(PrivacyFixtures.isClose(L2Clipping.norm(clipped), bound, relative: 1e-6))
                // Same direction: every coordinate scaled by the same positive factor.
                let factor = bound / norm
                for (before, after) in zip(vector, clipped) {
                    #expect(
                        abs(Double(after) - Double(before) * factor) <= 1e-6 * max(abs(Double(before) * factor), 1e-30))
                }
            } else {
                #expect(!result.wasClipped)
                #expect(clipped.map(\.bitPattern) == vector.map(\.bitPattern), "unclipped vectors are untouched")
            }
        }
    }

    @Test func normAccumulatesInDouble() {
        // 10^6 entries of 1e-3 and one of 1.
        var vector = [Float](repeating: 1e-3, count: 1_000_000)
        vector.append(1)
        let expected = (Double(Float(1e-3)) * Double(Float(1e-3)) * 1_000_000 + 1).squareRoot()
        // Float accumulation would be off by more than 1e-4 here; Double stays near n · 2^-53.
        #expect(PrivacyFixtures.isClose(L2Clipping.norm(vector), expected, relative: 1e-9))
        #expect(L2Clipping.norm([]) == 0)
        #expect(L2Clipping.norm([3, 4]) == 5)
    }

    @Test func boundaryAndNonFiniteVectors() {
        var exact: [Float] = [3, 4]
        #expect(L2Clipping.clip(&exact, to: 5) == ClipResult(wasClipped: false, originalNorm: 5))
        #expect(exact == [3, 4])
        var broken: [Float] = [1, .nan, 2]
        let result = L2Clipping.clip(&broken, to: 1)
        #expect(result.wasClipped && result.originalNorm.isNaN)
        #expect(broken == [0, 0, 0])
        var infinite: [Float] = [1, -.infinity]
        #expect(L2Clipping.clip(&infinite, to: 1).originalNorm == .infinity)
        #expect(infinite == [0, 0])
    }
}

@Suite struct PrivacyNoiseTests {
    /// Mean, standard deviation and the mass within one σ of 10^6 libsodium-driven samples, each within
    /// about 6 standard errors (a false alarm has probability below 1e−8 per check).
    @Test func secureNoiseHasTheRequestedDistribution() throws {
        let count = 1_000_000
        let sigma = 2.5
        var vector = [Float](repeating: 0, count: count)
        try GaussianNoise.add(to: &vector, standardDeviation: sigma)
        var sum = 0.0
        var sumSquares = 0.0
        var withinOne = 0
        var beyondFour = 0
        for value in vector {
            let x = Double(value)
            sum += x
            sumSquares += x * x
            if abs(x) <= sigma { withinOne += 1 }
            if abs(x) > 4 * sigma { beyondFour += 1 }
        }
        let n = Double(count)
        let mean = sum / n
        let variance = sumSquares / n - mean * mean
        #expect(abs(mean) < 6 * sigma / n.squareRoot(), "mean \(mean)")
        // SE of the sample variance of a normal is σ²·√(2/n).
        #expect(abs(variance / (sigma * sigma) - 1) < 6 * (2 / n).squareRoot(), "variance \(variance)")
        // P(|X| ≤ σ) = 0.682689…, SE √(p(1−p)/n).
        let p = 0.682_689_492_137_086
        #expect(abs(Double(withinOne) / n - p) < 6 * (p * (1 - p) / n).squareRoot(), "within 1σ: \(withinOne)")
        // P(|X| > 4σ) = 6.334e−5: about 63 of 10^6 (Poisson; 6 SE ≈ 48).
        #expect(abs(Double(beyondFour) - 63.34) < 48, "beyond 4σ: \(beyondFour)")
    }

    @Test func twoSecureDrawsDiffer() throws {
        var first = [Float](repeating: 0, count: 1000)
        var second = first
        try GaussianNoise.add(to: &first, standardDeviation: 1)
        try GaussianNoise.add(to: &second, standardDeviation: 1)
        #expect(first != second)
        #expect(first.allSatisfy { $0.isFinite } && Set(first).count > 990)
    }

    @Test func seededSourceIsReproducibleAndAddsToExistingValues() {
        var a = GaussianSampler(source: SeededNoiseSource(seed: 7))
        var b = GaussianSampler(source: SeededNoiseSource(seed: 7))
        var c = GaussianSampler(source: SeededNoiseSource(seed: 8))
        let base: [Float] = (0..<257).map { Float($0) }
        var x = base
        var y = base
        var w = base
        GaussianNoise.add(to: &x, standardDeviation: 0.5, sampler: &a)
        GaussianNoise.add(to: &y, standardDeviation: 0.5, sampler: &b)
        GaussianNoise.add(to: &w, standardDeviation: 0.5, sampler: &c)
        #expect(x == y && x != w)
        // The noise is added, not substituted.
        let difference = zip(x, base).map { Double($0) - Double($1) }
        #expect(difference.allSatisfy { abs($0) < 0.5 * 7 })
        // σ = 0 leaves the vector alone.
        var unchanged = base
        GaussianNoise.add(to: &unchanged, standardDeviation: 0, sampler: &a)
        #expect(unchanged == base)
        #expect(GaussianNoise.standardDeviation(noiseMultiplier: 1.5, clipNorm: 2) == 3)
    }

    /// Odd lengths use the spare sample: consecutive calls continue one stream.
    @Test func oddBlocksContinueOneStream() {
        var whole = GaussianSampler(source: SeededNoiseSource(seed: 1))
        var pieces = GaussianSampler(source: SeededNoiseSource(seed: 1))
        let all = GaussianNoise.samples(count: 10_001, sampler: &whole)
        let parts =
            GaussianNoise.samples(count: 3, sampler: &pieces) + GaussianNoise.samples(count: 4997, sampler: &pieces)
            + GaussianNoise.samples(count: 5001, sampler: &pieces)
        #expect(all == parts)
    }
}
