/// Draws indices from a fixed discrete distribution in O(1) per draw (Walker's alias method, Vose 1991).
///
/// Invariant: `probabilities` sums to 1 (the normalised weights); `draw` returns `i` with probability `probabilities[i]`.
public struct AliasSampler: Sendable {
    public let probabilities: [Float]
    private let threshold: [Float]
    private let alias: [Int32]

    /// Builds the table from non-negative weights with a positive sum.
    public init(weights: [Double]) {
        precondition(!weights.isEmpty, "alias sampler needs at least one weight")
        precondition(weights.allSatisfy { $0 >= 0 && $0.isFinite }, "alias sampler weights must be finite and non-negative")
        let total = weights.reduce(0, +)
        precondition(total > 0, "alias sampler weights must not all be zero")
        let n = weights.count
        var scaled = weights.map { $0 * Double(n) / total }
        var threshold = [Float](repeating: 1, count: n)
        var alias = [Int32](repeating: 0, count: n)
        var small: [Int] = [], large: [Int] = []
        for (i, p) in scaled.enumerated() {
            if p < 1 { small.append(i) } else { large.append(i) }
        }
        while let s = small.popLast(), let l = large.last {
            threshold[s] = Float(scaled[s])
            alias[s] = Int32(l)
            scaled[l] -= 1 - scaled[s]
            if scaled[l] < 1 {
                large.removeLast()
                small.append(l)
            }
        }
        for i in small + large {
            threshold[i] = 1
            alias[i] = Int32(i)
        }
        self.probabilities = weights.map { Float($0 / total) }
        self.threshold = threshold
        self.alias = alias
    }

    public var count: Int { probabilities.count }

    /// One index.
    public func draw(using rng: inout SplitMix64) -> Int32 {
        let r = rng.next()
        let column = Int((r >> 32) % UInt64(threshold.count))
        let u = Float(r & 0xFF_FFFF) * (1.0 / Float(1 << 24))
        return u < threshold[column] ? Int32(column) : alias[column]
    }

    /// Fills `output` with `count` independent draws (replacing its contents, keeping capacity).
    public func draw(_ count: Int, into output: inout [Int32], using rng: inout SplitMix64) {
        output.removeAll(keepingCapacity: true)
        for _ in 0..<count { output.append(draw(using: &rng)) }
    }
}
