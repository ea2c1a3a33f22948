import FedRecTensor
import Testing

@Suite struct OptimizerTests {
    /// Minimises `sum (p - target)^2`.
    @Test(arguments: [OptimizerConfiguration.adam(learningRate: 0.05), .sgd(learningRate: 0.1)])
    func convergesOnAQuadratic(configuration: OptimizerConfiguration) {
        let target: [Float] = [1, -2, 3, 0.5, -0.25, 4]
        var p = Matrix(rows: 2, columns: 3)
        var optimizer = Optimizer(configuration: configuration)
        for _ in 0..<1_000 {
            let g = Matrix(rows: 2, columns: 3, storage: zip(p.storage, target).map { 2 * ($0 - $1) })
            optimizer.beginStep()
            optimizer.update("p", parameter: &p, gradient: g)
        }
        for (a, b) in zip(p.storage, target) { #expect(abs(a - b) < 1e-2) }
    }

    @Test func firstAdamStepMovesByTheLearningRate() {
        // With bias correction, step 1 moves every coordinate by lr * sign(g) (up to epsilon).
        var p = Matrix(rows: 1, columns: 3, storage: [0, 0, 0])
        var optimizer = Optimizer(configuration: .adam(learningRate: 0.1))
        optimizer.beginStep()
        optimizer.update("p", parameter: &p, gradient: Matrix(rows: 1, columns: 3, storage: [3, -0.001, 50]))
        #expect(p.storage.map { ($0 * 1e4).rounded() / 1e4 } == [-0.1, 0.1, -0.1])
    }

    @Test(arguments: [OptimizerKind.adam, .sgd]) func learningRateScaleEqualsAScaledConfiguration(kind: OptimizerKind) {
        // A step at scale s moves exactly as a step of an optimizer configured with learning rate s * lr.
        var rng = SplitMix64(seed: 9)
        let start = Matrix(rows: 2, columns: 5, storage: (0..<10).map { _ in rng.nextGaussian() })
        let gradients = (0..<3).map { _ in Matrix(rows: 2, columns: 5, storage: (0..<10).map { _ in rng.nextGaussian() }) }
        var scaled = Optimizer(configuration: OptimizerConfiguration(kind: kind, learningRate: 0.1))
        var reference = Optimizer(configuration: OptimizerConfiguration(kind: kind, learningRate: 0.025))
        var a = start, b = start
        for g in gradients {
            scaled.beginStep(learningRateScale: 0.25)
            scaled.update("p", parameter: &a, gradient: g)
            reference.beginStep()
            reference.update("p", parameter: &b, gradient: g)
        }
        #expect(scaled.learningRateScale == 0.25)
        for (x, y) in zip(a.storage, b.storage) { #expect(abs(x - y) <= 1e-6 * max(1, abs(y))) }
        #expect(a.storage != start.storage)
    }

    @Test(arguments: [OptimizerKind.adam, .sgd]) func lazyUpdateEqualsDenseOnTouchedRows(kind: OptimizerKind) {
        var rng = SplitMix64(seed: 3)
        let start = Matrix(rows: 6, columns: 4, storage: (0..<24).map { _ in rng.nextGaussian() })
        var dense = start, lazy = start
        let configuration = OptimizerConfiguration(kind: kind, learningRate: 0.01, weightDecay: 0.1)
        var denseOptimizer = Optimizer(configuration: configuration), lazyOptimizer = Optimizer(configuration: configuration)
        let touched = [4, 1]  // every step; rows 0, 2, 3, 5 never
        for _ in 0..<5 {
            var sparse = RowSparseGradient(tableRows: 6, columns: 4)
            for row in touched {
                let g = (0..<4).map { _ in rng.nextGaussian() }
                g.withUnsafeBufferPointer { sparse.add(row: row, $0.baseAddress!) }
            }
            denseOptimizer.beginStep()
            lazyOptimizer.beginStep()
            // Dense Adam sees the zero rows too; on the touched rows the two agree exactly.
            var denseGradient = Matrix(rows: 6, columns: 4)
            for row in touched { for j in 0..<4 { denseGradient[row, j] = sparse.row(row)[j] } }
            denseOptimizer.update("t", parameter: &dense, gradient: denseGradient)
            lazyOptimizer.update("t", parameter: &lazy, gradient: sparse)
        }
        for row in touched { #expect(dense.row(row) == lazy.row(row)) }
        for row in [0, 2, 3, 5] { #expect(lazy.row(row) == start.row(row)) }
    }
}

@Suite struct KernelTests {
    @Test func fastExpIsAccurate() {
        var values: [Float] = stride(from: -87.0, through: 88.0, by: 0.37).map { Float($0) }
        values += [0, -0.0, 1e-8, -1e-8, -90, -.infinity]
        var out = values
        out.withUnsafeMutableBufferPointer { FastMath.expInPlace($0.baseAddress!, count: $0.count) }
        for (x, y) in zip(values, out) {
            if x < -87.34 {
                #expect(y == 0)
            } else {
                let reference = _exp(Double(x))
                #expect(abs(Double(y) - reference) <= 3e-7 * reference, "exp(\(x)) = \(y), reference \(reference)")
            }
        }
    }

    @Test func aliasSamplerFollowsItsDistribution() {
        let sampler = AliasSampler(weights: [1, 0, 3, 6])
        var rng = SplitMix64(seed: 1)
        var counts = [0, 0, 0, 0]
        for _ in 0..<100_000 { counts[Int(sampler.draw(using: &rng))] += 1 }
        #expect(counts[1] == 0)
        for (i, p) in [0.1, 0.0, 0.3, 0.6].enumerated() {
            #expect(abs(Double(counts[i]) / 100_000 - p) < 0.01)
        }
    }

    @Test func rowSparseGradientResetKeepsItReusable() {
        var g = RowSparseGradient(tableRows: 5, columns: 2)
        [Float(1), 2].withUnsafeBufferPointer { g.add(row: 3, $0.baseAddress!) }
        [Float(1), 1].withUnsafeBufferPointer { g.add(row: 3, $0.baseAddress!, scale: 2) }
        #expect(g.row(3) == [3, 4])
        #expect(g.dense()[3, 1] == 4)
        g.reset()
        #expect(g.touchedRowCount == 0 && g.row(3) == [0, 0])
    }
}
