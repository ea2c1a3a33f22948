internal import CFedRecSodium

/// libsodium's CSPRNG (`randombytes_buf`) as a generator value.
///
/// Creating one initialises libsodium (and throws if that fails); afterwards every call succeeds, so filling
/// never throws. Use it where an adversary must not be able to predict or reproduce the bytes (differential-
/// privacy noise, masks); use a seeded `SplitMix64` where reproducibility matters and secrecy does not.
public struct SecureRandomGenerator: RandomNumberGenerator, Sendable {
    /// Throws `libraryInitialisationFailed` when libsodium cannot be initialised.
    public init() throws {
        try Sodium.ensureInitialised()
    }

    /// Overwrites every byte of `buffer` with CSPRNG output in one `randombytes_buf` call.
    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }

    /// Overwrites every word of `words` with uniformly random 64-bit values.
    public func fill(_ words: UnsafeMutableBufferPointer<UInt64>) {
        fill(UnsafeMutableRawBufferPointer(words))
    }

    /// One uniformly random 64-bit word (a `randombytes_buf` call per word: fill a buffer for bulk use).
    public func next() -> UInt64 {
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { fill($0) }
        return word
    }
}
