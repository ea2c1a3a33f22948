internal import CFedRecGFShare
internal import CFedRecSodium

/// One Shamir share: the polynomial evaluated at `number` (the x-coordinate), byte-wise over GF(2^8).
///
/// Invariant: `number` is in 1...255 (0 would be the secret itself); `value` has the secret's length.
public struct SecretShare: Sendable, Equatable, CustomStringConvertible {
    /// The x-coordinate, 1...255.
    public let number: UInt8
    /// The share bytes (as long as the secret); secret material, so kept in `SecureBytes`.
    public let value: SecureBytes

    /// Throws `invalidShares` when `number` is 0.
    public init(number: UInt8, value: SecureBytes) throws {
        guard number != 0 else {
            throw SecurityError(code: .invalidShares, message: "share number 0 is not allowed (it is the secret)")
        }
        self.number = number
        self.value = value
    }

    public var description: String { "SecretShare(number: \(number), \(value.count) bytes, redacted)" }
}

/// Shamir t-of-n secret sharing over GF(2^8), byte by byte (Debian's libgfshare).
///
/// Any `threshold` distinct shares of a secret reconstruct it; any fewer reveal nothing about it (each byte of
/// the secret is the constant term of an independent random polynomial of degree `threshold - 1`, whose other
/// coefficients come from libsodium's CSPRNG). Share numbers are bytes, so at most 255 shares exist per secret:
/// a secure-aggregation neighbourhood therefore has at most 255 members besides the owner.
///
/// `combine` cannot tell a correct reconstruction from a wrong one: given fewer than `threshold` shares, or a
/// corrupted share, it returns some other secret. Callers that need to know check the result against a
/// commitment (for a key: its public key).
public enum SecretSharing {
    /// The largest number of shares of one secret (share numbers are 1...255).
    public static let maximumShareCount = 255
    /// The largest secret, in bytes (libgfshare has no limit; this one keeps allocations bounded).
    public static let maximumSecretByteCount = 1 << 16

