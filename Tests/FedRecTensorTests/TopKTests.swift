import FedRecTensor
import PropertyBased
import Testing

/// The reference: a full sort of the non-excluded indices, cut to `k`. The order is written out
/// independently of `TopK.ranksBefore`: numbers before NaN, higher score first, then lower index.
private func sortedPrefix(_ scores: [Float], k: Int, excluding excluded: Set<Int> = []) -> [Int] {
    let candidates = scores.indices.filter { !excluded.contains($0) }
    let sorted = candidates.sorted { a, b in
        let (sa, sb) = (scores[a], scores[b])
        if sa.isNaN != sb.isNaN { return sb.isNaN }
        if !sa.isNaN && sa != sb { return sa > sb }
        return a < b
    }
    return Array(sorted.prefix(k))
}

/// Maps small integer codes to scores with many ties: 0...3 are values, 4 is NaN, 5 is -infinity.
private func tieScore(_ code: Int) -> Float {
    switch code {
    case 4: .nan
    case 5: -.infinity
    default: Float(code)
    }
}

@Suite struct TopKTests {
    @Test func ranksByScoreThenIndex() {
        let scores: [Float] = [0.5, 2, 1, 2, -1, 0.5]
        #expect(TopK.select(scores, k: 4) == [1, 3, 2, 0])
        #expect(TopK.select(scores, k: 1) == [1])
    }

    @Test func kAtOrBeyondCountReturnsEveryIndexSorted() {
        let scores: [Float] = [3, 1, 2]
        #expect(TopK.select(scores, k: 3) == [0, 2, 1])
        #expect(TopK.select(scores, k: 10) == [0, 2, 1])
        #expect(TopK.select([Float](), k: 5) == [])
    }

    @Test func excludedIndicesNeverAppear() {
        let scores: [Float] = [9, 8, 7, 6, 5]
        let mask = IndexMask(count: 5, containing: [0, 2])
        #expect(TopK.select(scores, k: 2, excluding: mask) == [1, 3])
        #expect(TopK.select(scores, k: 5, excluding: mask) == [1, 3, 4])
        #expect(TopK.select(scores, k: 1, excluding: IndexMask(count: 5, containing: 0..<5)) == [])
    }

    @Test func nanRanksBelowNegativeInfinity() {
        let scores: [Float] = [.nan, -.infinity, 1, .nan, 0]
        #expect(TopK.select(scores, k: 5) == [2, 4, 1, 0, 3])
        #expect(TopK.select(scores, k: 3) == [2, 4, 1])
        // Signed zeros are equal, so the index decides.
        #expect(TopK.select([0.0, -0.0, 0.0], k: 3) == [0, 1, 2])
    }

    @Test func indexMaskMembership() {
        var mask = IndexMask(count: 130)
        mask.insert(contentsOf: [0, 63, 64, 129] as [Int32])
        #expect(mask.contains(63) && mask.contains(64) && mask.contains(129) && !mask.contains(1))
        #expect(!mask.contains(-1) && !mask.contains(130))
        #expect(mask.memberCount == 4)
        mask.remove(contentsOf: [63, 129])
        #expect(mask.memberCount == 2 && !mask.contains(63))
        mask.removeAll()
        #expect(mask.memberCount == 0)
    }

    /// Scores from a tiny value set (ties everywhere, some NaN and -inf) against a full sort.
    @Test func equalsSortedPrefixWithTies() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...5).array(of: 0...120), Gen.int(in: 1...130)) {
            codes, k in
            let scores = codes.map(tieScore)
            #expect(TopK.select(scores, k: k) == sortedPrefix(scores, k: k))
        }
    }

    /// Ties plus a random exclusion set.
    @Test func equalsSortedPrefixWithExclusions() async {
        await propertyCheck(
            count: 300, input: Gen.int(in: 0...5).array(of: 0...120), Gen.int(in: 1...130), Gen.int(in: 0...1000)
        ) { codes, k, seed in
            let scores = codes.map(tieScore)
            var rng = SplitMix64(seed: UInt64(seed))
            let excluded = Set(scores.indices.filter { _ in rng.next() % 3 == 0 })
            let mask = IndexMask(count: scores.count, containing: excluded)
            #expect(TopK.select(scores, k: k, excluding: mask) == sortedPrefix(scores, k: k, excluding: excluded))
        }
    }

    /// Continuous scores (few ties) at catalogue-like sizes, seeded.
    @Test(arguments: [1, 10, 50, 2000])
    func equalsSortedPrefixGaussian(k: Int) {
        var rng = SplitMix64(seed: 2024)
        for _ in 0..<5 {
            let scores = (0..<1700).map { _ in rng.nextGaussian() }
            #expect(TopK.select(scores, k: k) == sortedPrefix(scores, k: k))
        }
    }

    /// The batch form equals the single-row form row by row, with per-row exclusions.
    @Test func batchMatchesRows() {
        var rng = SplitMix64(seed: 99)
        let (rows, columns, k) = (7, 40, 12)
        let scores = Matrix(
            rows: rows, columns: columns,
            storage: (0..<(rows * columns)).map { _ in
                Float(rng.next() % 4)
            })
        let excluded: [[Int32]] = (0..<rows).map { _ in
            (0..<Int32(columns)).filter { _ in rng.next() % 4 == 0 }
        }
        let batch = TopK.select(rowsOf: scores, k: k, excluding: excluded)
        let plain = TopK.select(rowsOf: scores, k: k)
        for row in 0..<rows {
            let rowScores = scores.row(row)
            #expect(batch[row] == sortedPrefix(rowScores, k: k, excluding: Set(excluded[row].map(Int.init))))
            #expect(plain[row] == sortedPrefix(rowScores, k: k))
        }
    }
}
