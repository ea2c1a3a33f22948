/// Vectorisable elementwise kernels for the softmax hot loop.
public enum FastMath {
    /// True when no element is infinite or NaN. Branch-free over the bit patterns so it vectorises: an
    /// exponent field of all ones (0x7f80_0000) is the only one that carries into bit 31 when 0x0080_0000 is added.
    public static func allFinite(_ x: [Float]) -> Bool {
        x.withUnsafeBufferPointer { xs in
            var carry: UInt32 = 0
            for v in xs { carry |= (v.bitPattern & 0x7f80_0000) &+ 0x0080_0000 }
            return carry & 0x8000_0000 == 0
        }
    }

    /// `exp(x)` in place over a buffer (Cephes `expf` polynomial, relative error below 2e-7 on
    /// [-87, 88]); inputs below -87.33 give exactly 0 (so `-infinity` masks an entry), inputs above 88.37 are clamped.
    public static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let magic: Float = 12_582_912  // 1.5 * 2^23: adding it rounds to the nearest integer
        let log2e: Float = 1.442_695_04
        for i in 0..<count {
            let input = x[i]
            let v = min(max(input, -87.336_54), 88.376_26)
            let shifted = v * log2e + magic
            let fx = shifted - magic
            let n = Int32(bitPattern: shifted.bitPattern) &- Int32(bitPattern: magic.bitPattern)
            var r = v - fx * 0.693_359_375
            r = r + fx * 2.121_944_4e-4
            let z = r * r
            var p: Float = 1.987_569_15e-4
            p = p * r + 1.398_199_950_7e-3
            p = p * r + 8.333_451_907_3e-3
            p = p * r + 4.166_579_589_4e-2
            p = p * r + 1.666_666_545_9e-1
            p = p * r + 5.000_000_120_1e-1
            let y = p * z + r + 1
            let scale = Float(bitPattern: UInt32(bitPattern: (n &+ 127) &<< 23))
            x[i] = input < -87.336_54 ? 0 : y * scale
        }
    }

    /// The largest of `count` values (`-infinity` when empty).
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var lanes = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= count {
            lanes = pointwiseMax(lanes, raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            i += 8
        }
        var result = lanes.max()
        while i < count {
            result = max(result, x[i])
            i += 1
        }
        return result
    }

    /// The sum of `count` values (eight-lane accumulation).
    public static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var lanes = SIMD8<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= count {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        var result = lanes.sum()
        while i < count {
            result += x[i]
            i += 1
        }
        return result
    }

    /// Natural logarithm (libm).
    public static func log(_ x: Float) -> Float { Float(_log(Double(x))) }
}

/// Softmax cross-entropy on one row, in place.
///
/// On return `row` holds `softmax(row) * weight` with `weight` subtracted at `target`
/// (`d loss / d logits` for a loss weighted by `weight`); returns `-log softmax(row)[target]`.
func softmaxCrossEntropyRow(_ row: UnsafeMutablePointer<Float>, count: Int, target: Int, weight: Float) -> Float {
    let m = FastMath.maximum(row, count: count)
    for j in 0..<count { row[j] -= m }
    let shiftedTarget = row[target]
    FastMath.expInPlace(row, count: count)
    let s = FastMath.sum(row, count: count)
    let scale = weight / s
    for j in 0..<count { row[j] *= scale }
    row[target] -= weight
    return FastMath.log(s) - shiftedTarget
}

// MARK: - Full softmax

/// Softmax cross-entropy over every column, averaged over rows.
public enum SoftmaxCrossEntropy {
    /// Returns the mean loss of `logits` against `targets` and overwrites `logits` with
    /// `d(mean loss)/d(logits)`. Per-row losses are accumulated in `Double`.
    public static func lossAndGradientInPlace(_ logits: inout Matrix, targets: [Int32]) -> Float {
        precondition(targets.count == logits.rows, "cross-entropy: \(targets.count) targets for \(logits.rows) rows")
        let (b, n) = (logits.rows, logits.columns)
        guard b > 0 else { return 0 }
        let weight = 1 / Float(b)
        var total: Double = 0
        logits.storage.withUnsafeMutableBufferPointer { l in
            for i in 0..<b {
                let t = Int(targets[i])
                precondition(t >= 0 && t < n, "cross-entropy: target \(t) outside \(n) classes")
                total += Double(softmaxCrossEntropyRow(l.baseAddress! + i * n, count: n, target: t, weight: weight))
            }
        }
        return Float(total / Double(b))
    }
}

// MARK: - Sampled softmax with log-Q correction

/// Sampled softmax cross-entropy (Bengio & Senécal 2008; Yi et al. 2019, "Sampling-bias-corrected neural modeling").
///
/// For user row `i` the classes are its positive candidate `positives[i]` and the shared sampled candidates
/// `negatives[0..<K]` (drawn with replacement, duplicates allowed). Logit of candidate `c` is
/// `scale * users[i] . candidates[c] - logCorrection[c]`, where `logCorrection[c]` is the log of the
/// expected number of times `c` appears among the samples (`log(K q_c)`). A sampled negative equal to the
/// row's positive (an "accidental hit") is removed from that row. The loss is the mean over rows.
public enum SampledSoftmaxCrossEntropy {
    /// Reusable buffers.
    public struct Workspace: Sendable {
        var gathered = Matrix(rows: 0, columns: 0)
        var logits = Matrix(rows: 0, columns: 0)
        var gatheredGradient = Matrix(rows: 0, columns: 0)
        public init() {}
    }

