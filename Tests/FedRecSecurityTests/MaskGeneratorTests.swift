import FedRecSecurity
import FedRecTensor
import PropertyBased
import Testing

private func seedBytes(_ rng: inout SplitMix64) -> SecureBytes {
    SecureBytes(copying: (0..<MaskGenerator.seedByteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
}

@Suite struct MaskGeneratorTests {
    /// Known answer: ChaCha20 (20 rounds, 64-bit nonce) under the all-zero key and nonce starts with
    /// 76 b8 e0 ad a0 f1 3d 90 ... (the classic test vector), read as little-endian words.
    @Test func zeroKeyKnownAnswer() throws {
        let words = try MaskGenerator.mask(seed: SecureBytes(zeros: 32), count: 4)
        #expect(words == [0xade0_b876, 0x903d_f1a0, 0xe56a_5d40, 0x28bd_8653])
    }

    /// Tiled accumulation of one positive term equals the single-call expansion, across tile and block edges.
    @Test(arguments: [1, 15, 16, 17, 4095, 4096, 4097, 8192 + 33, 20_000])
    func accumulateMatchesExpansion(count: Int) throws {
        var rng = SplitMix64(seed: UInt64(count))
        let seed = seedBytes(&rng)
        var words = [UInt32](repeating: 0, count: count)
        try MaskGenerator.accumulate([MaskTerm(seed: seed, negated: false)], into: &words)
        #expect(words == (try MaskGenerator.mask(seed: seed, count: count)))
        // A prefix of a longer mask is the shorter mask (the stream does not depend on the length).
        #expect(Array(try MaskGenerator.mask(seed: seed, count: count + 100).prefix(count)) == words)
    }

    /// Adding and subtracting the same masks (in any order) leaves the vector unchanged mod 2^32; the sum of
    /// several terms is the wrapping sum of their expansions.
    @Test func masksCancelAndAdd() async throws {
        await propertyCheck(count: 60, input: Gen.int(in: 1...9000), Gen.int(in: 1...5), Gen.int(in: 0...1_000_000)) {
            count, termCount, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            let base = (0..<count).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            let seeds = (0..<termCount).map { _ in seedBytes(&rng) }
            let signs = (0..<termCount).map { _ in rng.next() % 2 == 0 }
            var words = base
            try MaskGenerator.accumulate(
                zip(seeds, signs).map { try MaskTerm(seed: $0, negated: $1) }, into: &words)
            var expected = base
            for (seed, negated) in zip(seeds, signs) {
                let mask = try MaskGenerator.mask(seed: seed, count: count)
                for i in 0..<count { expected[i] = negated ? expected[i] &- mask[i] : expected[i] &+ mask[i] }
            }
            #expect(words == expected)
            try MaskGenerator.accumulate(
                zip(seeds, signs).reversed().map { try MaskTerm(seed: $0, negated: !$1) }, into: &words)
            #expect(words == base)
        }
    }

    @Test func distinctSeedsGiveDistinctMasks() throws {
        var rng = SplitMix64(seed: 5)
        let a = try MaskGenerator.mask(seed: seedBytes(&rng), count: 64)
        let b = try MaskGenerator.mask(seed: seedBytes(&rng), count: 64)
        #expect(a != b)
        #expect(Set(a).count > 60)
    }

    @Test func wrongSeedLengthIsRefused() {
        #expect(throws: SecurityError.self) { _ = try MaskTerm(seed: SecureBytes(zeros: 31), negated: false) }
        #expect(throws: SecurityError.self) { _ = try MaskGenerator.mask(seed: SecureBytes(zeros: 33), count: 4) }
    }
}
