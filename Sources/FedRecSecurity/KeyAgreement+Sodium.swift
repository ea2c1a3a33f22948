internal import CFedRecSodium

/// An X25519 public key (32 bytes) for `crypto_kx`.
public struct KeyAgreementPublicKey: Sendable, Hashable, CustomStringConvertible {
    public static let byteCount = 32

    public let rawRepresentation: [UInt8]

    public init<Bytes: Collection>(rawRepresentation: Bytes) throws where Bytes.Element == UInt8 {
        try Sodium.checkLength(rawRepresentation.count, Self.byteCount, "X25519 public key")
        self.rawRepresentation = Array(rawRepresentation)
    }

    /// Lower-case hex of the key.
    public var description: String { SHA256.hex(rawRepresentation) }

    /// Whether `crypto_kx` accepts the key: libsodium refuses small-order points (such as 32 zero bytes), whose
    /// shared secret is zero for every secret key. Checked with one `crypto_scalarmult` by a fixed public scalar
    /// (nothing secret is involved).
    public var isUsableForKeyExchange: Bool {
        guard (try? Sodium.ensureInitialised()) != nil else { return false }
        let scalar = [UInt8](repeating: 0x5A, count: 32)
        var product = [UInt8](repeating: 0, count: 32)
        return crypto_scalarmult(&product, scalar, rawRepresentation) == 0
    }
}

/// The two directional keys of a `crypto_kx` session: what this side receives with and transmits with.
/// The client's `transmit` equals the server's `receive` and vice versa.
public struct SessionKeys: Sendable, Equatable {
    public let receive: SymmetricKey
    public let transmit: SymmetricKey
}

/// An X25519 key pair for `crypto_kx` key exchange. The secret key lives in `SecureBytes`.
///
/// Session keys are `BLAKE2b-512(q || client_pk || server_pk)` split into two halves (libsodium), so they are
/// bound to both public keys: a coordinator that is not the pinned one derives different keys.
public struct KeyAgreementKey: Sendable, CustomStringConvertible {
    public static let secretByteCount = 32

    let secretKey: SecureBytes
    public let publicKey: KeyAgreementPublicKey

    /// A fresh random key pair (`crypto_kx_keypair`).
    public init() throws {
        try Sodium.ensureInitialised()
        var secret = SecureBytes(zeros: Self.secretByteCount)
        var publicBytes = [UInt8](repeating: 0, count: KeyAgreementPublicKey.byteCount)
        try secret.withUnsafeMutableBytes { sk in
            try Sodium.check(
                crypto_kx_keypair(&publicBytes, sk.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                "crypto_kx_keypair")
        }
        secretKey = secret
        publicKey = try KeyAgreementPublicKey(rawRepresentation: publicBytes)
    }

    /// The key pair of an existing 32-byte secret key (public key = `crypto_scalarmult_base`).
    public init(secretKey: SecureBytes) throws {
        try Sodium.ensureInitialised()
        try Sodium.checkLength(secretKey.count, Self.secretByteCount, "X25519 secret key")
        var publicBytes = [UInt8](repeating: 0, count: KeyAgreementPublicKey.byteCount)
        try secretKey.withUnsafeBytes { sk in
            try Sodium.check(
                crypto_scalarmult_base(&publicBytes, sk.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                "crypto_scalarmult_base")
        }
        self.secretKey = secretKey
        self.publicKey = try KeyAgreementPublicKey(rawRepresentation: publicBytes)
    }

    /// Session keys of the client side of an exchange with `serverPublicKey` (`crypto_kx_client_session_keys`).
    /// Throws `invalidPublicKey` when the server key is unacceptable (small-order point).
    public func clientSessionKeys(serverPublicKey: KeyAgreementPublicKey) throws -> SessionKeys {
        try sessionKeys(peer: serverPublicKey, client: true)
    }

    /// Session keys of the server side of an exchange with `clientPublicKey` (`crypto_kx_server_session_keys`).
    public func serverSessionKeys(clientPublicKey: KeyAgreementPublicKey) throws -> SessionKeys {
        try sessionKeys(peer: clientPublicKey, client: false)
    }

    private func sessionKeys(peer: KeyAgreementPublicKey, client: Bool) throws -> SessionKeys {
        var rx = SecureBytes(zeros: SymmetricKey.byteCount)
        var tx = SecureBytes(zeros: SymmetricKey.byteCount)
        let code: Int32 = rx.withUnsafeMutableBytes { r in
            tx.withUnsafeMutableBytes { t in
                secretKey.withUnsafeBytes { sk in
                    let (rp, tp) = (
                        r.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        t.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    )
                    let skp = sk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    return client
                        ? crypto_kx_client_session_keys(
                            rp, tp, publicKey.rawRepresentation, skp, peer.rawRepresentation)
                        : crypto_kx_server_session_keys(
                            rp, tp, publicKey.rawRepresentation, skp, peer.rawRepresentation)
                }
            }
        }
        guard code == 0 else {
            throw SecurityError(
                code: .invalidPublicKey,
                message:
                    "crypto_kx_\(client ? "client" : "server")_session_keys rejected the peer's public key (\(code))")
        }
        return SessionKeys(receive: try SymmetricKey(rx), transmit: try SymmetricKey(tx))
    }

    public var description: String { "KeyAgreementKey(public: \(publicKey), secret redacted)" }
}
