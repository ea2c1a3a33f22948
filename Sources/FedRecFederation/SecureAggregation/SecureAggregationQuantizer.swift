public import FedRecSecurity

/// Fixed-point encoding of a weighted update into `UInt32` words whose wrapping sum over the cohort decodes to
/// the weighted sum and the total weight.
///
/// A client with values x (length L) and weight w (its example count) sends L + 1 words:
/// - w' = min(w, W) / W in (0, 1] (W = `maximumWeight`), and for each element v = w' * clamp(x, -c, c) in [-c, c];
/// - word i = Q(v_i / c) and word L = Q(w'), where Q(u) = floor(u * M + r) clamped to [-M, M], as an `Int32` bit
///   pattern, with r uniform in [0, 1) (stochastic rounding, unbiased: E[Q(u)] = u * M) and
///   M = 2^(b-1) - 1 the largest level.
///
/// Range (no overflow): b = 32 - ceil(log2 n) bits per element for a cohort of n = `participantCount`, so any
/// m <= n survivors sum to at most m * M < 2^ceil(log2 n) * 2^(31 - ceil(log2 n)) = 2^31 in magnitude: the
/// wrapping `UInt32` sum, read as `Int32`, is the exact integer sum. (n = 8: b = 29; 32: 27; 128: 25; 1000: 22.)
///
/// Error bound: each client's level differs from u * M by less than 1, so over m summed clients
/// |decoded weighted sum_i - sum_j w_j' * clamp(x_ji) * W| < m * c * W / M per element, and
/// |decoded total weight - sum_j min(w_j, W)| < m * W / M (plus `Float` rounding of the output, relative 2^-24).
/// Clipping is the only other difference from the exact weighted sum. The randomness r is a ChaCha20 stream
/// from a fresh libsodium seed per call (`MaskGenerator`), never a seeded test generator.
public struct SecureAggregationQuantizer: Sendable, Hashable {
    public let participantCount: Int
    public let clipRange: Float
    public let maximumWeight: Float

    public init(participantCount: Int, clipRange: Float, maximumWeight: Float) {
        precondition(participantCount >= 1 && participantCount <= 1 << 24, "participant count out of range")
        precondition(clipRange.isFinite && clipRange > 0 && maximumWeight.isFinite && maximumWeight > 0, "ranges")
        self.participantCount = participantCount
        self.clipRange = clipRange
        self.maximumWeight = maximumWeight
    }

    /// b = 32 - ceil(log2 n).
    public var bitsPerElement: Int { 32 - ceilLog2(participantCount) }
    /// M = 2^(b-1) - 1.
    public var maximumLevel: Int64 { (Int64(1) << (bitsPerElement - 1)) - 1 }
    /// c * W / M: the per-client, per-element bound on the decoded weighted sum's error.
    public var weightedSumResolution: Double { Double(clipRange) * Double(maximumWeight) / Double(maximumLevel) }
    /// W / M: the per-client bound on the decoded total weight's error.
    public var weightResolution: Double { Double(maximumWeight) / Double(maximumLevel) }

    /// Encodes `values` (clipped to [-c, c]) weighted by `weight` (capped at W), plus the weight, as L + 1 words.
    /// Throws `invalidInput` for a non-finite value or a weight that is not finite and positive.
    ///
    /// `roundingSeed`: the 32-byte seed of the rounding stream; nil (normal use) draws a fresh one.
    public func encode(_ values: [Float], weight: Float, roundingSeed: SecureBytes? = nil) throws -> [UInt32] {
        guard weight.isFinite, weight > 0 else {
            throw SecureAggregationError(
                code: .invalidInput, message: "weight \(weight) must be finite and positive", stage: .maskedInput)
        }
        var words = [UInt32](repeating: 0, count: values.count + 1)
        do {
            let seed = try roundingSeed ?? SecureBytes(randomCount: MaskGenerator.seedByteCount)
            try words.withUnsafeMutableBufferPointer { try MaskGenerator.expand(seed: seed, into: $0) }
        } catch let error as SecurityError {
            throw SecureAggregationError(code: .cryptographicFailure, message: "rounding stream: \(error)")
        }
        let levels = Double(maximumLevel)
        let maximum = maximumLevel
        let shrink = Double(min(weight, maximumWeight)) / Double(maximumWeight)
        let scale = shrink * levels / Double(clipRange)
        let limit = clipRange
        let unit = 1.0 / 4_294_967_296.0
        var nonFinite: Int? = nil
        words.withUnsafeMutableBufferPointer { out in
            values.withUnsafeBufferPointer { input in
                for index in 0..<input.count {
                    let x = input[index]
                    if !x.isFinite {
                        nonFinite = nonFinite ?? index
                        continue
                    }
                    let clipped = Double(min(max(x, -limit), limit))
                    out[index] = Self.word(floorOf: clipped * scale + Double(out[index]) * unit, limit: maximum)
                }
                out[input.count] = Self.word(floorOf: shrink * levels + Double(out[input.count]) * unit, limit: maximum)
            }
        }
        if let nonFinite {
            throw SecureAggregationError(
                code: .invalidInput, message: "value at index \(nonFinite) is not finite", stage: .maskedInput)
        }
        return words
    }

    /// ⌊t⌋ clamped to ±`limit`, as a two's-complement word. For |t| < 2^62: truncation then a step down for a
    /// negative non-integer is exactly `t.rounded(.down)`, without the libm `floor` call the baseline x86-64
    /// target makes of it, in the hottest loop of a masked input.
    @inline(__always)
    static func word(floorOf t: Double, limit: Int64) -> UInt32 {
        let truncated = Int64(t)
        // A select, not a branch: under stochastic rounding the step is taken at random.
        let level = truncated &- (Double(truncated) > t ? 1 : 0)
        return UInt32(truncatingIfNeeded: min(max(level, -limit), limit))
    }

    /// Decodes the wrapping sum of encoded vectors (L + 1 words) into the weighted sum (L elements, Σ w_j x_j)
    /// and the total weight (Σ w_j), each within the bounds in the type's documentation.
    public func decode(_ sum: [UInt32]) -> (weightedSum: [Float], totalWeight: Double) {
        precondition(!sum.isEmpty, "an encoded sum holds at least the weight word")
        let valueStep = weightedSumResolution
        let length = sum.count - 1
        var weightedSum = [Float](repeating: 0, count: length)
        weightedSum.withUnsafeMutableBufferPointer { out in
            sum.withUnsafeBufferPointer { words in
                for index in 0..<length {
                    out[index] = Float(Double(Int32(bitPattern: words[index])) * valueStep)
                }
            }
        }
        let totalWeight = Double(Int32(bitPattern: sum[length])) * weightResolution
        return (weightedSum, totalWeight)
    }
}
