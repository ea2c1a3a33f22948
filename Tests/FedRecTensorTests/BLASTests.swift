import FedRecTensor
import Testing

@Suite struct BLASTests {
    @Test(arguments: [(Transpose.none, Transpose.none), (.transpose, .none), (.none, .transpose), (.transpose, .transpose)])
    func gemmMatchesNaiveProduct(transA: Transpose, transB: Transpose) {
        var rng = SplitMix64(seed: 7)
        let (m, n, k) = (5, 4, 3)
        let a = transA == .none ? Matrix(rows: m, columns: k, storage: (0..<(m * k)).map { _ in rng.nextGaussian() })
            : Matrix(rows: k, columns: m, storage: (0..<(m * k)).map { _ in rng.nextGaussian() })
        let b = transB == .none ? Matrix(rows: k, columns: n, storage: (0..<(k * n)).map { _ in rng.nextGaussian() })
            : Matrix(rows: n, columns: k, storage: (0..<(k * n)).map { _ in rng.nextGaussian() })
        let c = BLAS.matmul(a, transA, b, transB)
        for i in 0..<m {
            for j in 0..<n {
                var expected: Float = 0
                for p in 0..<k {
                    expected += (transA == .none ? a[i, p] : a[p, i]) * (transB == .none ? b[p, j] : b[j, p])
                }
                #expect(abs(c[i, j] - expected) <= 1e-5 * max(1, abs(expected)))
            }
        }
    }

    @Test func threadCountIsSettable() {
        BLAS.setThreadCount(1)
        #expect(BLAS.threadCount == 1)
    }
}
