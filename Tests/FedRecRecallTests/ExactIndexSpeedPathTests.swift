import FedRecRecall
import FedRecTensor
import Testing

/// Exactness of the fast paths of `ExactIndex`: the bfloat16-filtered single-query path (whose re-scoring must
/// reproduce the fp32 scores bit for bit) and the batched SIMD-threshold scan, against a full sort of the
/// reference scores (`scores(query:)`, one `sgemv` over all items), ties to the lower index.
@Suite struct ExactIndexSpeedPathTests {
    private static func sortedPrefix(_ scores: [Float], k: Int) -> [Int] {
        Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(k))
    }

    private static func row(_ m: Matrix, _ r: Int) -> [Float] {
        Array(m.storage[(r * m.columns)..<((r + 1) * m.columns)])
    }

    private static func gaussian(_ rows: Int, _ d: Int, seed: UInt64, scale: Float = 1, unit: Bool = true) -> Matrix {
        var rng = SplitMix64(seed: seed)
        var storage = [Float](repeating: 0, count: rows * d)
        for r in 0..<rows {
            var norm: Float = 0
            for c in 0..<d {
                storage[r * d + c] = rng.nextGaussian()
                norm += storage[r * d + c] * storage[r * d + c]
            }
            let factor = unit ? scale / norm.squareRoot() : scale
            for c in 0..<d { storage[r * d + c] *= factor }
        }
        return Matrix(rows: rows, columns: d, storage: storage)
    }

    /// Checks every query of `queries` (searched as one batch) and, when `singles`, each query on its own.
    /// `exactScores`: the scores must be bit-identical to the reference (true for the single-query path, and for
    /// every path when all products are exact); otherwise the batched scores may differ from `sgemv`'s in the last
    /// bits, and only the items are compared.
    private static func check(
        _ index: ExactIndex, _ queries: Matrix, k: Int, singles: Bool = true, exactBatchScores: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let batch = index.search(queries, k: k)
        for q in 0..<queries.rows {
            let query = row(queries, q)
            let scores = index.scores(query: query)
            let expected = sortedPrefix(scores, k: k)
            let found = batch.row(q)
            if exactBatchScores || queries.rows == 1 {
                #expect(found.map { Int($0.item) } == expected, "batch \(queries.rows), query \(q)", sourceLocation: sourceLocation)
                #expect(
                    zip(found.map(\.score), expected.map { scores[$0] }).allSatisfy { abs($0 - $1) <= 4 * $1.ulp },
                    sourceLocation: sourceLocation)
            } else {
                // sgemm rounds some products differently from sgemv (last bits), which can swap near-ties: check the
                // ranking under the found scores and that it is the top-K of the reference up to that rounding.
                #expect(found.count == expected.count, sourceLocation: sourceLocation)
                for (a, b) in zip(found, found.dropFirst()) {
                    #expect(a.score > b.score || (a.score == b.score && a.item < b.item), sourceLocation: sourceLocation)
                }
                let tolerance: Float = 1e-5
                for entry in found {
                    #expect(abs(entry.score - scores[Int(entry.item)]) <= tolerance, sourceLocation: sourceLocation)
                }
                if let last = found.last {
                    let chosen = Set(found.map { Int($0.item) })
                    let bestOther = scores.indices.filter { !chosen.contains($0) }.map { scores[$0] }.max() ?? -.infinity
                    #expect(bestOther <= last.score + tolerance, sourceLocation: sourceLocation)
                }
                let overlap = Set(found.map { Int($0.item) }).intersection(expected).count
                #expect(overlap >= expected.count - 2, sourceLocation: sourceLocation)
            }
            if singles && queries.rows > 1 {
                let single = index.search(Matrix(rows: 1, columns: queries.columns, storage: query), k: k).row(0)
                #expect(single.map { Int($0.item) } == expected, "single, query \(q)", sourceLocation: sourceLocation)
                // Re-scored with sgemv like the reference; OpenBLAS may split a long sgemv differently (threads,
                // alignment), so scores agree to the last bit or two, not always bit for bit.
                let reference = expected.map { scores[$0] }
                #expect(
                    zip(single.map(\.score), reference).allSatisfy { abs($0 - $1) <= 4 * $1.ulp },
                    sourceLocation: sourceLocation)
            }
            #expect(batch.items[(q * k + expected.count)..<(q * k + k)].allSatisfy { $0 == -1 })
        }
    }

    /// Item counts around the panel (8), sgemv group (4), batch block (1024) and k boundaries, d = 64.
    @Test(arguments: [1, 3, 7, 8, 99, 100, 101, 1023, 1025, 3001, 20_011])
    func singleQueryMatchesFullSort(n: Int) {
        let index = ExactIndex(items: Self.gaussian(n, 64, seed: UInt64(n)))
        let queries = Self.gaussian(5, 64, seed: 99)
        for k in [1, 10, 100, 150] {
            for q in 0..<queries.rows {
                Self.check(index, Matrix(rows: 1, columns: 64, storage: Self.row(queries, q)), k: k)
            }
        }
    }

    /// Batches of 1, 3, 256 and 257 (one more than a query chunk) on a count that is not a multiple of a block.
    @Test(arguments: [1, 3, 256, 257])
    func batchSizesMatchFullSort(batch: Int) {
        let index = ExactIndex(items: Self.gaussian(5003, 64, seed: 11))
        Self.check(index, Self.gaussian(batch, 64, seed: 12), k: 100, singles: batch <= 3)
    }

    /// Small-integer entries make every product exact, so ties are real ties on every path (and across the
    /// fill / filter boundary of the single-query path: many duplicate rows).
    @Test(arguments: [64, 5, 1])
    func tiesGoToTheLowerIndex(d: Int) {
        var rng = SplitMix64(seed: UInt64(d))
        for n in [9, 200, 1500, 4099] {
            let items = Matrix(rows: n, columns: d, storage: (0..<(n * d)).map { _ in Float(Int(rng.next() % 3) - 1) })
            let index = ExactIndex(items: items)
            for batch in [1, 3, 257] {
                let queries = Matrix(
                    rows: batch, columns: d, storage: (0..<(batch * d)).map { _ in Float(Int(rng.next() % 5) - 2) })
                for k in [1, 7, 100] {
                    Self.check(index, queries, k: k, singles: batch == 3, exactBatchScores: true)
                }
            }
        }
    }

    /// Near-ties far below bfloat16 resolution: every item is the query plus a perturbation of a few ulps, so the
    /// first pass cannot order them and the exact re-scoring must.
    @Test func nearTiesBelowTheFilterResolution() {
        let d = 64, n = 3000
        let base = Self.row(Self.gaussian(1, d, seed: 5), 0)
        var rng = SplitMix64(seed: 6)
        var storage = [Float]()
        for _ in 0..<n {
            for c in 0..<d {
                let steps = Int(rng.next() % 9) - 4
                var value = base[c]
                for _ in 0..<abs(steps) { value = steps > 0 ? value.nextUp : value.nextDown }
                storage.append(value)
            }
        }
        let index = ExactIndex(items: Matrix(rows: n, columns: d, storage: storage))
        Self.check(index, Matrix(rows: 1, columns: d, storage: base), k: 100)
        Self.check(index, Matrix(rows: 1, columns: d, storage: base.map { -$0 }), k: 100)
    }

    /// Rows of very different norms and magnitudes (the error bound scales with them), odd dimensions, a zero query.
    @Test func unnormalisedItemsOddDimensionsAndAZeroQuery() {
        for (d, scale) in [(64, Float(1000)), (63, Float(1e-3)), (9, Float(1)), (2, Float(3e30))] {
            var items = Self.gaussian(4001, d, seed: UInt64(d), scale: scale, unit: false)
            for r in stride(from: 0, to: items.rows, by: 7) {
                for c in 0..<d { items.storage[r * d + c] *= 50 }
            }
            let index = ExactIndex(items: items)
            let queries = Self.gaussian(4, d, seed: 77, scale: 1, unit: false)
            for q in 0..<4 {
                Self.check(index, Matrix(rows: 1, columns: d, storage: Self.row(queries, q)), k: 100)
            }
            Self.check(index, Matrix(rows: 1, columns: d, storage: [Float](repeating: 0, count: d)), k: 100)
        }
    }

    /// A reused workspace and results give the same answers as fresh ones, across batch sizes and k.
    @Test func reusedWorkspace() {
        let index = ExactIndex(items: Self.gaussian(2500, 64, seed: 21))
        var workspace = ExactIndex.Workspace()
        for (batch, k) in [(1, 100), (257, 100), (1, 5), (3, 200), (1, 300)] {
            let queries = Self.gaussian(batch, 64, seed: UInt64(batch * 1000 + k))
            var results = SearchResults(queryCount: batch, k: k)
            index.search(queries, k: k, workspace: &workspace, into: &results)
            #expect(results == index.search(queries, k: k))
        }
    }
}