    /// Returns the mean loss; overwrites `userGradient` (`B x d`) and `candidateGradient` (`M x d`).
    public static func lossAndGradients(
        users: Matrix, candidates: Matrix, positives: [Int32], negatives: [Int32], logCorrection: [Float],
        scale: Float, userGradient: inout Matrix, candidateGradient: inout Matrix, workspace: inout Workspace
    ) -> Float {
        let loss = forward(
            users: users, candidates: candidates, positives: positives, negatives: negatives,
            logCorrection: logCorrection, scale: scale, workspace: &workspace)
        backward(
            users: users, candidates: candidates, positives: positives, negatives: negatives, scale: scale,
            userGradient: &userGradient, candidateGradient: &candidateGradient, workspace: &workspace)
        return loss
    }

    /// Computes the mean loss, leaving `d loss / d logits` in the workspace for `backward`.
    public static func forward(
        users: Matrix, candidates: Matrix, positives: [Int32], negatives: [Int32], logCorrection: [Float],
        scale: Float, workspace: inout Workspace
    ) -> Float {
        let (b, d, m, k) = (users.rows, users.columns, candidates.rows, negatives.count)
        precondition(candidates.columns == d, "sampled softmax: embedding widths differ")
        precondition(positives.count == b, "sampled softmax: one positive per row")
        precondition(logCorrection.count == m, "sampled softmax: one log correction per candidate")
        guard b > 0 else { return 0 }
        workspace.gathered.reshape(rows: k, columns: d)
        workspace.logits.reshape(rows: b, columns: k + 1)
        workspace.gatheredGradient.reshape(rows: k, columns: d)
        let width = k + 1
        var total: Double = 0
        candidates.storage.withUnsafeBufferPointer { c in
            users.storage.withUnsafeBufferPointer { u in
                positives.withUnsafeBufferPointer { pos in
                    negatives.withUnsafeBufferPointer { neg in
                        logCorrection.withUnsafeBufferPointer { corr in
                            workspace.gathered.storage.withUnsafeMutableBufferPointer { g in
                                workspace.logits.storage.withUnsafeMutableBufferPointer { l in
                                    let cp = c.baseAddress!, up = u.baseAddress!, gp = g.baseAddress!, lp = l.baseAddress!
                                    for s in 0..<k {
                                        let row = Int(neg[s])
                                        precondition(row >= 0 && row < m, "sampled softmax: negative outside candidates")
                                        (gp + s * d).update(from: cp + row * d, count: d)
                                    }
                                    BLAS.sgemm(
                                        .none, .transpose, m: b, n: k, k: d, alpha: scale, a: up, lda: d,
                                        b: gp, ldb: d, beta: 0, c: lp + 1, ldc: width)
                                    let weight = 1 / Float(b)
                                    for i in 0..<b {
                                        let p = Int(pos[i])
                                        precondition(p >= 0 && p < m, "sampled softmax: positive outside candidates")
                                        let row = lp + i * width
                                        var dot: Float = 0
                                        for j in 0..<d { dot += up[i * d + j] * cp[p * d + j] }
                                        row[0] = scale * dot - corr[p]
                                        for s in 0..<k {
                                            let n = Int(neg[s])
                                            row[s + 1] = n == p ? -.infinity : row[s + 1] - corr[n]
                                        }
                                        total += Double(softmaxCrossEntropyRow(row, count: width, target: 0, weight: weight))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Float(total / Double(b))
    }

    /// Overwrites `userGradient` (`B x d`) and `candidateGradient` (`M x d`) from the state `forward` left.
    public static func backward(
        users: Matrix, candidates: Matrix, positives: [Int32], negatives: [Int32], scale: Float,
        userGradient: inout Matrix, candidateGradient: inout Matrix, workspace: inout Workspace
    ) {
        let (b, d, m, k) = (users.rows, users.columns, candidates.rows, negatives.count)
        let width = k + 1
        userGradient.reshape(rows: b, columns: d)
        candidateGradient.reshape(rows: m, columns: d, zeroed: true)
        guard b > 0 else { return }
        precondition(workspace.logits.rows == b && workspace.logits.columns == width, "sampled softmax: backward without forward")
        // dU = scale (dL_neg G + dL_pos c_pos); dG = scale dL_neg^T U; scatter into candidates.
        workspace.logits.storage.withUnsafeBufferPointer { l in
            workspace.gathered.storage.withUnsafeBufferPointer { g in
                users.storage.withUnsafeBufferPointer { u in
                    candidates.storage.withUnsafeBufferPointer { c in
                        userGradient.storage.withUnsafeMutableBufferPointer { du in
                            candidateGradient.storage.withUnsafeMutableBufferPointer { dc in
                                workspace.gatheredGradient.storage.withUnsafeMutableBufferPointer { dg in
                                    let lp = l.baseAddress!
                                    BLAS.sgemm(
                                        .none, .none, m: b, n: d, k: k, alpha: scale, a: lp + 1, lda: width,
                                        b: g.baseAddress!, ldb: d, beta: 0, c: du.baseAddress!, ldc: d)
                                    BLAS.sgemm(
                                        .transpose, .none, m: k, n: d, k: b, alpha: scale, a: lp + 1, lda: width,
                                        b: u.baseAddress!, ldb: d, beta: 0, c: dg.baseAddress!, ldc: d)
                                    for i in 0..<b {
                                        let p = Int(positives[i])
                                        let w = scale * lp[i * width]
                                        for j in 0..<d {
                                            du[i * d + j] += w * c[p * d + j]
                                            dc[p * d + j] += w * u[i * d + j]
                                        }
                                    }
                                    for s in 0..<k {
                                        let n = Int(negatives[s])
                                        for j in 0..<d { dc[n * d + j] += dg[s * d + j] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
