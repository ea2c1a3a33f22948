internal import CFedRecSodium

/// One mask to add to (or subtract from) a vector of `UInt32` words: the ChaCha20 expansion of `seed`.
public struct MaskTerm: Sendable {
    /// The 32-byte ChaCha20 key the mask is expanded from.
    public let seed: SecureBytes
    /// `true`: the mask is subtracted (mod 2^32) instead of added.
    public let negated: Bool

    /// Throws `invalidLength` unless `seed` is `MaskGenerator.seedByteCount` bytes.
    public init(seed: SecureBytes, negated: Bool) throws {
        try Sodium.checkLength(seed.count, MaskGenerator.seedByteCount, "mask seed")
        self.seed = seed
        self.negated = negated
    }
}

/// The secure-aggregation mask PRG: a 256-bit seed expands to the ChaCha20 key stream (libsodium
/// `crypto_stream_chacha20`, original 64-bit nonce variant, nonce all zero, block counter from 0), read as
/// little-endian `UInt32` words.
///
/// Invariants: word `w` of a seed's mask is bytes `4w ..< 4w + 4` of that key stream, whatever the vector length
/// or the tiling used to produce it (so two parties expanding the same seed agree word for word); the zero
/// nonce is safe because every seed is used for exactly one stream (seeds are fresh per round and per pair).
public enum MaskGenerator {
    /// Seed length in bytes (a ChaCha20 key).
    public static let seedByteCount = 32
    /// Words expanded per tile: 16 KiB of key stream, a multiple of the 64-byte ChaCha20 block, small enough
    /// that a tile of the target and the scratch stay in L1/L2 while every term is applied to it.
    static let tileWordCount = 4096

    /// Overwrites `words` with the mask of `seed` (one `crypto_stream_chacha20` call).
    public static func expand(seed: SecureBytes, into words: UnsafeMutableBufferPointer<UInt32>) throws {
        try Sodium.ensureInitialised()
        try Sodium.checkLength(seed.count, seedByteCount, "mask seed")
        guard let base = words.baseAddress, words.count > 0 else { return }
        let nonce = [UInt8](repeating: 0, count: Int(crypto_stream_chacha20_NONCEBYTES))
        try seed.withUnsafeBytes { key in
            try Sodium.check(
                crypto_stream_chacha20(
                    UnsafeMutableRawPointer(base).assumingMemoryBound(to: UInt8.self), UInt64(words.count * 4), nonce,
                    key.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                "crypto_stream_chacha20")
        }
        #if _endian(big)
            for index in 0..<words.count { words[index] = UInt32(littleEndian: words[index]) }
        #endif
    }

    /// The mask of `seed` as a new array of `count` words.
    public static func mask(seed: SecureBytes, count: Int) throws -> [UInt32] {
        precondition(count >= 0, "mask length must be non-negative")
        var words = [UInt32](repeating: 0, count: count)
        try words.withUnsafeMutableBufferPointer { try expand(seed: seed, into: $0) }
        return words
    }

    /// `words[w] = words[w] ± mask(term.seed)[w]` (mod 2^32) for every term, in one pass over `words`.
    ///
    /// Tiled: for each 16 KiB tile of `words`, each term's key stream for that tile is generated into one
    /// scratch tile (`crypto_stream_chacha20_xor_ic` over zeros, block counter = tile offset / 64 bytes) and
    /// added with wrapping arithmetic. No allocation per term or per element; the scratch is wiped afterwards.
    public static func accumulate(_ terms: [MaskTerm], into words: UnsafeMutableBufferPointer<UInt32>) throws {
        try Sodium.ensureInitialised()
        guard let target = words.baseAddress, words.count > 0, !terms.isEmpty else { return }
        let nonce = [UInt8](repeating: 0, count: Int(crypto_stream_chacha20_NONCEBYTES))
        let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: tileWordCount)
        defer {
            sodium_memzero(scratch, tileWordCount * 4)
            scratch.deallocate()
        }
        let scratchBytes = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: UInt8.self)
        var start = 0
        while start < words.count {
            let count = min(tileWordCount, words.count - start)
            // 16 words per 64-byte block; `start` is a multiple of the tile, hence of 16.
            let blockCounter = UInt64(start / 16)
            let tile = target + start
            for term in terms {
                scratch.update(repeating: 0, count: count)
                let code = term.seed.withUnsafeBytes { key in
                    crypto_stream_chacha20_xor_ic(
                        scratchBytes, scratchBytes, UInt64(count * 4), nonce, blockCounter,
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
                try Sodium.check(code, "crypto_stream_chacha20_xor_ic")
                if term.negated {
                    for index in 0..<count { tile[index] &-= UInt32(littleEndian: scratch[index]) }
                } else {
                    for index in 0..<count { tile[index] &+= UInt32(littleEndian: scratch[index]) }
                }
            }
            start += count
        }
    }

    /// `accumulate` over an array.
    public static func accumulate(_ terms: [MaskTerm], into words: inout [UInt32]) throws {
        try words.withUnsafeMutableBufferPointer { try accumulate(terms, into: $0) }
    }
}
