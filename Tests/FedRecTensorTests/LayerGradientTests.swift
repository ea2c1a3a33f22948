import FedRecTensor
import FedRecTestSupport
import Testing

/// Every layer's backward pass against central finite differences (relative error < 1e-3).
@Suite struct LayerGradientTests {
    static let tolerance = 1e-3

    @Test func embeddingBagMean() {
        var rng = SplitMix64(seed: 1)
        let table = randomMatrix(7, 5, &rng)
        let bags = IndexBags([[0, 3, 3], [], [6], [1, 2, 4, 5, 0]])  // duplicates and an empty bag
        let w = randomMatrix(4, 5, &rng)
        var out = Matrix(rows: 0, columns: 0)
        EmbeddingBagMean.forward(table: table, bags: bags, into: &out)
        #expect(out.row(1) == [0, 0, 0, 0, 0])
        var g = RowSparseGradient(tableRows: 7, columns: 5)
        EmbeddingBagMean.backward(outputGradient: w, bags: bags, into: &g)
        #expect(Set(g.rowIndices) == [0, 3, 6, 1, 2, 4, 5])
        let error = maxGradientError(at: table.storage, analytic: g.dense().storage) { x in
            var y = Matrix(rows: 0, columns: 0)
            EmbeddingBagMean.forward(table: Matrix(rows: 7, columns: 5, storage: x), bags: bags, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(error < Self.tolerance)
    }

    /// Groups with several examples each, a repeated item (counted per occurrence), a single-item group (empty
    /// bag), a group with one example (its left-out row is in no bag) and a group with nothing left out.
    static func leaveOneOutBags() -> LeaveOneOutBags {
        var bags = LeaveOneOutBags()
        let a = bags.appendGroup([0, 3, 5, 3, 6])
        let b = bags.appendGroup([2])
        let c = bags.appendGroup([1, 4, 6])
        let d = bags.appendGroup([5, 2])
        bags.appendExample(group: a, excluding: 1)
        bags.appendExample(group: b, excluding: 0)
        bags.appendExample(group: a, excluding: 4)
        bags.appendExample(group: c, excluding: 2)
        bags.appendExample(group: a, excluding: 3)
        bags.appendExample(group: d, excluding: nil)
        bags.appendExample(group: a, excluding: 1)
        return bags
    }

    @Test func leaveOneOutBagsMaterialise() {
        let bags = Self.leaveOneOutBags()
        let expected: [[Int32]] = [[0, 5, 3, 6], [], [0, 3, 5, 3], [1, 4], [0, 3, 5, 6], [5, 2], [0, 5, 3, 6]]
        #expect(bags.perExampleBags == IndexBags(expected))
        #expect((0..<bags.count).map { bags.excludedItem($0) } == [3, 2, 6, 6, 3, nil, 3])
    }

    /// The grouped pass equals the per-example pass on the materialised bags (values and touched rows).
    @Test func embeddingBagMeanLeaveOneOutEqualsPerExample() {
        var rng = SplitMix64(seed: 11)
        let table = randomMatrix(7, 5, &rng)
        let bags = Self.leaveOneOutBags()
        let perExample = bags.perExampleBags
        let w = randomMatrix(bags.count, 5, &rng)
        var workspace = EmbeddingBagMean.GroupWorkspace()
        var grouped = Matrix(rows: 0, columns: 0), reference = Matrix(rows: 0, columns: 0)
        EmbeddingBagMean.forward(table: table, bags: bags, workspace: &workspace, into: &grouped)
        EmbeddingBagMean.forward(table: table, bags: perExample, into: &reference)
        #expect(grouped.row(1) == [0, 0, 0, 0, 0])
        #expect(grouped.row(5) == reference.row(5))  // nothing left out: the same operations
        for (x, y) in zip(grouped.storage, reference.storage) { #expect(abs(x - y) <= 1e-5 * max(1, abs(y))) }
        var g = RowSparseGradient(tableRows: 7, columns: 5), h = RowSparseGradient(tableRows: 7, columns: 5)
        EmbeddingBagMean.backward(outputGradient: w, bags: bags, workspace: &workspace, into: &g)
        EmbeddingBagMean.backward(outputGradient: w, bags: perExample, into: &h)
        #expect(Set(g.rowIndices) == Set(h.rowIndices))
        for (x, y) in zip(g.dense().storage, h.dense().storage) { #expect(abs(x - y) <= 1e-5 * max(1, abs(y))) }
        // Group c has one example leaving out item 6, which is in group a's bags: touched. A lone example whose
        // left-out item occurs once and nowhere else leaves that row untouched.
        var lone = LeaveOneOutBags()
        lone.appendExample(group: lone.appendGroup([1, 4, 2]), excluding: 2)
        var l = RowSparseGradient(tableRows: 7, columns: 5)
        EmbeddingBagMean.backward(outputGradient: randomMatrix(1, 5, &rng), bags: lone, workspace: &workspace, into: &l)
        #expect(Set(l.rowIndices) == [1, 4])
    }

    @Test func embeddingBagMeanLeaveOneOut() {
        var rng = SplitMix64(seed: 12)
        let table = randomMatrix(7, 5, &rng)
        let bags = Self.leaveOneOutBags()
        let w = randomMatrix(bags.count, 5, &rng)
        var workspace = EmbeddingBagMean.GroupWorkspace()
        var g = RowSparseGradient(tableRows: 7, columns: 5)
        EmbeddingBagMean.backward(outputGradient: w, bags: bags, workspace: &workspace, into: &g)
        let error = maxGradientError(at: table.storage, analytic: g.dense().storage) { x in
            var y = Matrix(rows: 0, columns: 0)
            var scratch = EmbeddingBagMean.GroupWorkspace()
            EmbeddingBagMean.forward(
                table: Matrix(rows: 7, columns: 5, storage: x), bags: bags, workspace: &scratch, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(error < Self.tolerance)
    }

    @Test(arguments: [false, true]) func sparseLinear(selectRows: Bool) {
        var rng = SplitMix64(seed: 2)
        let x = randomSparse(rows: 6, columns: 9, perRow: 3, &rng)
        let rows: [Int32]? = selectRows ? [4, 0, 4, 2] : nil
        let n = rows?.count ?? 6
        let weight = randomMatrix(9, 4, &rng), bias = randomMatrix(1, 4, &rng)
        let w = randomMatrix(n, 4, &rng)
        var y = Matrix(rows: 0, columns: 0)
        SparseLinear.forward(features: x, rows: rows, weight: weight, bias: bias, into: &y)
        // Against the dense product.
        let dense = x.dense()
        for i in 0..<n {
            for j in 0..<4 {
                var expected = bias[0, j]
                for k in 0..<9 { expected += dense[Int(rows?[i] ?? Int32(i)), k] * weight[k, j] }
                #expect(abs(y[i, j] - expected) < 1e-5)
            }
        }
        var dw = Matrix(rows: 9, columns: 4), db = Matrix(rows: 1, columns: 4)
        SparseLinear.backward(features: x, rows: rows, outputGradient: w, weightGradient: &dw, biasGradient: &db)
        let errorW = maxGradientError(at: weight.storage, analytic: dw.storage) { p in
            var y = Matrix(rows: 0, columns: 0)
            SparseLinear.forward(features: x, rows: rows, weight: Matrix(rows: 9, columns: 4, storage: p), bias: bias, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        let errorB = maxGradientError(at: bias.storage, analytic: db.storage) { p in
            var y = Matrix(rows: 0, columns: 0)
            SparseLinear.forward(features: x, rows: rows, weight: weight, bias: Matrix(rows: 1, columns: 4, storage: p), into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(errorW < Self.tolerance)
        #expect(errorB < Self.tolerance)
    }

    @Test func sparseLinearWithoutFeatures() {
        let x = SparseMatrix.empty(rows: 3)
        var y = Matrix(rows: 0, columns: 0)
        SparseLinear.forward(features: x, rows: nil, weight: Matrix(rows: 0, columns: 2), bias: Matrix(rows: 1, columns: 2, storage: [1, 2]), into: &y)
        #expect(y.storage == [1, 2, 1, 2, 1, 2])
    }

    @Test func denseLinear() {
        var rng = SplitMix64(seed: 3)
        let input = randomMatrix(5, 6, &rng), weight = randomMatrix(6, 3, &rng), bias = randomMatrix(1, 3, &rng)
        let w = randomMatrix(5, 3, &rng)
        var dw = Matrix(rows: 6, columns: 3), db = Matrix(rows: 1, columns: 3), dx = Matrix(rows: 0, columns: 0)
        DenseLinear.backward(input: input, weight: weight, outputGradient: w, weightGradient: &dw, biasGradient: &db)
        DenseLinear.inputGradient(outputGradient: w, weight: weight, into: &dx)
        func objective(_ x: Matrix, _ wt: Matrix, _ b: Matrix) -> Double {
            var y = Matrix(rows: 0, columns: 0)
            DenseLinear.forward(input: x, weight: wt, bias: b, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(maxGradientError(at: weight.storage, analytic: dw.storage) { objective(input, Matrix(rows: 6, columns: 3, storage: $0), bias) } < Self.tolerance)
        #expect(maxGradientError(at: bias.storage, analytic: db.storage) { objective(input, weight, Matrix(rows: 1, columns: 3, storage: $0)) } < Self.tolerance)
        #expect(maxGradientError(at: input.storage, analytic: dx.storage) { objective(Matrix(rows: 5, columns: 6, storage: $0), weight, bias) } < Self.tolerance)
    }

    @Test func relu() {
        var rng = SplitMix64(seed: 4)
        // Keep inputs away from the kink so the finite difference never crosses it.
        let input = Matrix(rows: 4, columns: 6, storage: (0..<24).map { _ in
            let v = rng.nextGaussian()
            return v + (v >= 0 ? 0.1 : -0.1)
        })
        let w = randomMatrix(4, 6, &rng)
        var y = Matrix(rows: 0, columns: 0)
        ReLU.forward(input: input, into: &y)
        var g = w
        ReLU.backward(output: y, gradient: &g)
        let error = maxGradientError(at: input.storage, analytic: g.storage, step: 1e-3) { x in
            var y = Matrix(rows: 0, columns: 0)
            ReLU.forward(input: Matrix(rows: 4, columns: 6, storage: x), into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(error < Self.tolerance)
    }

    @Test func concat() {
        var rng = SplitMix64(seed: 5)
        let a = randomMatrix(3, 2, &rng), b = randomMatrix(3, 4, &rng), w = randomMatrix(3, 6, &rng)
        var left = Matrix(rows: 0, columns: 0), right = Matrix(rows: 0, columns: 0)
        Concat.backward(outputGradient: w, leftColumns: 2, left: &left, right: &right)
        func objective(_ a: Matrix, _ b: Matrix) -> Double {
            var y = Matrix(rows: 0, columns: 0)
            Concat.forward(a, b, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(maxGradientError(at: a.storage, analytic: left.storage) { objective(Matrix(rows: 3, columns: 2, storage: $0), b) } < Self.tolerance)
        #expect(maxGradientError(at: b.storage, analytic: right.storage) { objective(a, Matrix(rows: 3, columns: 4, storage: $0)) } < Self.tolerance)
    }

    @Test func l2Normalize() {
        var rng = SplitMix64(seed: 6)
        let input = randomMatrix(5, 8, &rng), w = randomMatrix(5, 8, &rng)
        var y = Matrix(rows: 0, columns: 0), norms: [Float] = []
        L2Normalize.forward(input: input, into: &y, norms: &norms)
        for i in 0..<5 {
            let n = y.row(i).reduce(0) { $0 + $1 * $1 }
            #expect(abs(n - 1) < 1e-5)
        }
        var g = w
        L2Normalize.backward(output: y, norms: norms, gradient: &g)
        let error = maxGradientError(at: input.storage, analytic: g.storage, step: 1e-3) { x in
            var y = Matrix(rows: 0, columns: 0), n: [Float] = []
            L2Normalize.forward(input: Matrix(rows: 5, columns: 8, storage: x), into: &y, norms: &n)
            return weightedSum(y.storage, w.storage)
        }
        #expect(error < Self.tolerance)
    }

    @Test func scaledCosineLogits() {
        var rng = SplitMix64(seed: 7)
        let u = randomMatrix(4, 6, &rng), items = randomMatrix(9, 6, &rng), w = randomMatrix(4, 9, &rng)
        var du = Matrix(rows: 0, columns: 0), di = Matrix(rows: 0, columns: 0)
        ScaledCosineLogits.backward(logitGradient: w, users: u, items: items, scale: 10, userGradient: &du, itemGradient: &di)
        func objective(_ u: Matrix, _ i: Matrix) -> Double {
            var l = Matrix(rows: 0, columns: 0)
            ScaledCosineLogits.forward(users: u, items: i, scale: 10, into: &l)
            return weightedSum(l.storage, w.storage)
        }
        #expect(maxGradientError(at: u.storage, analytic: du.storage) { objective(Matrix(rows: 4, columns: 6, storage: $0), items) } < Self.tolerance)
        #expect(maxGradientError(at: items.storage, analytic: di.storage) { objective(u, Matrix(rows: 9, columns: 6, storage: $0)) } < Self.tolerance)
    }

    @Test func softmaxCrossEntropy() {
        var rng = SplitMix64(seed: 8)
        let logits = randomMatrix(5, 11, &rng, scale: 2)
        let targets: [Int32] = [0, 10, 3, 3, 7]
        var g = logits
        let loss = SoftmaxCrossEntropy.lossAndGradientInPlace(&g, targets: targets)
        // Against a Double reference.
        var expected = 0.0
        for i in 0..<5 {
            let row = logits.row(i).map(Double.init)
            let m = row.max()!
            let lse = m + _log(row.reduce(0) { $0 + _exp($1 - m) })
            expected += lse - row[Int(targets[i])]
        }
        #expect(abs(Double(loss) - expected / 5) < 1e-5 * max(1, expected / 5))
        let error = maxGradientError(at: logits.storage, analytic: g.storage, step: 5e-2) { x in
            var l = Matrix(rows: 5, columns: 11, storage: x)
            return Double(SoftmaxCrossEntropy.lossAndGradientInPlace(&l, targets: targets))
        }
        #expect(error < Self.tolerance)
    }

    @Test func sampledSoftmaxWithLogQ() {
        var rng = SplitMix64(seed: 9)
        let (b, m, d) = (5, 8, 6)
        var users = randomMatrix(b, d, &rng), candidates = randomMatrix(m, d, &rng)
        var norms: [Float] = []
        L2Normalize.forwardInPlace(&users, norms: &norms)
        L2Normalize.forwardInPlace(&candidates, norms: &norms)
        let positives: [Int32] = [0, 1, 2, 1, 7]
        let negatives: [Int32] = [3, 4, 4, 1, 5, 6, 7]  // duplicates and accidental hits (1, 7)
        let correction = (0..<m).map { _ in -1 + rng.nextUnitFloat() }
        var workspace = SampledSoftmaxCrossEntropy.Workspace()
        var du = Matrix(rows: 0, columns: 0), dc = Matrix(rows: 0, columns: 0)
        let scale: Float = 2
        let loss = SampledSoftmaxCrossEntropy.lossAndGradients(
            users: users, candidates: candidates, positives: positives, negatives: negatives, logCorrection: correction,
            scale: scale, userGradient: &du, candidateGradient: &dc, workspace: &workspace)
        // Reference loss in Double.
        var expected = 0.0
        for i in 0..<b {
            func logit(_ c: Int) -> Double {
                var dot = 0.0
                for j in 0..<d { dot += Double(users[i, j]) * Double(candidates[c, j]) }
                return Double(scale) * dot - Double(correction[c])
            }
            let p = Int(positives[i])
            var terms = [logit(p)]
            for n in negatives where Int(n) != p { terms.append(logit(Int(n))) }
            let mx = terms.max()!
            expected += mx + _log(terms.reduce(0) { $0 + _exp($1 - mx) }) - terms[0]
        }
        #expect(abs(Double(loss) - expected / Double(b)) < 1e-5)
        func objective(_ u: Matrix, _ c: Matrix) -> Double {
            var ws = SampledSoftmaxCrossEntropy.Workspace()
            return Double(SampledSoftmaxCrossEntropy.forward(
                users: u, candidates: c, positives: positives, negatives: negatives, logCorrection: correction,
                scale: scale, workspace: &ws))
        }
        #expect(maxGradientError(at: users.storage, analytic: du.storage) { objective(Matrix(rows: b, columns: d, storage: $0), candidates) } < Self.tolerance)
        #expect(maxGradientError(at: candidates.storage, analytic: dc.storage) { objective(users, Matrix(rows: m, columns: d, storage: $0)) } < Self.tolerance)
    }

    @Test func gradientCheckCanFail() {
        // A deliberately wrong gradient (one weight-gradient entry 5% off) must be caught.
        var rng = SplitMix64(seed: 10)
        let input = randomMatrix(5, 6, &rng), weight = randomMatrix(6, 3, &rng), bias = randomMatrix(1, 3, &rng)
        let w = randomMatrix(5, 3, &rng)
        var dw = Matrix(rows: 6, columns: 3), db = Matrix(rows: 1, columns: 3)
        DenseLinear.backward(input: input, weight: weight, outputGradient: w, weightGradient: &dw, biasGradient: &db)
        dw.storage[4] *= 1.05
        let error = maxGradientError(at: weight.storage, analytic: dw.storage) { p in
            var y = Matrix(rows: 0, columns: 0)
            DenseLinear.forward(input: input, weight: Matrix(rows: 6, columns: 3, storage: p), bias: bias, into: &y)
            return weightedSum(y.storage, w.storage)
        }
        #expect(error > Self.tolerance)
    }
}

#if canImport(Glibc)
import Glibc
func _log(_ x: Double) -> Double { Glibc.log(x) }
func _exp(_ x: Double) -> Double { Glibc.exp(x) }
#endif
