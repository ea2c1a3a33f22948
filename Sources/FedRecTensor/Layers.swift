// Hand-written forward and backward passes of the two-tower layers.
//
// Conventions: matrices are row-major with one example per row. Linear weights are stored
// `in x out` (`y = x W + b`, the transpose of PyTorch's `nn.Linear.weight`), so every product is one
// `sgemm` and CSR rows meet contiguous weight rows. Backward functions *accumulate* (`+=`) into
// parameter gradients (the caller zeroes them once per step) and *overwrite* input gradients.
// Outputs are passed `inout` and reallocated only when their shape differs, so a reused workspace
// allocates nothing in steady state.

extension Matrix {
    /// Makes `self` a `rows x columns` matrix, reallocating only when the shape differs
    /// (contents are unspecified afterwards unless `zeroed`).
    @inlinable
    public mutating func reshape(rows: Int, columns: Int, zeroed: Bool = false) {
        if self.rows != rows || self.columns != columns {
            self = Matrix(rows: rows, columns: columns)
        } else if zeroed {
            zero()
        }
    }
}

// MARK: - Embedding bag (mean)

/// `output[b] = mean(table[i] for i in bag b)`; an empty bag gives the zero vector.
public enum EmbeddingBagMean {
    public static func forward(table: Matrix, bags: IndexBags, into output: inout Matrix) {
        let d = table.columns
        output.reshape(rows: bags.count, columns: d)
        table.storage.withUnsafeBufferPointer { t in
            bags.offsets.withUnsafeBufferPointer { offsets in
                bags.indices.withUnsafeBufferPointer { indices in
                    output.storage.withUnsafeMutableBufferPointer { out in
                        for b in 0..<(offsets.count - 1) {
                            let o = out.baseAddress! + b * d
                            for j in 0..<d { o[j] = 0 }
                            let start = Int(offsets[b]), end = Int(offsets[b + 1])
                            guard end > start else { continue }
                            for k in start..<end {
                                let row = Int(indices[k])
                                precondition(row >= 0 && row < table.rows, "bag index \(row) out of range")
                                let src = t.baseAddress! + row * d
                                for j in 0..<d { o[j] += src[j] }
                            }
                            let scale = 1 / Float(end - start)
                            for j in 0..<d { o[j] *= scale }
                        }
                    }
                }
            }
        }
    }

