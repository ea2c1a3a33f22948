import FedRecTensor

/// How the floating-point values of model downloads and client updates travel.
///
/// - `float32`: IEEE single precision, exact.
/// - `bfloat16`: the upper 16 bits of each float32, rounded to nearest (ties to even): float32's exponent range
///   with 8 significant bits, so a normal value moves by at most 2^-8 of itself. It halves the bytes every
///   round moves (and the AEAD and transport work on them); clients train from the rounded model and their
///   rounded updates are applied to the coordinator's float32 weights, so rounding errors do not accumulate
///   in the global model.
///
/// Invariant: for finite `x` whose rounding stays finite, `Self.float(bfloat16Bits: Self.bfloat16Bits(x))` is
/// `rounded([x])[0]` bit for bit: the wire codec and the simulation's emulation agree exactly.
public enum WirePrecision: String, Sendable, Hashable, Codable, CaseIterable {
    case float32 = "f32"
    case bfloat16 = "bf16"

    /// Bytes per value on the wire.
    public var bytesPerValue: Int { self == .float32 ? 4 : 2 }

    /// The bfloat16 bit pattern nearest to `x` (ties to even). Finite values beyond bfloat16's largest finite
    /// value (about 3.39e38) round to infinity, which every payload decoder refuses as non-finite.
    @inlinable
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    /// The float32 value of a bfloat16 bit pattern (exact).
    @inlinable
    public static func float(bfloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Rounds `values` in place to what arrives after travelling in this precision.
    public func round(_ values: inout [Float]) {
        guard self == .bfloat16 else { return }
        values.withUnsafeMutableBufferPointer { round($0) }
    }

    /// Rounds the values in `buffer` in place (the one rounding loop of both array forms).
    public func round(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard self == .bfloat16 else { return }
        for i in buffer.indices { buffer[i] = Self.float(bfloat16Bits: Self.bfloat16Bits(buffer[i])) }
    }

    /// `values` as they arrive after travelling in this precision.
    public func rounded(_ values: [Float]) -> [Float] {
        var copy = values
        round(&copy)
        return copy
    }
}

extension ClientUpdate {
    /// This update as the coordinator decodes it after it travelled in `precision` (delta and item-embedding
    /// gradient rounded; counts and loss, which travel as they are, unchanged).
    public func rounded(to precision: WirePrecision) -> ClientUpdate {
        guard precision != .float32 else { return self }
        var copy = self
        precision.round(&copy.userTowerDelta)
        switch itemEmbeddingGradient {
        case .dense(var m):
            precision.round(&m.storage)
            copy.itemEmbeddingGradient = .dense(m)
        case .rowSparse(var g):
            g.withUnsafeMutableValues(precision.round)
            copy.itemEmbeddingGradient = .rowSparse(g)
        }
        return copy
    }
}
