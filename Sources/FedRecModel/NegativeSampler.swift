public import FedRecTensor

/// Draws the shared negatives of a sampled-softmax batch from the proposal `Q` and knows their log-Q correction.
public struct NegativeSampler: Sendable {
    public let sampleCount: Int
    private let sampler: AliasSampler
    /// Per catalogue item, `log(sampleCount * Q(item))`: the log of its expected count among the samples.
    public let logExpectedCounts: [Float]

    /// `itemFrequencies[i]`: training interactions of item `i` (used by `.unigram`; ignored by `.uniform`).
    public init(proposal: NegativeProposal, itemFrequencies: [Int], sampleCount: Int) {
        precondition(sampleCount > 0, "sample count must be positive")
        precondition(!itemFrequencies.isEmpty, "empty catalogue")
        let weights: [Double]
        switch proposal {
        case .uniform:
            weights = [Double](repeating: 1, count: itemFrequencies.count)
        case .unigram(let alpha):
            weights = itemFrequencies.map { _pow(Double($0) + 1, alpha) }
        }
        sampler = AliasSampler(weights: weights)
        self.sampleCount = sampleCount
        logExpectedCounts = sampler.probabilities.map { Float(_logd(Double(sampleCount) * Double($0))) }
    }

    /// The proposal probabilities.
    public var probabilities: [Float] { sampler.probabilities }

    /// Replaces `negatives` with `sampleCount` catalogue items drawn with replacement.
    public func sample(into negatives: inout [Int32], using rng: inout SplitMix64) {
        sampler.draw(sampleCount, into: &negatives, using: &rng)
    }
}

#if canImport(Glibc)
import Glibc
func _pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
func _logd(_ x: Double) -> Double { Glibc.log(x) }
#elseif canImport(Darwin)
import Darwin
func _pow(_ x: Double, _ y: Double) -> Double { Darwin.pow(x, y) }
func _logd(_ x: Double) -> Double { Darwin.log(x) }
#endif
