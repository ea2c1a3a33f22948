import FedRecSecurity
import Testing

/// Seeded generator for test inputs (SplitMix64).
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

func flipping(_ bytes: [UInt8], bit: Int) -> [UInt8] {
    var copy = bytes
    copy[bit / 8] ^= 1 << UInt8(bit % 8)
    return copy
}

func expectCode(
    _ code: SecurityError.Code, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        try body()
        Issue.record("expected \(code), nothing thrown", sourceLocation: sourceLocation)
    } catch let error as SecurityError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct AEADTests {
    @Test func knownAnswerFromLibsodiumDraft() throws {
        // draft-irtf-cfrg-xchacha-03, appendix A.3.1 (XChaCha20-Poly1305 AEAD).
        let plaintext = Array(
            "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
                .utf8)
        let ad: [UInt8] = [0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7]
        let key = try SymmetricKey(SecureBytes(copying: (0x80...0x9f).map { UInt8($0) }))
        let nonce = try AEAD.Nonce(bytes: (0x40...0x57).map { UInt8($0) })
        let box = try AEAD.seal(plaintext, using: key, nonce: nonce, authenticating: ad)
        #expect(SHA256.hex(Array(box.tag)) == "c0875924c1c7987947deafd8780acf49")
        #expect(SHA256.hex(Array(box.ciphertext.prefix(16))) == "bd6d179d3e83d43b9576579493c0e939")
        #expect(try AEAD.open(box, using: key, authenticating: ad) == plaintext)
    }

    @Test(arguments: [0, 1, 17, 200])
    func roundTripAndCombinedLayout(length: Int) throws {
        var rng = TestRNG(seed: UInt64(length))
        let key = try SymmetricKey()
        let message = rng.bytes(length)
        let ad = rng.bytes(length % 7)
        let box = try AEAD.seal(message, using: key, authenticating: ad)
        #expect(box.combined.count == AEAD.nonceByteCount + length + AEAD.tagByteCount)
        #expect(Array(box.combined.prefix(24)) == box.nonce.bytes)
        let parsed = try AEAD.SealedBox(combined: box.combined)
        #expect(try AEAD.open(parsed, using: key, authenticating: ad) == message)
        #expect(try AEAD.openSecret(parsed, using: key, authenticating: ad).withUnsafeBytes { Array($0) } == message)
        #expect(try AEAD.seal(message, using: key, authenticating: ad).nonce != box.nonce)  // random nonces
    }

    /// Property: flipping any single bit of the combined box, the associated data or the key makes open fail
    /// with `authenticationFailed` (exhaustively over every bit, for several random messages).
    @Test(arguments: [1, 2, 3])
    func everySingleBitFlipFailsToOpen(seed: UInt64) throws {
        var rng = TestRNG(seed: seed)
        let keyBytes = rng.bytes(32)
        let key = try SymmetricKey(SecureBytes(copying: keyBytes))
        let message = rng.bytes(Int(rng.next() % 24))
        let ad = rng.bytes(1 + Int(rng.next() % 12))
        let combined = try AEAD.seal(message, using: key, authenticating: ad).combined
        #expect(try AEAD.open(AEAD.SealedBox(combined: combined), using: key, authenticating: ad) == message)
        for bit in 0..<(combined.count * 8) {
            expectCode(.authenticationFailed) {
                _ = try AEAD.open(
                    AEAD.SealedBox(combined: flipping(combined, bit: bit)), using: key, authenticating: ad)
            }
        }
        for bit in 0..<(ad.count * 8) {
            expectCode(.authenticationFailed) {
                _ = try AEAD.open(
                    AEAD.SealedBox(combined: combined), using: key, authenticating: flipping(ad, bit: bit))
            }
        }
        for bit in 0..<(keyBytes.count * 8) {
            let wrong = try SymmetricKey(SecureBytes(copying: flipping(keyBytes, bit: bit)))
            expectCode(.authenticationFailed) {
                _ = try AEAD.open(AEAD.SealedBox(combined: combined), using: wrong, authenticating: ad)
            }
        }
    }

    @Test("wipe zeroes a byte array in place and keeps its count; a shared copy keeps its bytes")
    func wipeZeroesInPlace() {
        var bytes: [UInt8] = (1...40).map { UInt8($0) }
        let shared = bytes
        bytes.wipe()
        #expect(bytes == [UInt8](repeating: 0, count: 40))
        #expect(shared == (1...40).map { UInt8($0) })
        var empty: [UInt8] = []
        empty.wipe()
        #expect(empty.isEmpty)
    }

    @Test func truncatedBoxesFail() throws {
        let key = try SymmetricKey()
        let combined = try AEAD.seal(Array("hello, federated world".utf8), using: key).combined
        for length in 0..<combined.count {
            do {
                _ = try AEAD.open(AEAD.SealedBox(combined: combined.prefix(length)), using: key)
                Issue.record("truncated box of \(length) bytes opened")
            } catch let error as SecurityError {
                #expect(error.code == (length < 40 ? .malformedMessage : .authenticationFailed))
            }
        }
        // Appended bytes fail too.
        expectCode(.authenticationFailed) { _ = try AEAD.open(AEAD.SealedBox(combined: combined + [0]), using: key) }
    }

    @Test func keysAndNoncesCheckLengths() throws {
        expectCode(.invalidLength) { _ = try SymmetricKey(SecureBytes(zeros: 31)) }
        expectCode(.invalidLength) { _ = try AEAD.Nonce(bytes: [UInt8](repeating: 0, count: 12)) }
        #expect(!(try SymmetricKey()).description.contains("0"))
    }
}

