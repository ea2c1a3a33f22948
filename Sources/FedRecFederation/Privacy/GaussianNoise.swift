import FedRecSecurity
import FedRecTensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where Gaussian noise gets its randomness: uniformly random 64-bit words, in bulk.
///
/// Production uses `SecureNoiseSource` (libsodium's CSPRNG): DP noise must be unpredictable to everyone,
/// including whoever knows the code and a seed. `SeededNoiseSource` exists for deterministic tests only.
public protocol NoiseSource {
    /// Overwrites every element of `words` with independent, uniformly distributed 64-bit words.
    mutating func fill(_ words: UnsafeMutableBufferPointer<UInt64>)
}

/// Randomness from libsodium (`randombytes_buf`), one call per block of words.
public struct SecureNoiseSource: NoiseSource, Sendable {
    private let generator: SecureRandomGenerator

    /// Throws when libsodium cannot be initialised.
    public init() throws {
        generator = try SecureRandomGenerator()
    }

    public mutating func fill(_ words: UnsafeMutableBufferPointer<UInt64>) {
        generator.fill(words)
    }
}

/// A reproducible source (`SplitMix64`). Never use it for noise that protects anyone: its output is
/// determined by the seed.
public struct SeededNoiseSource: NoiseSource, Sendable {
    private var generator: SplitMix64

    public init(seed: UInt64) {
        generator = SplitMix64(seed: seed)
    }

    public mutating func fill(_ words: UnsafeMutableBufferPointer<UInt64>) {
        for i in words.indices { words[i] = generator.next() }
    }
}

/// Standard-normal sampling by Marsaglia's polar method (Marsaglia & Bray 1964) from uniform 64-bit words:
/// two words give `u, v` uniform on `[−1, 1)` with 53-bit resolution; if `0 < s = u² + v² < 1` (probability
/// π/4) then `u·√(−2 ln s / s)` and `v·√(−2 ln s / s)` are independent N(0, 1). Words are drawn from the
/// source a block at a time, so a libsodium source costs one `randombytes_buf` call per 4096 words.
///
/// Caveat: like every floating-point Gaussian sampler this is not a discrete Gaussian; the low-order bits
/// of noisy values can leak a little (Mironov 2012, "On significance of the least significant bits for
/// differential privacy"). Secure aggregation of quantised updates is where a discrete sampler would belong.
public struct GaussianSampler<Source: NoiseSource> {
    public static var blockWordCount: Int { 4096 }

    public private(set) var source: Source
    private var words: [UInt64]
    private var nextWord: Int
    private var spare: Double?

    public init(source: Source) {
        self.source = source
        self.words = [UInt64](repeating: 0, count: Self.blockWordCount)
        self.nextWord = Self.blockWordCount
        self.spare = nil
    }

    @inline(__always) private mutating func nextUniformSigned() -> Double {
        if nextWord == words.count {
            words.withUnsafeMutableBufferPointer { source.fill($0) }
            nextWord = 0
        }
        let word = words[nextWord]
        nextWord += 1
        // Top 54 bits as a signed integer in [−2^53, 2^53), scaled to [−1, 1).
        return Double(Int64(bitPattern: word) >> 10) * 0x1p-53
    }

    /// The next pair of independent standard normals.
    @inline(__always) public mutating func nextPair() -> (Double, Double) {
        while true {
            let u = nextUniformSigned()
            let v = nextUniformSigned()
            let s = u * u + v * v
            if s < 1 && s > 0 {
                let factor = (-2 * log(s) / s).squareRoot()
                return (u * factor, v * factor)
            }
        }
    }

    /// The next standard normal.
    public mutating func next() -> Double {
        if let value = spare {
            spare = nil
            return value
        }
        let (a, b) = nextPair()
        spare = b
        return a
    }

    /// Writes `count` standard normals, scaled by `standardDeviation`, through `body(index, sample)`.
    @inline(__always) mutating func generate(count: Int, standardDeviation: Double, _ body: (Int, Double) -> Void) {
        var i = 0
        if count > 0, let value = spare {
            spare = nil
            body(0, value * standardDeviation)
            i = 1
        }
        while i + 2 <= count {
            let (a, b) = nextPair()
            body(i, a * standardDeviation)
            body(i + 1, b * standardDeviation)
            i += 2
        }
        if i < count {
            let (a, b) = nextPair()
            body(i, a * standardDeviation)
            spare = b
        }
    }
}

/// The Gaussian mechanism's noise on the sum of clipped updates: `N(0, σ²)` per coordinate with
/// `σ = z · S` (noise multiplier times clip norm; McMahan et al. 2018, Algorithm 1).
public enum GaussianNoise {
    /// The standard deviation of the noise on the SUM of clipped updates.
    public static func standardDeviation(noiseMultiplier z: Double, clipNorm s: Double) -> Double {
        precondition(
            z >= 0 && s > 0 && z.isFinite && s.isFinite, "noise multiplier and clip norm must be finite, z ≥ 0, S > 0")
        return z * s
    }

    /// Adds independent `N(0, standardDeviation²)` to every element of `vector` from libsodium randomness.
    /// Throws only when libsodium cannot be initialised.
    public static func add(to vector: inout [Float], standardDeviation: Double) throws {
        var sampler = GaussianSampler(source: try SecureNoiseSource())
        add(to: &vector, standardDeviation: standardDeviation, sampler: &sampler)
    }

    /// Adds independent `N(0, standardDeviation²)` to every element of `vector`, drawing from `sampler`
    /// (pass a `GaussianSampler(source: SeededNoiseSource(seed:))` in tests). Each sample is formed in
    /// `Double` and rounded once when added.
    public static func add<Source: NoiseSource>(
        to vector: inout [Float], standardDeviation: Double, sampler: inout GaussianSampler<Source>
    ) {
        precondition(
            standardDeviation >= 0 && standardDeviation.isFinite, "noise standard deviation must be finite and ≥ 0")
        if standardDeviation == 0 { return }
        vector.withUnsafeMutableBufferPointer { buffer in
            sampler.generate(count: buffer.count, standardDeviation: standardDeviation) { index, noise in
                buffer[index] = Float(Double(buffer[index]) + noise)
            }
        }
    }

    /// `count` samples of `N(0, standardDeviation²)` in `Double`.
    public static func samples<Source: NoiseSource>(
        count: Int, standardDeviation: Double = 1, sampler: inout GaussianSampler<Source>
    ) -> [Double] {
        precondition(count >= 0)
        var result = [Double](repeating: 0, count: count)
        result.withUnsafeMutableBufferPointer { buffer in
            sampler.generate(count: count, standardDeviation: standardDeviation) { index, noise in
                buffer[index] = noise
            }
        }
        return result
    }
}
