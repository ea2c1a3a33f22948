internal import CFedRecSodium

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// Identity files: `NAME.key` holds the secrets (mode 0600), `NAME.pub` the one-line `PublicIdentity`.
///
/// Secret file format (UTF-8 text, `\n` line ends):
/// ```
/// fedrec-identity-v1
/// name NAME
/// ed25519-seed <64 hex digits>
/// x25519-secret <64 hex digits>
/// ```
/// Secret bytes never pass through a Swift `String` or `[UInt8]`: the file is read into `SecureBytes` and hex is
/// converted with libsodium's constant-time `sodium_hex2bin` / `sodium_bin2hex`. A secret file that group or
/// others can access is refused (`insecureKeyFile`), as OpenSSH does.
public enum KeyFiles {
    public static let secretHeader = "fedrec-identity-v1"
    static let maximumSecretFileSize = 4096

    /// Writes `DIR/NAME.key` (0600) and `DIR/NAME.pub` (0644), each atomically (temporary file, then rename).
    /// Refuses to replace existing files unless `overwrite`.
    @discardableResult
    public static func write(_ identity: Identity, directory: String, overwrite: Bool = false) throws
        -> (secretPath: String, publicPath: String)
    {
        let secretPath = directory + "/" + identity.name + ".key"
        let publicPath = directory + "/" + identity.name + ".pub"
        if !overwrite {
            for path in [secretPath, publicPath] where access(path, F_OK) == 0 {
                throw SecurityError(
                    code: .fileSystem,
                    message:
                        "\(path) exists; not replacing it (fedrec keys generate --force, or overwrite: true, replaces it)"
                )
            }
        }
        var chunks: [Chunk] = [
            .text("\(secretHeader)\nname \(identity.name)\ned25519-seed "), .secretHex(identity.signing.seed),
            .text("\nx25519-secret "), .secretHex(identity.keyAgreement.secretKey), .text("\n"),
        ]
        try writeAtomically(path: secretPath, mode: 0o600, chunks: chunks)
        chunks = [.text(identity.publicIdentity.line + "\n")]
        try writeAtomically(path: publicPath, mode: 0o644, chunks: chunks)
        return (secretPath, publicPath)
    }

