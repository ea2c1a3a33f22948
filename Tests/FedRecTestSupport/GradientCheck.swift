// Shared by the test targets of FedRecTensor and FedRecModel (a test-only library, never linked into fedrec).
public import FedRecTensor

/// Central-difference check (Richardson-extrapolated) of an analytic gradient along a few unit directions: along the analytic gradient
/// itself (catches any error that is not tiny), and along random-signed combinations of the largest and of
/// random coordinates. Returns the largest relative error beyond Float round-off,
/// `max(0, |fd - g.v| - r) / max(|fd|, |g.v|, floor, 1e-2 |g|)`, where `r = 3 δ / h` bounds what the
/// extrapolated difference inherits from losses each within `δ` of exact; `δ` is taken as
/// `lossUlps` units in the last place of the largest Float loss seen (a Float loss carries a few ulps of
/// summation error, which a difference over a step `h` magnifies by `1/h`, and which differs between BLAS
/// kernels, so without `r` a tight check passes on one CPU and fails on another).
/// (`floor` keeps an all-but-zero directional derivative from dividing noise by noise.)
public func maxGradientError(
    at x: [Float], analytic: [Float], step h: Double = 1e-2, seed: UInt64 = 1, floor: Double = 1e-4,
    lossUlps: Double = 4, loss: ([Float]) -> Double
) -> Double {
    precondition(x.count == analytic.count)
    guard !x.isEmpty else { return 0 }
    var rng = SplitMix64(seed: seed)
    var directions: [[Double]] = []
    let norm = analytic.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    if norm > 0 { directions.append(analytic.map { Double($0) / norm }) }
    let byMagnitude = analytic.indices.sorted { abs(analytic[$0]) > abs(analytic[$1]) }
    for trial in 0..<3 {
        var v = [Double](repeating: 0, count: x.count)
        let top = byMagnitude.prefix(4)
        for i in top { v[i] = rng.next() & 1 == 0 ? 1 : -1 }
        for _ in 0..<(trial + 2) { v[Int(rng.next() % UInt64(x.count))] += Double(rng.nextGaussian()) }
        let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if n > 0 { directions.append(v.map { $0 / n }) }
    }
    var worst = 0.0
    for v in directions {
        var largestLoss = 0.0
        // Central difference at steps h and h/2, combined by Richardson extrapolation (cancels the h^2 term,
        // so a step large enough to keep Float round-off small stays accurate).
        func derivative(_ s: Double) -> Double {
            let plus = zip(x, v).map { Float(Double($0) + s * $1) }
            let minus = zip(x, v).map { Float(Double($0) - s * $1) }
            // The step actually representable in Float, projected on v.
            var realised = 0.0
            for i in x.indices where v[i] != 0 { realised += (Double(plus[i]) - Double(minus[i])) / 2 * v[i] }
            let (up, down) = (loss(plus), loss(minus))
            largestLoss = max(largestLoss, abs(up), abs(down))
            return (up - down) / (2 * realised)
        }
        let numeric = (4 * derivative(h / 2) - derivative(h)) / 3
        // Each difference is off by at most δ / s; (4 d(h/2) - d(h)) / 3 by at most (8 δ / h + δ / h) / 3.
        let roundOff = 3 * lossUlps * Double(Float(largestLoss).ulp) / h
        var analyticDerivative = 0.0
        for i in x.indices { analyticDerivative += Double(analytic[i]) * v[i] }
        // Floor: a fraction of the gradient norm, so a direction nearly orthogonal to the gradient (whose
        // derivative is all Float round-off) is judged against the gradient's size.
        let scale = max(abs(numeric), abs(analyticDerivative), floor, 1e-2 * norm)
        worst = max(worst, max(0, abs(numeric - analyticDerivative) - roundOff) / scale)
    }
    return worst
}

/// `sum_i w_i y_i` in Double.
public func weightedSum(_ y: [Float], _ w: [Float]) -> Double {
    zip(y, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

public func randomMatrix(_ rows: Int, _ columns: Int, _ rng: inout SplitMix64, scale: Float = 1) -> Matrix {
    Matrix(rows: rows, columns: columns, storage: (0..<(rows * columns)).map { _ in scale * rng.nextGaussian() })
}

public func randomSparse(rows: Int, columns: Int, perRow: Int, _ rng: inout SplitMix64) -> SparseMatrix {
    SparseMatrix(
        columns: columns,
        rows: (0..<rows).map { _ in
            columns == 0 ? [] : (0..<perRow).map { _ in (Int(rng.next() % UInt64(columns)), 0.5 + rng.nextUnitFloat()) }
        })
}
