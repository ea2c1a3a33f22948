internal import CFedRecSodium

/// XChaCha20-Poly1305 (IETF construction, libsodium's `crypto_aead_xchacha20poly1305_ietf_*`).
///
/// 24-byte nonces are random (`randombytes_buf`), large enough that random nonces never repeat in practice
/// under one key. A sealed box's `combined` form is `nonce (24) || ciphertext || tag (16)`.
public enum AEAD {
    public static let nonceByteCount = 24
    public static let tagByteCount = 16

    /// A 24-byte nonce.
    public struct Nonce: Sendable, Hashable {
        public let bytes: [UInt8]

        /// A random nonce.
        public init() throws {
            var bytes = [UInt8](repeating: 0, count: AEAD.nonceByteCount)
            try bytes.withUnsafeMutableBytes { try AEAD.fillRandomNonce($0) }
            self.bytes = bytes
        }

        public init<Bytes: Collection>(bytes: Bytes) throws where Bytes.Element == UInt8 {
            try Sodium.checkLength(bytes.count, AEAD.nonceByteCount, "AEAD nonce")
            self.bytes = Array(bytes)
        }
    }

    /// Nonce, ciphertext and tag of one sealed message.
    public struct SealedBox: Sendable, Hashable {
        public let nonce: Nonce
        /// Ciphertext followed by the 16-byte tag.
        public let ciphertextAndTag: [UInt8]

        /// `nonce || ciphertext || tag`.
        public var combined: [UInt8] { nonce.bytes + ciphertextAndTag }
        /// The ciphertext without the tag (same length as the plaintext).
        public var ciphertext: ArraySlice<UInt8> { ciphertextAndTag.dropLast(AEAD.tagByteCount) }
        public var tag: ArraySlice<UInt8> { ciphertextAndTag.suffix(AEAD.tagByteCount) }

        /// Parses `nonce || ciphertext || tag`; throws `malformedMessage` when too short to hold nonce and tag.
        public init<Bytes: Collection>(combined: Bytes) throws where Bytes.Element == UInt8 {
            guard combined.count >= AEAD.nonceByteCount + AEAD.tagByteCount else {
                throw SecurityError(
                    code: .malformedMessage,
                    message: "sealed box of \(combined.count) bytes is shorter than nonce and tag "
                        + "(\(AEAD.nonceByteCount + AEAD.tagByteCount))")
            }
            let bytes = Array(combined)
            nonce = try Nonce(bytes: bytes[..<AEAD.nonceByteCount])
            ciphertextAndTag = Array(bytes[AEAD.nonceByteCount...])
        }

        init(nonce: Nonce, ciphertextAndTag: [UInt8]) {
            self.nonce = nonce
            self.ciphertextAndTag = ciphertextAndTag
        }
    }

    /// Encrypts and authenticates `message`, and authenticates `associatedData` (sent in clear by the caller).
    /// `nonce` nil: a fresh random nonce (the normal case; pass one only for known-answer tests).
    public static func seal<Message: ContiguousBytes, AD: ContiguousBytes>(
        _ message: Message, using key: SymmetricKey, nonce: Nonce? = nil, authenticating associatedData: AD
    ) throws -> SealedBox {
        try Sodium.ensureInitialised()
        let nonce = try nonce ?? Nonce()
        let output = try message.withUnsafeBytes { m in
            try associatedData.withUnsafeBytes { ad in
                try nonce.bytes.withUnsafeBytes { n in
                    try [UInt8](unsafeUninitializedCapacity: m.count + tagByteCount) { out, count in
                        try encrypt(
                            m, nonce: n, using: key, authenticating: ad, into: UnsafeMutableRawBufferPointer(out))
                        count = m.count + tagByteCount
                    }
                }
            }
        }
        return SealedBox(nonce: nonce, ciphertextAndTag: output)
    }

    /// `seal` with no associated data.
    public static func seal<Message: ContiguousBytes>(_ message: Message, using key: SymmetricKey, nonce: Nonce? = nil)
        throws -> SealedBox
    {
        try seal(message, using: key, nonce: nonce, authenticating: [UInt8]())
    }

