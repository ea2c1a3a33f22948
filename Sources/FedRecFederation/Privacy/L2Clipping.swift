/// What clipping did to one client's flat update vector.
public struct ClipResult: Sendable, Hashable {
    /// True when the vector was scaled (its norm exceeded the bound) or zeroed (its norm was not finite).
    public var wasClipped: Bool
    /// The L2 norm before clipping (`+infinity` or NaN when the vector held non-finite values).
    public var originalNorm: Double

    public init(wasClipped: Bool, originalNorm: Double) {
        self.wasClipped = wasClipped
        self.originalNorm = originalNorm
    }
}

/// Per-client L2 clipping, the sensitivity bound of DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018,
/// "Learning Differentially Private Recurrent Language Models", Algorithm 1 `ClipFn`):
/// `Δ ← Δ · min(1, S / ‖Δ‖₂)`.
///
/// The vector is the concatenation of everything one client sends (user-tower delta and item-embedding
/// gradient), so the bound `S` holds for the client's whole contribution, as client-level DP requires.
public enum L2Clipping {
    /// The L2 norm of `vector`, accumulated in `Double` (four independent partial sums, so the loop
    /// pipelines and the rounding error stays near `1e−16 · √n` relative).
    public static func norm(_ vector: [Float]) -> Double {
        vector.withUnsafeBufferPointer { norm($0) }
    }

    /// The L2 norm of `buffer`, accumulated in `Double`.
    public static func norm(_ buffer: UnsafeBufferPointer<Float>) -> Double {
        var s0 = 0.0
        var s1 = 0.0
        var s2 = 0.0
        var s3 = 0.0
        let count = buffer.count
        var i = 0
        while i + 4 <= count {
            let a = Double(buffer[i])
            let b = Double(buffer[i + 1])
            let c = Double(buffer[i + 2])
            let d = Double(buffer[i + 3])
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
            i += 4
        }
        while i < count {
            let a = Double(buffer[i])
            s0 += a * a
            i += 1
        }
        return ((s0 + s1) + (s2 + s3)).squareRoot()
    }

    /// Scales `vector` in place so that its L2 norm is at most `bound` (one pass for the norm, one to scale).
    ///
    /// - Vectors with norm `≤ bound` are left bit-for-bit untouched.
    /// - Longer vectors are multiplied by `bound / norm` (direction preserved); after Float rounding the norm is
    ///   at most `bound · (1 + 2⁻²²)`.
    /// - A vector holding NaN or infinity (a diverged local step) is zeroed: it then contributes nothing and
    ///   the sensitivity bound still holds. `originalNorm` reports the non-finite norm.
    ///
    /// `bound` must be positive and finite (a programmer error otherwise: validate the configuration first).
    @discardableResult
    public static func clip(_ vector: inout [Float], to bound: Double) -> ClipResult {
        precondition(bound > 0 && bound.isFinite, "clip bound must be positive and finite")
        let original = norm(vector)
        if !original.isFinite {
            vector.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            return ClipResult(wasClipped: true, originalNorm: original)
        }
        guard original > bound else { return ClipResult(wasClipped: false, originalNorm: original) }
        let scale = Float(bound / original)
        vector.withUnsafeMutableBufferPointer { buffer in
            for i in buffer.indices { buffer[i] *= scale }
        }
        return ClipResult(wasClipped: true, originalNorm: original)
    }
}
