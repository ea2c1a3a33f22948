import FedRecFederation
import FedRecSecurity
import FedRecTensor
import PropertyBased
import Testing

@Suite struct SecureAggregationQuantizerTests {
    @Test(arguments: [(2, 31), (8, 29), (9, 28), (32, 27), (128, 25), (1000, 22), (65536, 16)])
    func bitsPerElementLeaveRoomForTheCohort(n: Int, bits: Int) {
        let quantizer = SecureAggregationQuantizer(participantCount: n, clipRange: 1, maximumWeight: 1)
        #expect(quantizer.bitsPerElement == bits)
        // n clients at the extreme level cannot overflow Int32.
        #expect(Int64(n) * quantizer.maximumLevel < Int64(Int32.max))
    }

    /// m clients with random values (some beyond the clip range) and weights (some above W): the decoded sums
    /// are within m * c * W / M and m * W / M of the exact clipped, capped sums.
    @Test func sumsStayWithinTheDocumentedBound() async throws {
        await propertyCheck(count: 80, input: Gen.int(in: 1...40), Gen.int(in: 1...64), Gen.int(in: 0...1_000_000)) {
            n, length, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            let clip = Float(0.01) + rng.nextUnitFloat() * 10
            let maxWeight = Float(1 + rng.next() % 1000)
            let quantizer = SecureAggregationQuantizer(participantCount: n, clipRange: clip, maximumWeight: maxWeight)
            let m = 1 + Int(rng.next() % UInt64(n))
            var sum = [UInt32](repeating: 0, count: length + 1)
            var exact = [Double](repeating: 0, count: length)
            var exactWeight = 0.0
            for _ in 0..<m {
                let values = (0..<length).map { _ in (rng.nextUnitFloat() * 3 - 1.5) * clip }
                let weight = Float(1 + rng.next() % UInt64(2 * maxWeight))
                let words = try quantizer.encode(values, weight: weight)
                for i in sum.indices { sum[i] &+= words[i] }
                let capped = Double(min(weight, maxWeight))
                exactWeight += capped
                for i in 0..<length { exact[i] += capped * Double(min(max(values[i], -clip), clip)) }
            }
            let (weightedSum, totalWeight) = quantizer.decode(sum)
            let slack = 1 + 1e-6
            #expect(abs(totalWeight - exactWeight) <= Double(m) * quantizer.weightResolution * slack)
            for i in 0..<length {
                let bound = Double(m) * quantizer.weightedSumResolution * slack + abs(exact[i]) * 1.2e-7
                #expect(abs(Double(weightedSum[i]) - exact[i]) <= bound, "element \(i)")
            }
        }
    }

    /// The whole cohort at the extremes (clip range, maximum weight) decodes without wrapping.
    @Test(arguments: [Float(1), -1])
    func extremesDoNotOverflow(sign: Float) throws {
        let n = 128
        let quantizer = SecureAggregationQuantizer(participantCount: n, clipRange: 2, maximumWeight: 50)
        var sum = [UInt32](repeating: 0, count: 4)
        for _ in 0..<n {
            let words = try quantizer.encode([sign * 5, sign * 2, sign * 2], weight: 80)
            for i in sum.indices { sum[i] &+= words[i] }
        }
        let (weightedSum, totalWeight) = quantizer.decode(sum)
        for value in weightedSum { #expect(abs(value - sign * Float(n) * 2 * 50) <= Float(n) * 50 * 1e-6) }
        #expect(abs(totalWeight - Double(n) * 50) <= 1e-3)
    }

    /// Stochastic rounding is unbiased: the mean of many encodings of a value between two levels approaches it
    /// far closer than one level.
    @Test func roundingIsUnbiased() throws {
        let quantizer = SecureAggregationQuantizer(participantCount: 1 << 16, clipRange: 1, maximumWeight: 1)
        let step = 1 / Double(quantizer.maximumLevel)
        let value = Float(0.3 * step)  // between level 0 and level 1
        let words = try quantizer.encode([Float](repeating: value, count: 20_000), weight: 1)
        let mean = words.dropLast().reduce(0.0) { $0 + Double(Int32(bitPattern: $1)) } / 20_000
        #expect(abs(mean - 0.3) < 0.03)
        #expect(Set(words.dropLast()) == [0, 1])
    }

    @Test func fixedRoundingSeedIsDeterministic() throws {
        let quantizer = SecureAggregationQuantizer(participantCount: 8, clipRange: 1, maximumWeight: 10)
        let seed = SecureBytes(zeros: 32)
        let values: [Float] = [0.1, -0.7, 0.33]
        #expect(
            try quantizer.encode(values, weight: 3, roundingSeed: seed)
                == quantizer.encode(values, weight: 3, roundingSeed: seed))
    }