    /// Scatter-adds `outputGradient[b] / |bag b|` into every row of bag `b` (row-sparse, accumulating).
    public static func backward(outputGradient: Matrix, bags: IndexBags, into gradient: inout RowSparseGradient) {
        let d = gradient.columns
        precondition(outputGradient.rows == bags.count && outputGradient.columns == d, "embedding-bag gradient shape")
        // Assign slots first so the value buffer no longer moves while we accumulate.
        bags.indices.withUnsafeBufferPointer { indices in
            for k in indices.indices { gradient.slot(for: Int(indices[k])) }
        }
        outputGradient.storage.withUnsafeBufferPointer { g in
            bags.offsets.withUnsafeBufferPointer { offsets in
                bags.indices.withUnsafeBufferPointer { indices in
                    gradient.slotOfRow.withUnsafeBufferPointer { slots in
                        gradient.values.withUnsafeMutableBufferPointer { values in
                            for b in 0..<(offsets.count - 1) {
                                let start = Int(offsets[b]), end = Int(offsets[b + 1])
                                guard end > start else { continue }
                                let scale = 1 / Float(end - start)
                                let src = g.baseAddress! + b * d
                                for k in start..<end {
                                    let dst = values.baseAddress! + Int(slots[Int(indices[k])]) * d
                                    for j in 0..<d { dst[j] += scale * src[j] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Sparse-dense linear

/// `output[i] = X[rows[i]] W + b` for a CSR `X` (`rows` nil: every row of `X`).
public enum SparseLinear {
    public static func forward(
        features: SparseMatrix, rows: [Int32]?, weight: Matrix, bias: Matrix, into output: inout Matrix
    ) {
        precondition(weight.rows == features.columns, "sparse linear: weight has \(weight.rows) rows, X has \(features.columns) columns")
        precondition(bias.count == weight.columns, "sparse linear: bias length")
        let d = weight.columns
        let n = rows?.count ?? features.rows
        output.reshape(rows: n, columns: d)
        features.rowOffsets.withUnsafeBufferPointer { offsets in
            features.indices.withUnsafeBufferPointer { columns in
                features.values.withUnsafeBufferPointer { values in
                    weight.storage.withUnsafeBufferPointer { w in
                        bias.storage.withUnsafeBufferPointer { b in
                            output.storage.withUnsafeMutableBufferPointer { out in
                                for i in 0..<n {
                                    let r = rows.map { Int($0[i]) } ?? i
                                    let o = out.baseAddress! + i * d
                                    for j in 0..<d { o[j] = b[j] }
                                    for k in Int(offsets[r])..<Int(offsets[r + 1]) {
                                        let v = values[k]
                                        let src = w.baseAddress! + Int(columns[k]) * d
                                        for j in 0..<d { o[j] += v * src[j] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `weightGradient += X[rows]^T outputGradient`, `biasGradient += column sums` (accumulating).
    public static func backward(
        features: SparseMatrix, rows: [Int32]?, outputGradient: Matrix,
        weightGradient: inout Matrix, biasGradient: inout Matrix
    ) {
        let d = outputGradient.columns
        let n = rows?.count ?? features.rows
        precondition(outputGradient.rows == n, "sparse linear: gradient rows")
        precondition(weightGradient.rows == features.columns && weightGradient.columns == d, "sparse linear: weight gradient shape")
        precondition(biasGradient.count == d, "sparse linear: bias gradient shape")
        features.rowOffsets.withUnsafeBufferPointer { offsets in
            features.indices.withUnsafeBufferPointer { columns in
                features.values.withUnsafeBufferPointer { values in
                    outputGradient.storage.withUnsafeBufferPointer { g in
                        weightGradient.storage.withUnsafeMutableBufferPointer { dw in
                            biasGradient.storage.withUnsafeMutableBufferPointer { db in
                                for i in 0..<n {
                                    let r = rows.map { Int($0[i]) } ?? i
                                    let src = g.baseAddress! + i * d
                                    for j in 0..<d { db[j] += src[j] }
                                    for k in Int(offsets[r])..<Int(offsets[r + 1]) {
                                        let v = values[k]
                                        let dst = dw.baseAddress! + Int(columns[k]) * d
                                        for j in 0..<d { dst[j] += v * src[j] }
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

// MARK: - Dense linear

/// `output = input W + b` with `W` stored `in x out`.
public enum DenseLinear {
    public static func forward(input: Matrix, weight: Matrix, bias: Matrix, into output: inout Matrix) {
        precondition(input.columns == weight.rows, "dense linear: input has \(input.columns) columns, weight \(weight.rows) rows")
        precondition(bias.count == weight.columns, "dense linear: bias length")
        output.reshape(rows: input.rows, columns: weight.columns)
        let (n, out) = (input.rows, weight.columns)
        bias.storage.withUnsafeBufferPointer { b in
            output.storage.withUnsafeMutableBufferPointer { o in
                for i in 0..<n {
                    for j in 0..<out { o[i * out + j] = b[j] }
                }
            }
        }
        BLAS.gemm(input, .none, weight, .none, into: &output, alpha: 1, beta: 1)
    }

    /// `weightGradient += input^T g`, `biasGradient += column sums of g` (accumulating).
    public static func backward(
        input: Matrix, weight: Matrix, outputGradient: Matrix,
        weightGradient: inout Matrix, biasGradient: inout Matrix
    ) {
        precondition(outputGradient.rows == input.rows && outputGradient.columns == weight.columns, "dense linear: gradient shape")
        precondition(weightGradient.rows == weight.rows && weightGradient.columns == weight.columns, "dense linear: weight gradient shape")
        precondition(biasGradient.count == weight.columns, "dense linear: bias gradient shape")
        BLAS.gemm(input, .transpose, outputGradient, .none, into: &weightGradient, alpha: 1, beta: 1)
        let out = weight.columns
        outputGradient.storage.withUnsafeBufferPointer { g in
            biasGradient.storage.withUnsafeMutableBufferPointer { db in
                for i in 0..<outputGradient.rows {
                    for j in 0..<out { db[j] += g[i * out + j] }
                }
            }
        }
    }

    /// `inputGradient = g W^T` (overwritten).
    public static func inputGradient(outputGradient: Matrix, weight: Matrix, into inputGradient: inout Matrix) {
        precondition(outputGradient.columns == weight.columns, "dense linear: gradient shape")
        inputGradient.reshape(rows: outputGradient.rows, columns: weight.rows)
        BLAS.gemm(outputGradient, .none, weight, .transpose, into: &inputGradient)
    }
}

// MARK: - ReLU

public enum ReLU {
    public static func forward(input: Matrix, into output: inout Matrix) {
        output.reshape(rows: input.rows, columns: input.columns)
        input.storage.withUnsafeBufferPointer { x in
            output.storage.withUnsafeMutableBufferPointer { y in
                for i in x.indices { y[i] = max(x[i], 0) }
            }
        }
    }

    /// Zeroes `gradient` where the forward output was not positive (in place: input gradient = masked output gradient).
    public static func backward(output: Matrix, gradient: inout Matrix) {
        precondition(output.rows == gradient.rows && output.columns == gradient.columns, "relu: gradient shape")
        output.storage.withUnsafeBufferPointer { y in
            gradient.storage.withUnsafeMutableBufferPointer { g in
                for i in y.indices where y[i] <= 0 { g[i] = 0 }
            }
        }
    }
}

// MARK: - Concatenation

/// `output = [left | right]` along columns.
public enum Concat {
    public static func forward(_ left: Matrix, _ right: Matrix, into output: inout Matrix) {
        precondition(left.rows == right.rows, "concat: row counts differ")
        let (a, b) = (left.columns, right.columns)
        output.reshape(rows: left.rows, columns: a + b)
        left.storage.withUnsafeBufferPointer { l in
            right.storage.withUnsafeBufferPointer { r in
                output.storage.withUnsafeMutableBufferPointer { o in
                    for i in 0..<left.rows {
                        for j in 0..<a { o[i * (a + b) + j] = l[i * a + j] }
                        for j in 0..<b { o[i * (a + b) + a + j] = r[i * b + j] }
                    }
                }
            }
        }
    }

    /// Splits `outputGradient` into the gradients of the two parts (overwritten).
    public static func backward(outputGradient: Matrix, leftColumns: Int, left: inout Matrix, right: inout Matrix) {
        let total = outputGradient.columns
        let b = total - leftColumns
        precondition(b >= 0, "concat: left part wider than the output")
        left.reshape(rows: outputGradient.rows, columns: leftColumns)
        right.reshape(rows: outputGradient.rows, columns: b)
        outputGradient.storage.withUnsafeBufferPointer { g in
            left.storage.withUnsafeMutableBufferPointer { l in
                right.storage.withUnsafeMutableBufferPointer { r in
                    for i in 0..<outputGradient.rows {
                        for j in 0..<leftColumns { l[i * leftColumns + j] = g[i * total + j] }
                        for j in 0..<b { r[i * b + j] = g[i * total + leftColumns + j] }
                    }
                }
            }
        }
    }
}

// MARK: - Row L2 normalisation

/// `y[i] = x[i] / max(||x[i]||, epsilon)` (PyTorch `F.normalize` semantics).
public enum L2Normalize {
    public static let epsilon: Float = 1e-12

    /// Normalises every row; `norms[i]` receives `max(||x[i]||, epsilon)` for the backward pass.
    public static func forward(input: Matrix, into output: inout Matrix, norms: inout [Float]) {
        output.reshape(rows: input.rows, columns: input.columns)
        if norms.count != input.rows { norms = [Float](repeating: 0, count: input.rows) }
        let d = input.columns
        input.storage.withUnsafeBufferPointer { x in
            output.storage.withUnsafeMutableBufferPointer { y in
                norms.withUnsafeMutableBufferPointer { ns in
                    for i in 0..<input.rows {
                        var sum: Float = 0
                        for j in 0..<d { sum += x[i * d + j] * x[i * d + j] }
                        let norm = max(sum.squareRoot(), epsilon)
                        ns[i] = norm
                        let inv = 1 / norm
                        for j in 0..<d { y[i * d + j] = x[i * d + j] * inv }
                    }
                }
            }
        }
    }

    /// Normalises in place, recording the norms.
    public static func forwardInPlace(_ matrix: inout Matrix, norms: inout [Float]) {
        if norms.count != matrix.rows { norms = [Float](repeating: 0, count: matrix.rows) }
        let d = matrix.columns
        matrix.storage.withUnsafeMutableBufferPointer { y in
            norms.withUnsafeMutableBufferPointer { ns in
                for i in 0..<(d == 0 ? 0 : y.count / d) {
                    var sum: Float = 0
                    for j in 0..<d { sum += y[i * d + j] * y[i * d + j] }
                    let norm = max(sum.squareRoot(), epsilon)
                    ns[i] = norm
                    let inv = 1 / norm
                    for j in 0..<d { y[i * d + j] *= inv }
                }
            }
        }
    }

    /// In place: `gradient[i] = (g[i] - y[i] (y[i] . g[i])) / norm[i]` (rows whose norm hit epsilon: `g / epsilon`).
    public static func backward(output: Matrix, norms: [Float], gradient: inout Matrix) {
        precondition(output.rows == gradient.rows && output.columns == gradient.columns, "normalize: gradient shape")
        precondition(norms.count == output.rows, "normalize: norms length")
        let d = output.columns
        output.storage.withUnsafeBufferPointer { y in
            norms.withUnsafeBufferPointer { ns in
                gradient.storage.withUnsafeMutableBufferPointer { g in
                    for i in 0..<output.rows {
                        let yi = y.baseAddress! + i * d, gi = g.baseAddress! + i * d
                        let inv = 1 / ns[i]
                        var dot: Float = 0
                        if ns[i] > epsilon {
                            for j in 0..<d { dot += yi[j] * gi[j] }
                        }
                        for j in 0..<d { gi[j] = (gi[j] - yi[j] * dot) * inv }
                    }
                }
            }
        }
    }
}

// MARK: - Scaled cosine logits

/// `logits = scale * users items^T` for L2-normalised rows (`scale = 1 / tau`).
public enum ScaledCosineLogits {
    public static func forward(users: Matrix, items: Matrix, scale: Float, into logits: inout Matrix) {
        precondition(users.columns == items.columns, "logits: embedding widths differ")
        logits.reshape(rows: users.rows, columns: items.rows)
        BLAS.gemm(users, .none, items, .transpose, into: &logits, alpha: scale, beta: 0)
    }

    /// `userGradient = scale * g items`, `itemGradient = scale * g^T users` (both overwritten).
    public static func backward(
        logitGradient: Matrix, users: Matrix, items: Matrix, scale: Float,
        userGradient: inout Matrix, itemGradient: inout Matrix
    ) {
        precondition(logitGradient.rows == users.rows && logitGradient.columns == items.rows, "logits: gradient shape")
        userGradient.reshape(rows: users.rows, columns: users.columns)
        itemGradient.reshape(rows: items.rows, columns: items.columns)
        BLAS.gemm(logitGradient, .none, items, .none, into: &userGradient, alpha: scale, beta: 0)
        BLAS.gemm(logitGradient, .transpose, users, .none, into: &itemGradient, alpha: scale, beta: 0)
    }
}
