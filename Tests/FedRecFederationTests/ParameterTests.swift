import FedRecFederation
import FedRecModel
import FedRecSecurity
import FedRecTensor
import Foundation
import Testing

@Suite struct ParameterLayoutTests {
    @Test func flattenRoundTripsInModelFileOrder() {
        let data = SyntheticData()
        let tower = data.model.userTower
        let layout = ParameterLayout.userTower(data.configuration)
        #expect(layout.entries.map(\.name) == tower.namedParameters.map(\.name))
        #expect(layout.entries.map(\.shape) == tower.namedParameters.map(\.shape))
        let flat = tower.flattened()
        #expect(flat.count == layout.count)
        #expect(UserTower(configuration: data.configuration, flattened: flat) == tower)
        let hidden = layout.entry(named: UserTower.hiddenBiasName)!
        #expect(Array(flat[hidden.offset..<(hidden.offset + hidden.count)]) == tower.hiddenBias.storage)
    }

    /// The bit-pattern finiteness check agrees with `Float.isFinite` on random bit patterns, every special value
    /// and every position of a single bad element.
    @Test func finitenessCheckMatchesFloatIsFinite() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<200 {
            let values = (0..<Int(rng.next() % 40)).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            }
            #expect(FlatVector.isFinite(values) == values.allSatisfy(\.isFinite))
        }
        let specials: [Float] = [
            .infinity, -.infinity, .nan, -.nan, .signalingNaN, .greatestFiniteMagnitude,
            -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, -0,
        ]
        for special in specials {
            for position in [0, 7, 8, 63, 64, 99] {
                var values = [Float](repeating: 1.5, count: 100)
                values[position] = special
                #expect(FlatVector.isFinite(values) == special.isFinite, "\(special) at \(position)")
            }
        }
        #expect(FlatVector.isFinite([]))
    }

    @Test func deltaIsLocalMinusGlobal() {
        let data = SyntheticData()
        let global = data.model.userTower
        var localFlat = global.flattened()
        var rng = SplitMix64(seed: 5)
        for i in localFlat.indices where i % 7 == 0 { localFlat[i] += rng.nextGaussian() }
        let local = UserTower(configuration: data.configuration, flattened: localFlat)
        let delta = local.delta(from: global)
        #expect(delta == FlatVector.delta(local: localFlat, global: global.flattened()))
        var back = global.flattened()
        FlatVector.add(delta, to: &back)
        #expect(zip(back, localFlat).allSatisfy { abs($0 - $1) <= 1e-6 })
    }
}

@Suite struct UpdateValidatorTests {
    func update(_ data: SyntheticData) -> ClientUpdate {
        let c = data.configuration
        return ClientUpdate(
            userTowerDelta: [Float](repeating: 0.01, count: ParameterLayout.userTower(c).count),
            itemEmbeddingGradient: .dense(Matrix(rows: c.itemCount, columns: c.dimension, repeating: 0.01)),
            exampleCount: 5, meanLoss: 1)
    }

    @Test func acceptsAWellFormedUpdate() throws {
        let data = SyntheticData()
        try data.validator.validate(update(data), client: "a", round: 3)
    }