    /// Loads an identity from a secret key file. Throws `insecureKeyFile` when the file's mode grants any access
    /// to group or others, `invalidKeyFile` (with file, line and field) when it is malformed.
    public static func loadIdentity(path: String) throws -> Identity {
        let contents = try readSecretFile(path: path)
        func bad(_ line: Int, _ why: String) -> SecurityError {
            SecurityError(code: .invalidKeyFile, message: "\(path), line \(line): \(why)")
        }
        var name: String?
        var seed: SecureBytes?
        var kxSecret: SecureBytes?
        var seen: Set<String> = []
        try contents.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var lineNumber = 0
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                lineNumber += 1
                defer { start = end + 1 }
                var lineEnd = end
                if lineEnd > start && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                var space = start
                while space < lineEnd && bytes[space] != UInt8(ascii: " ") && bytes[space] != UInt8(ascii: "\t") {
                    space += 1
                }
                // Field names and the header are public; values of secret fields stay in the buffer. A line whose
                // first word is not a plausible field name may be a secret itself, so it is never quoted.
                guard Self.isFieldName(UnsafeBufferPointer(rebasing: bytes[start..<space])) else {
                    if lineNumber == 1 {
                        throw bad(1, "expected '\(secretHeader)' (is this a secret key file?)")
                    }
                    if lineEnd == start { continue }
                    throw bad(lineNumber, "unrecognised line (contents not shown)")
                }
                let field = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<space]), as: UTF8.self)
                let valueStart = min(space + 1, lineEnd)
                let value = UnsafeBufferPointer(rebasing: bytes[valueStart..<lineEnd])
                if lineNumber == 1 {
                    guard field == secretHeader && space == lineEnd else {
                        throw bad(1, "expected '\(secretHeader)' (is this a secret key file?)")
                    }
                    continue
                }
                guard seen.insert(field).inserted else { throw bad(lineNumber, "field '\(field)' is repeated") }
                switch field {
                case "name":
                    let text = String(decoding: value, as: UTF8.self)
                    do { try PublicIdentity.validate(name: text) } catch let error as SecurityError {
                        throw bad(lineNumber, "field 'name': \(error.message)")
                    }
                    name = text
                case "ed25519-seed":
                    seed =
                        try decodeSecretHex(value, count: 32)
                        ?? { throw bad(lineNumber, "field 'ed25519-seed': expected 64 hex digits") }()
                case "x25519-secret":
                    kxSecret =
                        try decodeSecretHex(value, count: 32)
                        ?? { throw bad(lineNumber, "field 'x25519-secret': expected 64 hex digits") }()
                default:
                    throw bad(lineNumber, "unknown field '\(field)'")
                }
            }
        }
        guard let name else { throw SecurityError(code: .invalidKeyFile, message: "\(path): field 'name' is missing") }
        guard let seed else {
            throw SecurityError(code: .invalidKeyFile, message: "\(path): field 'ed25519-seed' is missing")
        }
        guard let kxSecret else {
            throw SecurityError(code: .invalidKeyFile, message: "\(path): field 'x25519-secret' is missing")
        }
        return try Identity(
            name: name, signing: SigningIdentity(seed: seed), keyAgreement: KeyAgreementKey(secretKey: kxSecret))
    }

    /// Loads a `.pub` file (one allow-list line, comments allowed).
    public static func loadPublicIdentity(path: String) throws -> PublicIdentity {
        let list = try loadAllowList(path: path)
        guard list.entries.count == 1 else {
            throw SecurityError(
                code: .invalidKeyFile, message: "\(path): expected one public identity, found \(list.entries.count)")
        }
        return list.entries[0]
    }

    /// Loads an allow-list file (see `AllowList`).
    public static func loadAllowList(path: String) throws -> AllowList {
        try AllowList.parse(String(decoding: readPublicFile(path: path), as: UTF8.self), file: path)
    }

    /// Whether the file at `path` starts like a secret key file (without parsing or checking its mode).
    public static func isSecretKeyFile(path: String) throws -> Bool {
        let head = try readPublicFile(path: path, limit: secretHeader.utf8.count)
        return head == Array(secretHeader.utf8)
    }

    // MARK: - POSIX helpers

    private enum Chunk {
        case text(String)
        case secretHex(SecureBytes)
    }

    /// Whether `bytes` can be a key-file field name or header: 1 to 32 of `a-z`, `0-9` and `-` (a hex secret on
    /// a line of its own is longer, so it is never mistaken for one and quoted in an error).
    private static func isFieldName(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        (1...32).contains(bytes.count)
            && bytes.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
            }
    }

    private static func posixError(_ operation: String, _ path: String) -> SecurityError {
        let code = errno
        let reason = String(cString: strerror(code))
        return SecurityError(code: .fileSystem, message: "\(operation) \(path): \(reason)")
    }

    private static func writeAtomically(path: String, mode: mode_t, chunks: [Chunk]) throws {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw posixError("cannot create", temporary) }
        var done = false
        defer {
            if !done {
                close(fd)
                unlink(temporary)
            }
        }
        guard fchmod(fd, mode) == 0 else { throw posixError("cannot chmod", temporary) }
        func writeAll(_ pointer: UnsafeRawPointer, _ count: Int) throws {
            var offset = 0
            while offset < count {
                let n = posixWrite(fd, pointer + offset, count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw posixError("cannot write", temporary) }
                offset += n
            }
        }
        for chunk in chunks {
            switch chunk {
            case .text(let text):
                let bytes = Array(text.utf8)
                try bytes.withUnsafeBytes { try writeAll($0.baseAddress!, $0.count) }
            case .secretHex(let secret):
                var hex = SecureBytes(zeros: secret.count * 2 + 1)
                hex.withUnsafeMutableBytes { h in
                    secret.withUnsafeBytes { s in
                        _ = sodium_bin2hex(
                            h.baseAddress!.assumingMemoryBound(to: CChar.self), h.count,
                            s.baseAddress!.assumingMemoryBound(to: UInt8.self), s.count)
                    }
                }
                try hex.withUnsafeBytes { try writeAll($0.baseAddress!, $0.count - 1) }
            }
        }
        guard fsync(fd) == 0 else { throw posixError("cannot sync", temporary) }
        guard close(fd) == 0 else {
            done = true
            unlink(temporary)
            throw posixError("cannot close", temporary)
        }
        done = true
        guard rename(temporary, path) == 0 else {
            let error = posixError("cannot rename to", path)
            unlink(temporary)
            throw error
        }
    }

    private static func readSecretFile(path: String) throws -> SecureBytes {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("cannot open", path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw posixError("cannot stat", path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SecurityError(code: .invalidKeyFile, message: "\(path) is not a regular file")
        }
        let permissions = info.st_mode & 0o777
        guard permissions & 0o077 == 0 else {
            throw SecurityError(
                code: .insecureKeyFile,
                message: "\(path) has mode 0\(String(permissions, radix: 8)): a secret key file must not be accessible "
                    + "by group or others; run 'chmod 600 \(path)'")
        }
        let size = Int(info.st_size)
        guard size <= maximumSecretFileSize else {
            throw SecurityError(code: .invalidKeyFile, message: "\(path) is \(size) bytes, too large for a key file")
        }
        var buffer = SecureBytes(zeros: size)
        try buffer.withUnsafeMutableBytes { b in
            var offset = 0
            while offset < size {
                let n = read(fd, b.baseAddress! + offset, size - offset)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw posixError("cannot read", path) }
                if n == 0 { break }
                offset += n
            }
            guard offset == size else {
                throw SecurityError(code: .fileSystem, message: "\(path) changed size while being read")
            }
        }
        return buffer
    }

    private static func readPublicFile(path: String, limit: Int = 16 << 20) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("cannot open", path) }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while result.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, min($0.count, limit - result.count)) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw posixError("cannot read", path) }
            if n == 0 { break }
            result += chunk[..<n]
        }
        return result
    }

    /// Decodes exactly `count` bytes of hex into `SecureBytes`, or nil.
    private static func decodeSecretHex(_ hex: UnsafeBufferPointer<UInt8>, count: Int) -> SecureBytes? {
        guard hex.count == count * 2, let base = hex.baseAddress else { return nil }
        var output = SecureBytes(zeros: count)
        let ok: Bool = output.withUnsafeMutableBytes { out in
            var length = 0
            var end: UnsafePointer<CChar>? = nil
            let code = base.withMemoryRebound(to: CChar.self, capacity: hex.count) { h in
                sodium_hex2bin(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), count, h, hex.count, nil, &length, &end)
            }
            return code == 0 && length == count
        }
        return ok ? output : nil
    }
}

/// `write(2)` under a name that the `KeyFiles.write` method does not shadow.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
