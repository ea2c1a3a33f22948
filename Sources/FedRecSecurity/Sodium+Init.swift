internal import CFedRecSodium

/// Initialises libsodium exactly once per process (`sodium_init` is idempotent but not free).
enum Sodium {
    /// Evaluated once; `nil` when libsodium initialised, else the error.
    private static let initialisation: SecurityError? = {
        // 0: initialised now, 1: already initialised, -1: failure.
        sodium_init() < 0
            ? SecurityError(code: .libraryInitialisationFailed, message: "sodium_init() failed") : nil
    }()

    /// Throws when libsodium could not be initialised. Call before any other libsodium function.
    static func ensureInitialised() throws {
        if let error = initialisation { throw error }
    }

    /// Throws `operationFailed` naming `operation` when a libsodium return code is non-zero.
    static func check(_ code: Int32, _ operation: String) throws {
        guard code == 0 else {
            throw SecurityError(code: .operationFailed, message: "\(operation) returned \(code)")
        }
    }
}

extension Sodium {
    /// Throws `invalidLength` unless `count == expected`.
    static func checkLength(_ count: Int, _ expected: Int, _ what: String) throws {
        guard count == expected else {
            throw SecurityError(code: .invalidLength, message: "\(what) must be \(expected) bytes, got \(count)")
        }
    }
}

extension SecureBytes: ContiguousBytes {}

extension Array where Element == UInt8 {
    /// Zeroes these bytes in place (`sodium_memzero`), keeping the count. For a plaintext that held secrets only
    /// briefly (a parsed or just sealed message): call it while this array is the buffer's only reference, or a
    /// copy-on-write copy is zeroed instead.
    public mutating func wipe() {
        withUnsafeMutableBytes { bytes in
            if let base = bytes.baseAddress { sodium_memzero(base, bytes.count) }
        }
    }
}