    @Test(arguments: [
        "shortDelta", "itemShape", "zeroExamples", "nan", "infiniteGradient", "nanLoss", "norm", "tooMany", "sparseRow",
    ])
    func rejectsWithATypedErrorNamingClientAndRound(defect: String) {
        let data = SyntheticData()
        var validator = data.validator
        var u = update(data)
        let expected: FederationError.Code
        switch defect {
        case "shortDelta":
            u.userTowerDelta.removeLast()
            expected = .wrongShape
        case "itemShape":
            u.itemEmbeddingGradient = .dense(Matrix(rows: 3, columns: 8))
            expected = .wrongShape
        case "zeroExamples":
            u.exampleCount = 0
            expected = .noExamples
        case "nan":
            u.userTowerDelta[17] = .nan
            expected = .nonFinite
        case "infiniteGradient":
            var m = u.itemEmbeddingGradient.dense
            m[2, 3] = .infinity
            u.itemEmbeddingGradient = .dense(m)
            expected = .nonFinite
        case "nanLoss":
            u.meanLoss = .nan
            expected = .nonFinite
        case "norm":
            validator.maximumDeltaNorm = 0.01
            expected = .normTooLarge
        case "tooMany":
            validator.maximumExampleCount = 4
            expected = .tooManyExamples
        default:
            var sparse = RowSparseGradient(tableRows: 5, columns: 8)
            sparse.slot(for: 1)
            u.itemEmbeddingGradient = .rowSparse(sparse)
            expected = .wrongShape
        }
        do {
            try validator.validate(u, client: "client-9", round: 4)
            Issue.record("accepted a \(defect) update")
        } catch let error as FederationError {
            #expect(error.code == expected)
            #expect(error.client == "client-9" && error.round == 4)
            #expect(error.description.contains("client-9") && error.description.contains("round 4"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite struct AggregationTests {
    @Test func weightedMeanEqualsTheDirectComputation() {
        let data = SyntheticData()
        let c = data.configuration
        let p = ParameterLayout.userTower(c).count
        var rng = SplitMix64(seed: 9)
        let updates = (0..<5).map { k in
            ClientUpdate(
                userTowerDelta: (0..<p).map { _ in rng.nextGaussian() },
                itemEmbeddingGradient: k == 2
                    ? .rowSparse(
                        {
                            var g = RowSparseGradient(tableRows: c.itemCount, columns: c.dimension)
                            let values = (0..<c.dimension).map { _ in rng.nextGaussian() }
                            values.withUnsafeBufferPointer { g.add(row: 4, $0.baseAddress!) }
                            return g
                        }())
                    : .dense(
                        Matrix(
                            rows: c.itemCount, columns: c.dimension,
                            storage: (0..<(c.itemCount * c.dimension)).map { _ in rng.nextGaussian() })),
                exampleCount: 1 + k * 3, meanLoss: Float(k))
        }
        var aggregator = WeightedAggregator(deltaCount: p, itemRows: c.itemCount, dimension: c.dimension)
        for (k, u) in updates.enumerated() { aggregator.add(u, from: "c\(k)") }
        let result = aggregator.result()!
        let total = updates.reduce(0) { $0 + $1.exampleCount }
        #expect(result.exampleCount == total)
        #expect(result.participants == ["c0", "c1", "c2", "c3", "c4"])
        for i in stride(from: 0, to: p, by: 97) {
            let direct =
                updates.reduce(0.0) { $0 + Double($1.exampleCount) * Double($1.userTowerDelta[i]) } / Double(total)
            #expect(isClose(Double(result.meanDelta[i]), direct, relative: 1e-5))
        }
        let dense = updates.map { $0.itemEmbeddingGradient.dense }
        for i in 0..<(c.itemCount * c.dimension) {
            let direct =
                zip(updates, dense).reduce(0.0) { $0 + Double($1.0.exampleCount) * Double($1.1.storage[i]) }
                / Double(total)
            #expect(isClose(Double(result.meanItemEmbeddingGradient.storage[i]), direct, relative: 1e-5))
        }
        #expect(
            isClose(
                result.meanLoss,
                updates.reduce(0.0) { $0 + Double($1.exampleCount) * Double($1.meanLoss) } / Double(total)))
        #expect(WeightedAggregator(deltaCount: p, itemRows: c.itemCount, dimension: c.dimension).result() == nil)
    }
}

@Suite struct ServerOptimizerTests {
    /// Scalar reference of Reddi et al. 2021, Algorithm 2 (m0 = 0, v0 = tau^2, no bias correction).
    func reference(_ kind: String, deltas: [Double], eta: Double, b1: Double, b2: Double, tau: Double) -> Double {
        var (x, m, v) = (0.5, 0.0, tau * tau)
        for d in deltas {
            m = b1 * m + (1 - b1) * d
            switch kind {
            case "adam": v = b2 * v + (1 - b2) * d * d
            case "yogi": v = v - (1 - b2) * d * d * (v - d * d > 0 ? 1 : (v - d * d < 0 ? -1 : 0))
            default: break
            }
            x += kind == "avg" ? eta * d : eta * m / (v.squareRoot() + tau)
        }
        return x
    }

