internal import CFedRecSodium

/// Streaming SHA-256 (libsodium's `crypto_hash_sha256`), used for data-set and source checksums.
public struct SHA256Hasher: ~Copyable {
    private var state = crypto_hash_sha256_state()

    public init() throws {
        try Sodium.ensureInitialised()
        try Sodium.check(crypto_hash_sha256_init(&state), "crypto_hash_sha256_init")
    }

    /// Absorbs `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try Sodium.check(
            crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count)),
            "crypto_hash_sha256_update")
    }

    /// Absorbs `bytes`.
    public mutating func update<Bytes: ContiguousBytes>(_ bytes: Bytes) throws {
        try bytes.withUnsafeBytes { try update($0) }
    }

    /// The 32-byte digest. Consumes the hasher.
    public consuming func finalize() throws -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        try Sodium.check(crypto_hash_sha256_final(&state, &digest), "crypto_hash_sha256_final")
        return digest
    }
}

/// Anything that exposes contiguous bytes (`[UInt8]`, `ArraySlice<UInt8>`, `UnsafeRawBufferPointer`).
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
extension UnsafeRawBufferPointer: ContiguousBytes {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

public enum SHA256 {
    /// The SHA-256 digest of `bytes`.
    public static func hash<Bytes: ContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
        var hasher = try SHA256Hasher()
        try hasher.update(bytes)
        return try hasher.finalize()
    }

    /// Lower-case hexadecimal of a digest.
    public static func hex(_ digest: [UInt8]) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        var text = ""
        text.reserveCapacity(digest.count * 2)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return text
    }
}
