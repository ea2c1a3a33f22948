import FedRecSecurity
import Foundation
import Testing

@Suite struct KeyFileTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "fedrec-keys-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func writeThenLoadRoundTrips() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let identity = try Identity.generate(name: "client-0001")
        let (secret, pub) = try KeyFiles.write(identity, directory: dir)
        #expect(secret == dir + "/client-0001.key" && pub == dir + "/client-0001.pub")
        #expect(try mode(secret) == 0o600)
        let loaded = try KeyFiles.loadIdentity(path: secret)
        #expect(loaded.publicIdentity == identity.publicIdentity)
        #expect(try KeyFiles.loadPublicIdentity(path: pub) == identity.publicIdentity)
        #expect(try KeyFiles.isSecretKeyFile(path: secret) && !(KeyFiles.isSecretKeyFile(path: pub)))
        // The reloaded keys work: same signatures verify, same session keys.
        let message: [UInt8] = [1, 2, 3]
        try identity.signing.publicKey.verify(loaded.signing.signature(for: message), for: message)
        let server = try KeyAgreementKey()
        #expect(
            try loaded.keyAgreement.clientSessionKeys(serverPublicKey: server.publicKey)
                == identity.keyAgreement.clientSessionKeys(serverPublicKey: server.publicKey))
        // The public file never contains the secret file's hex values.
        let secretText = try String(contentsOfFile: secret, encoding: .utf8)
        let publicText = try String(contentsOfFile: pub, encoding: .utf8)
        let secretValues = secretText.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ")[1] }
        #expect(secretValues.count == 2 && secretValues.allSatisfy { !publicText.contains($0) })
        #expect(!identity.description.contains(secretValues[0]))
        // No overwrite without asking.
        expectCode(.fileSystem) { try KeyFiles.write(identity, directory: dir) }
        try KeyFiles.write(Identity.generate(name: "client-0001"), directory: dir, overwrite: true)
    }

    @Test(arguments: [0o640, 0o604, 0o644, 0o660, 0o601])
    func secretFilesReadableByOthersAreRefused(permissions: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (secret, _) = try KeyFiles.write(Identity.generate(name: "c"), directory: dir)
        try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: secret)
        do {
            _ = try KeyFiles.loadIdentity(path: secret)
            Issue.record("loaded a key file with mode \(String(permissions, radix: 8))")
        } catch let error as SecurityError {
            #expect(error.code == .insecureKeyFile)
            #expect(error.message.contains("chmod 600") && error.message.contains(secret))
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: secret)
        _ = try KeyFiles.loadIdentity(path: secret)
    }

    @Test func malformedSecretFilesNameLineAndField() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/bad.key"
        /// `hidden`: text the error must not show (a secret).
        func check(_ text: String, _ fragment: String, hiding hidden: String? = nil) throws {
            _ = FileManager.default.createFile(
                atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
            do {
                _ = try KeyFiles.loadIdentity(path: path)
                Issue.record("loaded \(text)")
            } catch let error as SecurityError {
                #expect(error.code == .invalidKeyFile)
                #expect(error.message.contains(fragment), "\(error.message)")
                if let hidden { #expect(!error.message.contains(hidden) && !error.description.contains(hidden)) }
            }
            try FileManager.default.removeItem(atPath: path)
        }
        let hex = String(repeating: "ab", count: 32)
        try check("nonsense\n", "line 1")
        try check(
            "fedrec-identity-v1\nname x\ned25519-seed \(hex.dropLast())\nx25519-secret \(hex)\n",
            "line 3: field 'ed25519-seed'")
        try check(
            "fedrec-identity-v1\nname x\ned25519-seed \(hex)\nx25519-secret zz\(hex.dropFirst(2))\n",
            "line 4: field 'x25519-secret'")
        try check("fedrec-identity-v1\nname x\ned25519-seed \(hex)\n", "'x25519-secret' is missing")
        try check(
            "fedrec-identity-v1\nname bad name\ned25519-seed \(hex)\nx25519-secret \(hex)\n", "line 2: field 'name'")
        try check("fedrec-identity-v1\ncolour blue\n", "line 2: unknown field 'colour'")
        // The header must be the first physical line; fields may not repeat.
        try check("\nfedrec-identity-v1\nname x\ned25519-seed \(hex)\nx25519-secret \(hex)\n", "line 1: expected")
        try check(
            "fedrec-identity-v1\nname x\nname y\ned25519-seed \(hex)\nx25519-secret \(hex)\n",
            "line 3: field 'name' is repeated")
        // A line that may be a secret (a bare value, or a field name set off by something other than a space or a
        // tab) is refused without quoting it.
        let secret = String(repeating: "5e", count: 32)
        for line in [secret, "ed25519-seed:\(secret)", "ed25519-seed\u{0B}\(secret)"] {
            try check(
                "fedrec-identity-v1\nname x\n\(line)\nx25519-secret \(hex)\n",
                "line 3: unrecognised line (contents not shown)", hiding: "5e5e")
        }
        // A tab separates a field from its value as a space does.
        _ = FileManager.default.createFile(
            atPath: path, contents: Data("fedrec-identity-v1\nname\tx\ned25519-seed\t\(hex)\nx25519-secret \(hex)\n".utf8),
            attributes: [.posixPermissions: 0o600])
        #expect(try KeyFiles.loadIdentity(path: path).name == "x")
    }

    @Test func allowListParsesCommentsAndRejectsDuplicates() throws {
        let a = try Identity.generate(name: "alice").publicIdentity
        let b = try Identity.generate(name: "bob").publicIdentity
        let list = try AllowList.parse("# clients\n\(a.line)\n\n\(b.line)  # second\n", file: "allow")
        #expect(list.entries == [a, b])
        try list.check(a)
        #expect(try list.identity(named: "bob") == b)
        expectCode(.unknownIdentity) { _ = try list.identity(named: "mallory") }
        let impostor = try PublicIdentity(name: "alice", signingKey: b.signingKey, keyAgreementKey: b.keyAgreementKey)
        expectCode(.unknownIdentity) { try list.check(impostor) }
        #expect(try AllowList.parse(list.text, file: "again") == list)
        // Windows line endings parse as Unix ones.
        #expect(try AllowList.parse("\(a.line)\r\n# c\r\n\r\n\(b.line)\r\n", file: "crlf") == list)
        #expect(try PublicIdentity(line: a.line + "\r") == a)
        do {
            _ = try AllowList.parse("\(a.line)\n\(a.line)\n", file: "dup")
            Issue.record("duplicate accepted")
        } catch let error as SecurityError {
            #expect(error.code == .invalidKeyFile && error.message.hasPrefix("dup, line 2"))
        }
        do {
            _ = try AllowList.parse("\(a.line)\nbob ed25519:xyz x25519:00\n", file: "bad")
            Issue.record("bad line accepted")
        } catch let error as SecurityError {
            #expect(error.code == .invalidKeyFile && error.message.hasPrefix("bad, line 2: field 'ed25519'"))
        }
    }
}
