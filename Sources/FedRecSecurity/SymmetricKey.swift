/// A 256-bit symmetric key (AEAD key, session key). The bytes live in `SecureBytes`.
public struct SymmetricKey: Sendable, Equatable, CustomStringConvertible {
    /// Key length in bytes.
    public static let byteCount = 32

    let bytes: SecureBytes

    /// A fresh random key (libsodium's CSPRNG).
    public init() throws {
        bytes = try SecureBytes(randomCount: Self.byteCount)
    }

    /// A key over existing secret bytes (exactly 32).
    public init(_ bytes: SecureBytes) throws {
        try Sodium.checkLength(bytes.count, Self.byteCount, "symmetric key")
        self.bytes = bytes
    }

    /// The key bytes, for passing to another primitive; never copy them into a plain array.
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try bytes.withUnsafeBytes(body)
    }

    /// Constant-time comparison.
    public static func == (lhs: SymmetricKey, rhs: SymmetricKey) -> Bool { lhs.bytes == rhs.bytes }

    public var description: String { "SymmetricKey(redacted)" }
}
