internal import CFedRecBLAS

/// Whether a BLAS operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none
    case transpose

    fileprivate var cblas: CBLAS_TRANSPOSE {
        switch self {
        case .none: CblasNoTrans
        case .transpose: CblasTrans
        }
    }
}

/// The only place fedrec calls OpenBLAS. Row-major throughout; shapes are checked with
/// `precondition` (a shape mismatch is a programmer error, never user input).
public enum BLAS {
    /// Sets the OpenBLAS thread count for this process. fedrec defaults to 1, since many client
    /// processes share the cores.
    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "BLAS thread count must be at least 1")
        openblas_set_num_threads(blasInt(count))
    }

    /// The OpenBLAS thread count in force.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// `C = alpha * op(A) * op(B) + beta * C` on raw row-major buffers.
    /// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`.
    public static func sgemm(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // BLAS leaves C untouched only when beta == 1; make k == 0 mean "scale C by beta".
            for row in 0..<m {
                for column in 0..<n { c[row * ldc + column] = beta == 0 ? 0 : beta * c[row * ldc + column] }
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA.cblas, transB.cblas,
            blasInt(m), blasInt(n), blasInt(k),
            alpha, a, blasInt(lda), b, blasInt(ldb),
            beta, c, blasInt(ldc))
    }

    /// `C = alpha * op(A) * op(B) + beta * C` on matrices.
    public static func gemm(
        _ a: Matrix, _ transA: Transpose = .none,
        _ b: Matrix, _ transB: Transpose = .none,
        into c: inout Matrix, alpha: Float = 1, beta: Float = 0
    ) {
        let (m, k) = transA == .none ? (a.rows, a.columns) : (a.columns, a.rows)
        let (kb, n) = transB == .none ? (b.rows, b.columns) : (b.columns, b.rows)
        precondition(k == kb, "gemm inner dimensions differ: \(k) vs \(kb)")
        precondition(c.rows == m && c.columns == n, "gemm output is \(c.rows)x\(c.columns), needs \(m)x\(n)")
        let rowsC = c.rows, columnsC = c.columns
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    sgemm(
                        transA, transB, m: rowsC, n: columnsC, k: k,
                        alpha: alpha, a: pa.baseAddress!, lda: max(a.columns, 1),
                        b: pb.baseAddress!, ldb: max(b.columns, 1),
                        beta: beta, c: pc.baseAddress!, ldc: max(columnsC, 1))
                }
            }
        }
    }

    /// Returns `op(A) * op(B)`.
    public static func matmul(_ a: Matrix, _ transA: Transpose = .none, _ b: Matrix, _ transB: Transpose = .none)
        -> Matrix
    {
        let m = transA == .none ? a.rows : a.columns
        let n = transB == .none ? b.columns : b.rows
        var c = Matrix(rows: m, columns: n)
        gemm(a, transA, b, transB, into: &c)
        return c
    }

    /// `y = alpha * op(A) * x + beta * y` on raw buffers; `A` is `m x n` row-major.
    public static func sgemv(
        _ trans: Transpose, m: Int, n: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>,
        beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        guard m > 0, n > 0 else { return }
        cblas_sgemv(CblasRowMajor, trans.cblas, blasInt(m), blasInt(n), alpha, a, blasInt(lda), x, 1, beta, y, 1)
    }

    /// `y += alpha * x` over `count` elements.
    public static func saxpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        guard count > 0 else { return }
        cblas_saxpy(blasInt(count), alpha, x, 1, y, 1)
    }

    /// `x *= alpha` over `count` elements.
    public static func sscal(count: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
        guard count > 0 else { return }
        cblas_sscal(blasInt(count), alpha, x, 1)
    }

    /// The dot product of two `count`-element vectors.
    public static func sdot(count: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Float {
        guard count > 0 else { return 0 }
        return cblas_sdot(blasInt(count), x, 1, y, 1)
    }

    /// The Euclidean norm of a `count`-element vector.
    public static func snrm2(count: Int, x: UnsafePointer<Float>) -> Float {
        guard count > 0 else { return 0 }
        return cblas_snrm2(blasInt(count), x, 1)
    }

    /// Converts a Swift `Int` to BLAS's integer type, trapping on overflow (the one conversion helper). The trap
    /// is explicit: this target is built -Ounchecked, where `blasint(value)` would wrap silently.
    @inline(__always)
    private static func blasInt(_ value: Int) -> blasint {
        guard let converted = blasint(exactly: value) else {
            fatalError("a BLAS size of \(value) exceeds \(blasint.max)")
        }
        return converted
    }
}