    @Test(arguments: ["avg", "adam", "yogi"])
    func matchesTheScalarReference(kind: String) {
        let deltas: [Double] = [0.3, -0.1, 0.05, 0.2, -0.4]
        let configuration: ServerOptimizerConfiguration =
            switch kind {
            case "avg": .fedAvg(learningRate: 0.7)
            case "adam": .fedAdam(learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.01)
            default: .fedYogi(learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.01)
            }
        var optimizer = ServerOptimizer(configuration: configuration)
        var x: [Float] = [0.5, 0.5]
        for d in deltas { optimizer.apply(delta: [Float(d), Float(d)], to: &x) }
        let expected = reference(kind, deltas: deltas, eta: kind == "avg" ? 0.7 : 0.1, b1: 0.9, b2: 0.99, tau: 0.01)
        #expect(isClose(Double(x[0]), expected, relative: 1e-5))
        #expect(x[0] == x[1])
        #expect(optimizer.step == deltas.count)
    }

    /// The step runs eight lanes at a time with a scalar tail; both must give exactly the scalar Float loop's
    /// result (same operations, same order), over every lane and the tail, for each adaptive rule.
    @Test(arguments: ["adam", "yogi", "bias-corrected"])
    func vectorisedStepIsBitForBitTheScalarLoop(kind: String) {
        let (b1, b2, eta, epsilon): (Float, Float, Float, Float) = (0.9, 0.99, 0.01, 1e-3)
        let configuration: ServerOptimizerConfiguration =
            switch kind {
            case "adam": .fedAdam(learningRate: eta, beta1: b1, beta2: b2, tau: epsilon)
            case "yogi": .fedYogi(learningRate: eta, beta1: b1, beta2: b2, tau: epsilon)
            default: .adam(learningRate: eta, beta1: b1, beta2: b2, epsilon: epsilon)
            }
        let count = 8 * 37 + 5
        var random = SplitMix64(seed: 11)
        var optimizer = ServerOptimizer(configuration: configuration)
        var x = (0..<count).map { _ in random.nextUnitFloat() - 0.5 }
        var expected = x
        let initialSecond: Float = kind == "bias-corrected" ? 0 : epsilon * epsilon
        var (m, v) = ([Float](repeating: 0, count: count), [Float](repeating: initialSecond, count: count))
        for step in 1...4 {
            // Some exact zeros and repeated values, so Yogi's sign takes all three values.
            let delta = (0..<count).map { i in i % 7 == 0 ? 0 : (random.nextUnitFloat() - 0.5) * 0.2 }
            optimizer.apply(delta: delta, to: &x)
            var stepSize = eta
            var secondScale: Float = 1
            if kind == "bias-corrected" {
                stepSize = eta / Float(-expm1(Double(step) * log(Double(b1))))
                secondScale = 1 / Float(-expm1(Double(step) * log(Double(b2))))
            }
            for i in 0..<count {
                let d = delta[i]
                let d2 = d * d
                m[i] = b1 * m[i] + (1 - b1) * d
                if kind == "yogi" {
                    let s: Float = v[i] > d2 ? 1 : (v[i] < d2 ? -1 : 0)
                    v[i] = v[i] - (1 - b2) * d2 * s
                } else {
                    v[i] = b2 * v[i] + (1 - b2) * d2
                }
                expected[i] += stepSize * m[i] / ((v[i] * secondScale).squareRoot() + epsilon)
            }
        }
        #expect(x == expected)
        #expect(optimizer.moments.first == m && optimizer.moments.second == v)
    }
}

@Suite struct DecodedConfigurationTests {
    /// A training configuration decoded from a coordinator's JSON skipped the initialiser's checks; `problem`
    /// names what a client must refuse (it used to crash on negative epochs and spin on a zero batch).
    @Test func decodedTrainingConfigurationsAreChecked() throws {
        func decoded(_ json: String) throws -> ClientTrainingConfiguration {
            try JSONDecoder().decode(ClientTrainingConfiguration.self, from: Data(json.utf8))
        }
        let good = try JSONEncoder().encode(ClientTrainingConfiguration())
        #expect(try decoded(String(decoding: good, as: UTF8.self)).problem == nil)
        let text = String(decoding: good, as: UTF8.self)
        for (field, bad, fragment) in [
            ("localEpochs", "-1", "local epochs"), ("batchSize", "0", "batch size"), ("proximalMu", "-1", "proximal mu"),
        ] {
            let edited = text.replacingOccurrences(
                of: #""\#(field)":[^,}]*"#, with: "\"\(field)\":\(bad)", options: .regularExpression)
            #expect(try decoded(edited).problem?.contains(fragment) == true, "\(edited)")
        }
        var clipped = ClientTrainingConfiguration()
        clipped.clipNorm = 0
        #expect(clipped.problem?.contains("clip norm") == true)
    }
}

@Suite struct ClientSamplerTests {
    @Test func fixedCohortsAreSeededDistinctAndSized() {
        let sampler = ClientSampler(selection: .count(7), seed: 42)
        let a = sampler.sample(round: 3, populationSize: 50)
        #expect(a == sampler.sample(round: 3, populationSize: 50))
        #expect(a.count == 7 && Set(a).count == 7 && a == a.sorted() && a.allSatisfy { (0..<50).contains($0) })
        #expect(a != sampler.sample(round: 4, populationSize: 50))
        #expect(a != sampler.sample(round: 3, attempt: 1, populationSize: 50))
        // Attempts 256 apart draw different cohorts (they once shared a stream).
        let attempts = [0, 1, 255, 256, 257, 512].map { sampler.sample(round: 3, attempt: $0, populationSize: 50) }
        #expect(Set(attempts).count == attempts.count)
        #expect(sampler.sample(round: 0, populationSize: 5) == [0, 1, 2, 3, 4])
        let fraction = ClientSampler(selection: .fraction(0.1), seed: 1)
        #expect(fraction.sample(round: 0, populationSize: 95).count == 10)
        #expect(fraction.sample(round: 0, populationSize: 3).count == 1)
        #expect(sampler.cohort(round: 3, from: Array(100..<150)) == a.map { $0 + 100 })
    }

