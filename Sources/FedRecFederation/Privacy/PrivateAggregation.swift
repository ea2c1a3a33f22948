import FedRecTensor

/// DP-FedAvg's server step (McMahan, Ramage, Talwar, Zhang 2018, "Learning Differentially Private Recurrent
/// Language Models", Algorithm 1 with the fixed-denominator estimator).
///
/// Invariants it relies on: every contribution was clipped to L2 norm `clipNorm` over the whole update (user-tower
/// delta and item-embedding gradient together; `ClientTrainingConfiguration.clipNorm` on the clients, and again
/// by the coordinator when it sees individual updates) and weighted uniformly (`AggregationWeighting.uniform`),
/// so one client changes the sum by at most `clipNorm`. The coordinator then adds N(0, (z S)^2) to every
/// coordinate of the sum and divides by the expected cohort size q N, not by the realised count (which would
/// itself leak membership).
public struct PrivateAggregation: Sendable {
    public let configuration: DifferentialPrivacyConfiguration
    /// q N: the sampling rate times the number of clients that can be sampled.
    public let expectedClients: Double

    public init(configuration: DifferentialPrivacyConfiguration, population: Int) {
        precondition(population > 0, "population must be positive")
        self.configuration = configuration
        expectedClients = max(configuration.samplingRate * Double(population), 1)
    }

    /// Standard deviation of the noise on the sum, z S (or z_Delta S with adaptive clipping).
    public func noiseStandardDeviation(clipNorm: Double? = nil) -> Double {
        configuration.updateNoiseStandardDeviation(clipNorm: clipNorm)
    }

    /// The noised mean from a uniform-weight aggregate: `(mean * count + noise) / (q N)`, noise from libsodium.
    public func privatize(_ aggregate: AggregateUpdate, clipNorm: Double? = nil) throws -> AggregateUpdate {
        try privatize(aggregate, clipNorm: clipNorm) { vector, sigma in
            try GaussianNoise.add(to: &vector, standardDeviation: sigma)
        }
    }

    /// As `privatize(_:clipNorm:)` with an explicit noise source (tests; never in production).
    public func privatize<Source: NoiseSource>(
        _ aggregate: AggregateUpdate, clipNorm: Double? = nil, sampler: inout GaussianSampler<Source>
    ) -> AggregateUpdate {
        privatize(aggregate, clipNorm: clipNorm) { vector, sigma in
            GaussianNoise.add(to: &vector, standardDeviation: sigma, sampler: &sampler)
        }
    }

    private func privatize(
        _ aggregate: AggregateUpdate, clipNorm: Double?, addNoise: (inout [Float], Double) throws -> Void
    ) rethrows -> AggregateUpdate {
        let count = Float(aggregate.participants.count)
        let sigma = noiseStandardDeviation(clipNorm: clipNorm)
        let scale = 1 / Float(expectedClients)
        var delta = aggregate.meanDelta
        for i in delta.indices { delta[i] *= count }
        try addNoise(&delta, sigma)
        for i in delta.indices { delta[i] *= scale }
        var gradient = aggregate.meanItemEmbeddingGradient
        var values = gradient.storage
        for i in values.indices { values[i] *= count }
        try addNoise(&values, sigma)
        for i in values.indices { values[i] *= scale }
        gradient.storage = values
        var result = aggregate
        result.meanDelta = delta
        result.meanItemEmbeddingGradient = gradient
        return result
    }
}