    /// Verifies and decrypts; throws `authenticationFailed` for any tampering, truncation, wrong key or wrong
    /// associated data (libsodium does not say which, by design).
    public static func open<AD: ContiguousBytes>(
        _ box: SealedBox, using key: SymmetricKey, authenticating associatedData: AD
    ) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: box.ciphertextAndTag.count - tagByteCount)
        try open(box, using: key, authenticating: associatedData, into: &output)
        return output
    }

    /// `open` with no associated data.
    public static func open(_ box: SealedBox, using key: SymmetricKey) throws -> [UInt8] {
        try open(box, using: key, authenticating: [UInt8]())
    }

    /// Opens a box whose plaintext is itself secret (a key, a secret share) straight into `SecureBytes`.
    public static func openSecret<AD: ContiguousBytes>(
        _ box: SealedBox, using key: SymmetricKey, authenticating associatedData: AD
    ) throws -> SecureBytes {
        var output = SecureBytes(zeros: box.ciphertextAndTag.count - tagByteCount)
        try output.withUnsafeMutableBytes { buffer in
            try open(box, using: key, authenticating: associatedData, into: buffer)
        }
        return output
    }

    private static func open<AD: ContiguousBytes>(
        _ box: SealedBox, using key: SymmetricKey, authenticating associatedData: AD, into output: inout [UInt8]
    ) throws {
        try output.withUnsafeMutableBytes { buffer in
            try open(box, using: key, authenticating: associatedData, into: buffer)
        }
    }

    private static func open<AD: ContiguousBytes>(
        _ box: SealedBox, using key: SymmetricKey, authenticating associatedData: AD,
        into output: UnsafeMutableRawBufferPointer
    ) throws {
        try box.ciphertextAndTag.withUnsafeBytes { sealed in
            try box.nonce.bytes.withUnsafeBytes { nonce in
                try associatedData.withUnsafeBytes { ad in
                    try decrypt(sealed, nonce: nonce, using: key, authenticating: ad, into: output)
                }
            }
        }
    }

    /// Fills `nonce` (24 bytes) with fresh randomness from libsodium's CSPRNG (`Nonce()` and envelopes use it).
    static func fillRandomNonce(_ nonce: UnsafeMutableRawBufferPointer) throws {
        try Sodium.ensureInitialised()
        precondition(nonce.count == nonceByteCount, "AEAD nonce length")
        randombytes_buf(nonce.baseAddress!, nonceByteCount)
    }

    /// Encrypts `message` into `output` (`message.count + tagByteCount` bytes: ciphertext, then tag) with a
    /// 24-byte `nonce`, authenticating `associatedData`. For callers that lay the wire form out themselves.
    static func encrypt(
        _ message: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, using key: SymmetricKey,
        authenticating associatedData: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) throws {
        try Sodium.ensureInitialised()
        precondition(nonce.count == nonceByteCount && output.count == message.count + tagByteCount, "AEAD lengths")
        var written: UInt64 = 0
        try key.withUnsafeBytes { k in
            try Sodium.check(
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    output.baseAddress!.assumingMemoryBound(to: UInt8.self), &written,
                    message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                    associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(associatedData.count), nil,
                    nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    k.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                "crypto_aead_xchacha20poly1305_ietf_encrypt")
        }
        precondition(Int(written) == output.count, "AEAD wrote an unexpected length")
    }

    /// Verifies `ciphertextAndTag` and decrypts it into `output` (`ciphertextAndTag.count - tagByteCount` bytes);
    /// throws `authenticationFailed` (with `output` zeroed) when it does not authenticate.
    static func decrypt(
        _ ciphertextAndTag: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, using key: SymmetricKey,
        authenticating associatedData: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) throws {
        try Sodium.ensureInitialised()
        precondition(
            nonce.count == nonceByteCount && ciphertextAndTag.count >= tagByteCount
                && output.count == ciphertextAndTag.count - tagByteCount, "AEAD lengths")
        // A zero-length plaintext still needs a valid pointer.
        var scratch: UInt8 = 0
        let code: Int32 = key.withUnsafeBytes { k in
            withUnsafeMutablePointer(to: &scratch) { fallback in
                var written: UInt64 = 0
                return crypto_aead_xchacha20poly1305_ietf_decrypt(
                    output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? fallback, &written, nil,
                    ciphertextAndTag.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ciphertextAndTag.count),
                    associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(associatedData.count),
                    nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        guard code == 0 else {
            if let base = output.baseAddress { sodium_memzero(base, output.count) }
            throw SecurityError(
                code: .authenticationFailed,
                message: "sealed box failed to authenticate (tampered, truncated, wrong key or wrong associated data)")
        }
    }
}