    /// Splits `secret` into one share per entry of `shareNumbers` (distinct, 1...255), any `threshold` of which
    /// reconstruct it. Requires `1 <= threshold <= shareNumbers.count`; throws `invalidShares` otherwise.
    public static func split(_ secret: SecureBytes, threshold: Int, shareNumbers: [UInt8]) throws -> [SecretShare] {
        try GFShare.ensureInitialised()
        try validate(shareNumbers: shareNumbers)
        guard (1...shareNumbers.count).contains(threshold) else {
            throw SecurityError(
                code: .invalidShares,
                message: "threshold \(threshold) must be in 1...\(shareNumbers.count) (the number of shares)")
        }
        guard (1...maximumSecretByteCount).contains(secret.count) else {
            throw SecurityError(
                code: .invalidLength, message: "secret must be 1...\(maximumSecretByteCount) bytes, got \(secret.count)"
            )
        }
        var numbers = shareNumbers
        let size = secret.count
        guard
            let context = numbers.withUnsafeMutableBufferPointer({ buffer in
                gfshare_ctx_init_enc(buffer.baseAddress!, UInt32(buffer.count), UInt8(threshold), UInt32(size))
            })
        else {
            throw SecurityError(code: .operationFailed, message: "gfshare_ctx_init_enc returned NULL")
        }
        // Frees the context; libgfshare overwrites its coefficient buffer (random fill) before freeing.
        defer { gfshare_ctx_free(context) }
        secret.withUnsafeBytes { raw in
            // libgfshare copies the secret (the pointer is not written through despite its type).
            gfshare_ctx_enc_setsecret(
                context, UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: UInt8.self)))
        }
        var shares: [SecretShare] = []
        shares.reserveCapacity(numbers.count)
        for position in numbers.indices {
            var value = SecureBytes(zeros: size)
            value.withUnsafeMutableBytes { raw in
                gfshare_ctx_enc_getshare(context, UInt8(position), raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            shares.append(try SecretShare(number: numbers[position], value: value))
        }
        return shares
    }

    /// Splits the secret key of an X25519 key pair (see `split(_:threshold:shareNumbers:)`); reconstruct with
    /// `KeyAgreementKey(secretKey: SecretSharing.combine(shares))` and check the public key.
    public static func split(secretKeyOf key: KeyAgreementKey, threshold: Int, shareNumbers: [UInt8]) throws
        -> [SecretShare]
    {
        try split(key.secretKey, threshold: threshold, shareNumbers: shareNumbers)
    }

    /// Interpolates the secret from `shares` (distinct numbers, equal lengths, at least one). With at least
    /// `threshold` correct shares the result is the secret; with fewer it is an unrelated value (no error).
    public static func combine(_ shares: [SecretShare]) throws -> SecureBytes {
        try GFShare.ensureInitialised()
        guard let size = shares.first?.value.count else {
            throw SecurityError(code: .invalidShares, message: "no shares to combine")
        }
        guard shares.allSatisfy({ $0.value.count == size }) else {
            throw SecurityError(code: .invalidShares, message: "shares have different lengths")
        }
        guard (1...maximumSecretByteCount).contains(size) else {
            throw SecurityError(
                code: .invalidLength, message: "shares must be 1...\(maximumSecretByteCount) bytes, got \(size)")
        }
        var numbers = shares.map(\.number)
        try validate(shareNumbers: numbers)
        guard
            let context = numbers.withUnsafeMutableBufferPointer({ buffer in
                gfshare_ctx_init_dec(buffer.baseAddress!, UInt32(buffer.count), UInt32(size))
            })
        else {
            throw SecurityError(code: .operationFailed, message: "gfshare_ctx_init_dec returned NULL")
        }
        defer { gfshare_ctx_free(context) }
        for (position, share) in shares.enumerated() {
            share.value.withUnsafeBytes { raw in
                gfshare_ctx_dec_giveshare(
                    context, UInt8(position),
                    UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: UInt8.self)))
            }
        }
        var secret = SecureBytes(zeros: size)
        secret.withUnsafeMutableBytes { raw in
            gfshare_ctx_dec_extract(context, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return secret
    }

    /// 1...255 shares, numbers non-zero and distinct (libgfshare's interpolation divides by their differences).
    private static func validate(shareNumbers: [UInt8]) throws {
        guard (1...maximumShareCount).contains(shareNumbers.count) else {
            throw SecurityError(
                code: .invalidShares, message: "need 1...\(maximumShareCount) shares, got \(shareNumbers.count)")
        }
        var seen = [Bool](repeating: false, count: 256)
        for number in shareNumbers {
            guard number != 0 else {
                throw SecurityError(code: .invalidShares, message: "share number 0 is not allowed")
            }
            guard !seen[Int(number)] else {
                throw SecurityError(code: .invalidShares, message: "share number \(number) appears twice")
            }
            seen[Int(number)] = true
        }
    }
}

/// Points libgfshare's randomness hook at libsodium, exactly once per process, before any share is made.
///
/// libgfshare's default is NULL (and its offered alternative uses `random()`); every coefficient and the
/// wipe-on-free fill must come from `randombytes_buf` instead.
enum GFShare {
    /// Evaluated once; `nil` when the hook is installed, else the error.
    private static let initialisation: SecurityError? = {
        do { try Sodium.ensureInitialised() } catch let error as SecurityError { return error } catch {
            return SecurityError(code: .libraryInitialisationFailed, message: "\(error)")
        }
        cfedrec_gfshare_set_fill_rand { buffer, count in
            guard let buffer, count > 0 else { return }
            randombytes_buf(buffer, Int(count))
        }
        return cfedrec_gfshare_fill_rand() == nil
            ? SecurityError(code: .libraryInitialisationFailed, message: "gfshare_fill_rand could not be set") : nil
    }()

    /// Throws when libsodium or the libgfshare hook could not be set up. Call before any libgfshare function.
    static func ensureInitialised() throws {
        if let error = initialisation { throw error }
    }
}