@Suite struct SigningTests {
    @Test func rfc8032TestVector1() throws {
        // RFC 8032, section 7.1, TEST 1 (empty message).
        let seed = Hex.bytes("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let identity = try SigningIdentity(seed: SecureBytes(copying: seed))
        #expect(identity.publicKey.description == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = try identity.signature(for: [UInt8]())
        #expect(
            SHA256.hex(signature) == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                + "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    }

    @Test(arguments: [0, 1, 100])
    func signVerifyRoundTripAndForgeries(length: Int) throws {
        var rng = TestRNG(seed: 7 + UInt64(length))
        let identity = try SigningIdentity()
        let other = try SigningIdentity()
        let message = rng.bytes(length)
        let signature = try identity.signature(for: message)
        try identity.publicKey.verify(signature, for: message)
        #expect(identity.publicKey.isValidSignature(signature, for: message))
        #expect(!other.publicKey.isValidSignature(signature, for: message))
        expectCode(.invalidSignature) { try other.publicKey.verify(signature, for: message) }
        for bit in stride(from: 0, to: signature.count * 8, by: 3) {
            expectCode(.invalidSignature) { try identity.publicKey.verify(flipping(signature, bit: bit), for: message) }
        }
        for bit in 0..<(message.count * 8) where bit % 5 == 0 {
            expectCode(.invalidSignature) { try identity.publicKey.verify(signature, for: flipping(message, bit: bit)) }
        }
        expectCode(.invalidSignature) { try identity.publicKey.verify(Array(signature.dropLast()), for: message) }
        expectCode(.invalidLength) { _ = try SigningPublicKey(rawRepresentation: [UInt8](repeating: 1, count: 31)) }
    }

    @Test func seedDeterminesTheKeyPair() throws {
        let seed = try SecureBytes(randomCount: 32)
        #expect(try SigningIdentity(seed: seed).publicKey == SigningIdentity(seed: seed).publicKey)
        #expect(!(try SigningIdentity(seed: seed)).description.contains(seed.withUnsafeBytes { SHA256.hex(Array($0)) }))
    }
}

@Suite struct KeyAgreementTests {
    @Test(arguments: 0..<4)
    func clientAndServerDeriveMatchingDirectionalKeys(trial: Int) throws {
        let client = try KeyAgreementKey()
        let server = try KeyAgreementKey()
        let c = try client.clientSessionKeys(serverPublicKey: server.publicKey)
        let s = try server.serverSessionKeys(clientPublicKey: client.publicKey)
        #expect(c.transmit == s.receive)
        #expect(c.receive == s.transmit)
        #expect(c.transmit != c.receive)
        // Bound to the pinned server key: a different server gives different keys.
        let impostor = try KeyAgreementKey()
        #expect(try client.clientSessionKeys(serverPublicKey: impostor.publicKey).transmit != c.transmit)
        // A sealed message from client to server opens with the server's receive key only.
        let box = try AEAD.seal([1, 2, 3] as [UInt8], using: c.transmit)
        #expect(try AEAD.open(box, using: s.receive) == [1, 2, 3])
        expectCode(.authenticationFailed) { _ = try AEAD.open(box, using: s.transmit) }
    }

    @Test func secretKeyReloadsToTheSamePublicKey() throws {
        let key = try KeyAgreementKey()
        let copy = try KeyAgreementKey(secretKey: SecureBytes(randomCount: 32))
        #expect(copy.publicKey != key.publicKey)
        // Reloading from files is covered by KeyFileTests.
    }

    @Test func smallOrderPeerKeyIsRejected() throws {
        let client = try KeyAgreementKey()
        let zero = try KeyAgreementPublicKey(rawRepresentation: [UInt8](repeating: 0, count: 32))
        expectCode(.invalidPublicKey) { _ = try client.clientSessionKeys(serverPublicKey: zero) }
    }
}

enum Hex {
    static func bytes(_ text: String) -> [UInt8] {
        var result: [UInt8] = []
        var chars = Array(text.utf8)[...]
        while chars.count >= 2 {
            result.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
            chars = chars.dropFirst(2)
        }
        return result
    }
}
