import FedRecTensor

/// How many clients a round asks.
public enum CohortSelection: Sendable, Hashable, Codable {
    /// Exactly `min(count, population)` clients, uniformly without replacement.
    case count(Int)
    /// `max(1, round(fraction * population))` clients, uniformly without replacement.
    case fraction(Double)
    /// Each client independently with probability `rate` (Poisson sampling, as DP accounting assumes); the
    /// cohort may be empty.
    case poisson(rate: Double)

    public func validate() {
        switch self {
        case .count(let n): precondition(n > 0, "cohort count must be positive")
        case .fraction(let f): precondition(f > 0 && f <= 1, "cohort fraction must lie in (0, 1]")
        case .poisson(let q): precondition(q > 0 && q <= 1, "Poisson rate must lie in (0, 1]")
        }
    }
}

/// Seeded cohort sampling. The cohort of (round, attempt) depends only on the seed, the round, the attempt
/// and the population size, so a restarted coordinator draws the same cohorts; DP runs draw from a CSPRNG
/// instead (`sample(populationSize:using:)`).
public struct ClientSampler: Sendable, Hashable, Codable {
    public let selection: CohortSelection
    public let seed: UInt64

    public init(selection: CohortSelection, seed: UInt64) {
        selection.validate()
        self.selection = selection
        self.seed = seed
    }

    /// Indices into a population of `populationSize` clients, ascending. Every (round, attempt) has a stream of
    /// its own: attempts past 255 mix their high bits into the seed (the streams of attempts 0-255 are those
    /// of earlier releases).
    public func sample(round: Int, attempt: Int = 0, populationSize n: Int) -> [Int] {
        precondition(round >= 0 && attempt >= 0 && n >= 0, "round, attempt and population must be non-negative")
        var high = SplitMix64(seed: UInt64(attempt >> 8))
        var rng = SplitMix64.stream(
            seed: attempt >> 8 == 0 ? seed : seed ^ high.next(),
            index: UInt64(round) << 8 | UInt64(attempt & 0xff))
        return sample(populationSize: n, using: &rng)
    }

    /// Indices into a population of `populationSize` clients, ascending, drawn from `rng`. Differential privacy
    /// draws with a CSPRNG: its subsampling amplification assumes no one can tell who was sampled, which a
    /// seed anyone can guess would give away.
    public func sample<Generator: RandomNumberGenerator>(populationSize n: Int, using rng: inout Generator) -> [Int] {
        precondition(n >= 0, "population must be non-negative")
        switch selection {
        case .poisson(let q):
            // 53-bit uniform in [0, 1).
            return (0..<n).filter { _ in Double(rng.next() >> 11) * 0x1p-53 < q }
        case .count, .fraction:
            let k = cohortSize(populationSize: n)
            // Partial Fisher-Yates over a virtual identity permutation (sparse swaps: O(k) memory).
            var swapped: [Int: Int] = [:]
            var chosen: [Int] = []
            chosen.reserveCapacity(k)
            for i in 0..<k {
                let j = i + Int(rng.next() % UInt64(n - i))
                let vi = swapped[i] ?? i
                let vj = swapped[j] ?? j
                swapped[j] = vi
                chosen.append(vj)
            }
            return chosen.sorted()
        }
    }

    /// The cohort of (round, attempt) from `population`, in population order.
    public func cohort<Element>(round: Int, attempt: Int = 0, from population: [Element]) -> [Element] {
        sample(round: round, attempt: attempt, populationSize: population.count).map { population[$0] }
    }

    /// A cohort from `population` drawn from `rng`, in population order.
    public func cohort<Element, Generator: RandomNumberGenerator>(
        from population: [Element], using rng: inout Generator
    )
        -> [Element]
    {
        sample(populationSize: population.count, using: &rng).map { population[$0] }
    }

    /// The cohort of (round, attempt): drawn from `randomness` when there is one (DP runs), else seeded.
    public func cohort<Element, Generator: RandomNumberGenerator>(
        round: Int, attempt: Int, from population: [Element], randomness: inout Generator?
    ) -> [Element] {
        guard randomness != nil else { return cohort(round: round, attempt: attempt, from: population) }
        return cohort(from: population, using: &randomness!)
    }

    /// The fixed cohort size for `.count` / `.fraction` (expected size for `.poisson`).
    public func cohortSize(populationSize n: Int) -> Int {
        switch selection {
        case .count(let k): min(k, n)
        case .fraction(let f): n == 0 ? 0 : min(n, max(1, Int((f * Double(n)).rounded())))
        case .poisson(let q): Int((q * Double(n)).rounded())
        }
    }
}
