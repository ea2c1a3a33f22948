/// A participant's long-term keys: an Ed25519 signing identity and an X25519 key-agreement key, under a name
/// (the client id the coordinator knows it by).
public struct Identity: Sendable, CustomStringConvertible {
    public let name: String
    public let signing: SigningIdentity
    public let keyAgreement: KeyAgreementKey

    public init(name: String, signing: SigningIdentity, keyAgreement: KeyAgreementKey) throws {
        try PublicIdentity.validate(name: name)
        self.name = name
        self.signing = signing
        self.keyAgreement = keyAgreement
    }

    /// Fresh random keys.
    public static func generate(name: String) throws -> Identity {
        try Identity(name: name, signing: SigningIdentity(), keyAgreement: KeyAgreementKey())
    }

    /// The shareable half.
    public var publicIdentity: PublicIdentity {
        PublicIdentity(uncheckedName: name, signingKey: signing.publicKey, keyAgreementKey: keyAgreement.publicKey)
    }

    public var description: String { "Identity(\(publicIdentity.line), secrets redacted)" }
}

/// The public keys of an identity, as one allow-list line: `NAME ed25519:<64 hex> x25519:<64 hex>`.
///
/// A `.pub` file is exactly one such line, so an allow-list can be built with `cat clients/*.pub`.
public struct PublicIdentity: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let signingKey: SigningPublicKey
    public let keyAgreementKey: KeyAgreementPublicKey

    public init(name: String, signingKey: SigningPublicKey, keyAgreementKey: KeyAgreementPublicKey) throws {
        try Self.validate(name: name)
        self.init(uncheckedName: name, signingKey: signingKey, keyAgreementKey: keyAgreementKey)
    }

    init(uncheckedName name: String, signingKey: SigningPublicKey, keyAgreementKey: KeyAgreementPublicKey) {
        self.name = name
        self.signingKey = signingKey
        self.keyAgreementKey = keyAgreementKey
    }

    /// Parses one allow-list line (already stripped of comments). Throws `invalidKeyFile` naming the field.
    public init(line: String) throws {
        func bad(_ why: String) -> SecurityError { SecurityError(code: .invalidKeyFile, message: why) }
        let fields = line.split(whereSeparator: \.isWhitespace)  // spaces, tabs, and a CRLF file's "\r"
        guard fields.count == 3 else {
            throw bad("expected 'NAME ed25519:<hex> x25519:<hex>', got \(fields.count) field(s)")
        }
        func key(_ field: Substring, prefix: String) throws -> [UInt8] {
            guard field.hasPrefix(prefix) else {
                throw bad("field '\(prefix.dropLast())': expected '\(prefix)<64 hex digits>'")
            }
            guard let bytes = Hex.decode(field.dropFirst(prefix.count)), bytes.count == 32 else {
                throw bad("field '\(prefix.dropLast())': expected 64 hex digits")
            }
            return bytes
        }
        let name = String(fields[0])
        do { try Self.validate(name: name) } catch let error as SecurityError { throw bad(error.message) }
        self.init(
            uncheckedName: name,
            signingKey: try SigningPublicKey(rawRepresentation: key(fields[1], prefix: "ed25519:")),
            keyAgreementKey: try KeyAgreementPublicKey(rawRepresentation: key(fields[2], prefix: "x25519:")))
    }

    /// The allow-list line (no newline).
    public var line: String {
        "\(name) ed25519:\(Hex.encode(signingKey.rawRepresentation)) x25519:\(Hex.encode(keyAgreementKey.rawRepresentation))"
    }

    /// A short fingerprint for logs and humans: the first 16 hex digits of SHA-256 over both public keys.
    public var fingerprint: String {
        let digest = (try? SHA256.hash(signingKey.rawRepresentation + keyAgreementKey.rawRepresentation)) ?? []
        return String(Hex.encode(digest).prefix(16))
    }

    public var description: String { line }

    /// Whether `name` is a valid identity name (see `validate(name:)`).
    public static func isValidName(_ name: String) -> Bool { (try? validate(name: name)) != nil }

    /// Names are client ids: 1...64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
    static func validate(name: String) throws {
        let allowed = name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard (1...64).contains(name.utf8.count), allowed, !name.hasPrefix("."), !name.hasPrefix("-") else {
            throw SecurityError(
                code: .invalidKeyFile,
                message: "name '\(name)' must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with '.' or '-'")
        }
    }
}

/// The coordinator's allow-list: the public identities it accepts, by name.
///
/// Text format: one `PublicIdentity.line` per line; blank lines and `#` comments are ignored; a name or a
/// signing key may appear only once.
public struct AllowList: Sendable, Hashable {
    public private(set) var entries: [PublicIdentity] = []
    private var indexByName: [String: Int] = [:]

    public init(_ entries: [PublicIdentity] = []) throws {
        for entry in entries { try add(entry) }
    }

    /// Whether `name` is listed.
    public func contains(name: String) -> Bool { indexByName[name] != nil }

    /// Adds an identity; throws `invalidKeyFile` when its name or signing key is already listed.
    public mutating func add(_ entry: PublicIdentity) throws {
        guard indexByName[entry.name] == nil else {
            throw SecurityError(code: .invalidKeyFile, message: "name '\(entry.name)' is listed twice")
        }
        guard !entries.contains(where: { $0.signingKey == entry.signingKey }) else {
            throw SecurityError(code: .invalidKeyFile, message: "the signing key of '\(entry.name)' is listed twice")
        }
        indexByName[entry.name] = entries.count
        entries.append(entry)
    }

    public subscript(name: String) -> PublicIdentity? { indexByName[name].map { entries[$0] } }

    /// The listed identity called `name`, or `unknownIdentity`.
    public func identity(named name: String) throws -> PublicIdentity {
        guard let entry = self[name] else {
            throw SecurityError(code: .unknownIdentity, message: "'\(name)' is not on the allow-list")
        }
        return entry
    }

    /// Throws `unknownIdentity` unless exactly this identity (name and both keys) is listed.
    public func check(_ identity: PublicIdentity) throws {
        guard self[identity.name] == identity else {
            throw SecurityError(
                code: .unknownIdentity,
                message: "'\(identity.name)' (\(identity.fingerprint)) is not on the allow-list with these keys")
        }
    }

    /// Parses allow-list text; errors name `file` and the 1-based line.
    public static func parse(_ text: String, file: String) throws -> AllowList {
        var list = try AllowList()
        // Split on scalars, not Characters: "\r\n" is one Character and would never match "\n".
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (number, rawLine) in lines.enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            guard line.contains(where: { !$0.isWhitespace }) else { continue }
            do {
                try list.add(PublicIdentity(line: String(line)))
            } catch let error as SecurityError {
                throw SecurityError(code: error.code, message: "\(file), line \(number + 1): \(error.message)")
            }
        }
        return list
    }

    /// The text form (one line per identity).
    public var text: String { entries.map { $0.line + "\n" }.joined() }
}

/// Lower-case hex of public data (keys, digests). Secret bytes go through libsodium's constant-time helpers.
enum Hex {
    static func encode(_ bytes: [UInt8]) -> String { SHA256.hex(bytes) }

    static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }
}
