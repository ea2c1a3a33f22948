internal import CFedRecSodium

/// An Ed25519 public key (32 bytes).
public struct SigningPublicKey: Sendable, Hashable, CustomStringConvertible {
    public static let byteCount = 32
    public static let signatureByteCount = 64

    public let rawRepresentation: [UInt8]

    public init<Bytes: Collection>(rawRepresentation: Bytes) throws where Bytes.Element == UInt8 {
        try Sodium.checkLength(rawRepresentation.count, Self.byteCount, "Ed25519 public key")
        self.rawRepresentation = Array(rawRepresentation)
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this key.
    public func isValidSignature<Message: ContiguousBytes>(_ signature: [UInt8], for message: Message) -> Bool {
        (try? verify(signature, for: message)) != nil
    }

    /// Throws `invalidSignature` unless `signature` is a valid signature of `message` by this key.
    public func verify<Message: ContiguousBytes>(_ signature: [UInt8], for message: Message) throws {
        try Sodium.ensureInitialised()
        guard signature.count == Self.signatureByteCount else {
            throw SecurityError(
                code: .invalidSignature,
                message: "signature must be \(Self.signatureByteCount) bytes, got \(signature.count)")
        }
        let code = message.withUnsafeBytes { m in
            crypto_sign_verify_detached(
                signature, m.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(m.count), rawRepresentation)
        }
        guard code == 0 else {
            throw SecurityError(code: .invalidSignature, message: "Ed25519 signature does not verify")
        }
    }

    /// Lower-case hex of the key.
    public var description: String { SHA256.hex(rawRepresentation) }
}

/// An Ed25519 signing identity (libsodium `crypto_sign_*`). The 32-byte seed and the 64-byte expanded secret
/// key live in `SecureBytes`; only the seed is ever stored.
public struct SigningIdentity: Sendable, CustomStringConvertible {
    public static let seedByteCount = 32

    /// The 32-byte seed the key pair is derived from (what key files store).
    let seed: SecureBytes
    /// libsodium's 64-byte secret key (seed || public key).
    private let secretKey: SecureBytes
    public let publicKey: SigningPublicKey

    /// A fresh identity from a random seed.
    public init() throws {
        try self.init(seed: SecureBytes(randomCount: Self.seedByteCount))
    }

    /// The identity derived from `seed` (32 bytes), deterministically.
    public init(seed: SecureBytes) throws {
        try Sodium.ensureInitialised()
        try Sodium.checkLength(seed.count, Self.seedByteCount, "Ed25519 seed")
        var secretKey = SecureBytes(zeros: 64)
        var publicBytes = [UInt8](repeating: 0, count: SigningPublicKey.byteCount)
        try secretKey.withUnsafeMutableBytes { sk in
            try seed.withUnsafeBytes { s in
                try Sodium.check(
                    crypto_sign_seed_keypair(
                        &publicBytes, sk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        s.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                    "crypto_sign_seed_keypair")
            }
        }
        self.seed = seed
        self.secretKey = secretKey
        self.publicKey = try SigningPublicKey(rawRepresentation: publicBytes)
    }

    /// The detached 64-byte Ed25519 signature of `message`.
    public func signature<Message: ContiguousBytes>(for message: Message) throws -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: SigningPublicKey.signatureByteCount)
        var length: UInt64 = 0
        try message.withUnsafeBytes { m in
            try secretKey.withUnsafeBytes { sk in
                try Sodium.check(
                    crypto_sign_detached(
                        &signature, &length, m.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(m.count),
                        sk.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                    "crypto_sign_detached")
            }
        }
        return signature
    }

    public var description: String { "SigningIdentity(public: \(publicKey), secret redacted)" }
}