    /// The encoding equals the documented formula word for word (`Q(u) = floor(u * M + r)` clamped, with r the
    /// seed's ChaCha20 words over 2^32), with values inside, at and beyond the clip range, signed zeros and a
    /// weight above W.
    @Test func encodingMatchesTheDocumentedFormula() throws {
        let quantizer = SecureAggregationQuantizer(participantCount: 32, clipRange: 0.75, maximumWeight: 20)
        var rng = SplitMix64(seed: 77)
        var values = (0..<(8 * 37 + 5)).map { _ in (rng.nextUnitFloat() * 3 - 1.5) * 0.75 }
        values[3] = 0
        values[4] = -0.0
        values[9] = 0.75
        values[10] = -0.75
        values[299] = 40
        let seed = SecureBytes(copying: (0..<32).map { UInt8($0 * 7 % 251) })
        for weight: Float in [3, 25] {
            let words = try quantizer.encode(values, weight: weight, roundingSeed: seed)
            let random = try MaskGenerator.mask(seed: seed, count: values.count + 1)
            let levels = Double(quantizer.maximumLevel)
            let shrink = Double(min(weight, 20)) / 20
            let scale = shrink * levels / 0.75
            for (index, x) in values.enumerated() {
                let level = (Double(min(max(x, -0.75), 0.75)) * scale + Double(random[index]) / 4_294_967_296.0)
                    .rounded(.down)
                let expected = UInt32(bitPattern: Int32(min(max(level, -levels), levels)))
                #expect(words[index] == expected, "element \(index), weight \(weight)")
            }
        }
        // A non-finite value among many is still named by its index.
        values[201] = .nan
        let refusal = secAggError { _ = try quantizer.encode(values, weight: 1) }
        #expect(refusal?.message.contains("index 201") == true, "\(String(describing: refusal))")
    }

    @Test func badInputIsRefused() {
        let quantizer = SecureAggregationQuantizer(participantCount: 8, clipRange: 1, maximumWeight: 10)
        for (values, weight): ([Float], Float) in [([.nan], 1), ([.infinity, 0], 1), ([0], 0), ([0], -1), ([0], .nan)] {
            #expect(secAggError { _ = try quantizer.encode(values, weight: weight) }?.code == .invalidInput)
        }
    }
}

@Suite struct SecureAggregationParametersTests {
    private func parameters(n: Int, k: Int? = nil, t: Int? = nil) -> SecureAggregationParameters {
        SecureAggregationParameters(
            round: 1, participants: (0..<n).map { "c\($0)" }, vectorLength: 10, clipRange: 1, maximumWeight: 10,
            graphSeed: 42, neighbourCount: k, threshold: t)
    }

    @Test(arguments: [(2, 1, 1), (3, 2, 2), (5, 4, 3), (8, 6, 4), (32, 10, 6), (128, 14, 8), (1000, 20, 11)])
    func defaults(n: Int, k: Int, t: Int) throws {
        let p = parameters(n: n)
        #expect(p.neighbourCount == k)
        #expect(p.threshold == t)
        try p.validate()
    }

    @Test func invalidCombinationsAreRefused() {
        let bad: [SecureAggregationParameters] = [
            parameters(n: 1, k: 1, t: 1),
            parameters(n: 10, k: 3, t: 2),  // odd k below n - 1
            parameters(n: 10, k: 4, t: 2),  // t <= k / 2
            parameters(n: 10, k: 4, t: 5),  // t > k
            parameters(n: 10, k: 10, t: 6),  // k > n - 1
            parameters(n: 300, k: 256, t: 200),  // more than 255 shares
            {
                var p = parameters(n: 4)
                p.participants[2] = "c1"
                return p
            }(),
            {
                var p = parameters(n: 4)
                p.participants[0] = "-bad"
                return p
            }(),
            {
                var p = parameters(n: 4)
                p.clipRange = .infinity
                return p
            }(),
            {
                var p = parameters(n: 4)
                p.maximumWeight = 0
                return p
            }(),
            {
                var p = parameters(n: 4)
                p.vectorLength = 0
                return p
            }(),
        ]
        for p in bad {
            #expect(secAggError { try p.validate() }?.code == .invalidParameters, "\(p.participants.count)")
        }
    }

    /// The Harary graph is k-regular, symmetric, loop-free, a function of the seed, and share numbers fit.
    @Test(arguments: [(9, 4), (9, 8), (32, 10), (128, 14), (13, 2), (300, 254)])
    func graphShape(n: Int, k: Int) {
        let graph = NeighbourGraph(participantCount: n, neighbourCount: k, seed: 7)
        for i in 0..<n {
            let list = graph.neighbours(of: i)
            #expect(list.count == k)
            #expect(list == list.sorted() && Set(list).count == k && !list.contains(i))
            for (position, j) in list.enumerated() {
                #expect(graph.areNeighbours(j, i))
                #expect(graph.shareNumber(holder: j, owner: i) == UInt8(position + 1))
            }
        }
        #expect(graph == NeighbourGraph(participantCount: n, neighbourCount: k, seed: 7))
        if k < n - 1 { #expect(graph != NeighbourGraph(participantCount: n, neighbourCount: k, seed: 8)) }
    }
}