    @Test func everyClientIsEquallyLikely() {
        let sampler = ClientSampler(selection: .count(5), seed: 7)
        var counts = [Int](repeating: 0, count: 20)
        for round in 0..<2000 { for i in sampler.sample(round: round, populationSize: 20) { counts[i] += 1 } }
        // Expected 500 each; 5 standard deviations is about 97.
        #expect(counts.allSatisfy { abs($0 - 500) < 100 }, "\(counts)")
    }

    @Test func poissonSamplingHasRateQ() {
        let sampler = ClientSampler(selection: .poisson(rate: 0.05), seed: 3)
        var total = 0
        var sizes = Set<Int>()
        for round in 0..<400 {
            let cohort = sampler.sample(round: round, populationSize: 200)
            total += cohort.count
            sizes.insert(cohort.count)
        }
        // Mean 10 per round, 4000 in all (sd about 62).
        #expect(abs(total - 4000) < 300)
        #expect(sizes.count > 5)  // variable cohort size
        #expect(sampler.sample(round: 9, populationSize: 200) == sampler.sample(round: 9, populationSize: 200))
    }

    /// DP draws cohorts from a CSPRNG: the same sampling from any generator (the seeded draw is the generator
    /// form fed the seeded stream), at rate q from libsodium's.
    @Test func cohortsDrawnFromAGeneratorFollowTheSameRules() throws {
        let sampler = ClientSampler(selection: .poisson(rate: 0.05), seed: 3)
        var stream = SplitMix64.stream(seed: 3, index: UInt64(9) << 8 | 1)
        #expect(
            sampler.sample(populationSize: 200, using: &stream)
                == sampler.sample(round: 9, attempt: 1, populationSize: 200))
        var secure = try SecureRandomGenerator()
        var total = 0
        for _ in 0..<400 {
            let cohort = sampler.cohort(from: Array(0..<200), using: &secure)
            #expect(cohort == cohort.sorted() && Set(cohort).count == cohort.count)
            total += cohort.count
        }
        #expect(abs(total - 4000) < 300)
        let fixed = ClientSampler(selection: .count(7), seed: 42)
        #expect(fixed.sample(populationSize: 50, using: &secure).count == 7)
    }
}
