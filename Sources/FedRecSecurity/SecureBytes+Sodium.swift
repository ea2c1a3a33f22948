internal import CFedRecSodium

/// Bytes that hold a secret: zeroed (`sodium_memzero`) when the last copy goes away, compared in
/// constant time (`sodium_memcmp`), never printed, readable only through `withUnsafeBytes`.
///
/// Copy-on-write: copies share one buffer until one of them is mutated.
public struct SecureBytes: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    private final class Storage: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let count: Int

        init(count: Int) {
            self.count = count
            // Allocate at least one byte so the pointer is always valid.
            self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
            self.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        }

        deinit {
            sodium_memzero(pointer, max(count, 1))
            pointer.deallocate()
        }
    }

    private var storage: Storage

    /// `count` zero bytes.
    public init(zeros count: Int) {
        precondition(count >= 0, "SecureBytes count must be non-negative")
        storage = Storage(count: count)
    }

    /// `count` bytes from libsodium's CSPRNG (`randombytes_buf`).
    public init(randomCount count: Int) throws {
        try Sodium.ensureInitialised()
        self.init(zeros: count)
        randombytes_buf(storage.pointer, count)
    }

    /// A copy of `bytes`. The caller remains responsible for wiping its own copy.
    public init<Bytes: Collection>(copying bytes: Bytes) where Bytes.Element == UInt8 {
        self.init(zeros: bytes.count)
        var offset = 0
        for byte in bytes {
            storage.pointer.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    public var count: Int { storage.count }

    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try body(UnsafeRawBufferPointer(start: storage.pointer, count: storage.count))
    }

    public mutating func withUnsafeMutableBytes<Result>(
        _ body: (UnsafeMutableRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = Storage(count: storage.count)
            copy.pointer.copyMemory(from: storage.pointer, byteCount: storage.count)
            storage = copy
        }
        return try body(UnsafeMutableRawBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// Constant-time comparison of length and contents.
    public static func == (lhs: SecureBytes, rhs: SecureBytes) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return sodium_memcmp(lhs.storage.pointer, rhs.storage.pointer, lhs.count) == 0
    }

    public var description: String { "SecureBytes(\(count) bytes, redacted)" }
    public var debugDescription: String { description }
}
