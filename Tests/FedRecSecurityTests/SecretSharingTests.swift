import FedRecSecurity
import FedRecTensor
import PropertyBased
import Testing

/// `count` secret bytes drawn from a seeded generator.
private func secretBytes(_ count: Int, _ rng: inout SplitMix64) -> SecureBytes {
    SecureBytes(copying: (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
}

/// `count` distinct share numbers in 1...255, in random order.
private func shareNumbers(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
    var all = Array(UInt8(1)...UInt8(255))
    for i in stride(from: all.count - 1, to: 0, by: -1) { all.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    return Array(all.prefix(count))
}

/// A random subset of `count` elements of `shares`.
private func subset(_ shares: [SecretShare], _ count: Int, _ rng: inout SplitMix64) -> [SecretShare] {
    var copy = shares
    for i in stride(from: copy.count - 1, to: 0, by: -1) { copy.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    return Array(copy.prefix(count))
}

private func expectSecurityError(
    _ code: SecurityError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected \(code), nothing thrown", sourceLocation: sourceLocation)
    } catch let error as SecurityError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected SecurityError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct SecretSharingTests {
    /// Any t of k shares give the secret back; any t - 1 give something else (for 16+ byte secrets a collision
    /// has probability 2^-128); more than t also reconstruct.
    @Test func anyThresholdSubsetReconstructsAndFewerDoNot() async throws {
        await propertyCheck(count: 150, input: Gen.int(in: 1...40), Gen.int(in: 16...64), Gen.int(in: 0...1_000_000)) {
            shareCount, length, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            let threshold = 1 + Int(rng.next() % UInt64(shareCount))
            let secret = secretBytes(length, &rng)
            let shares = try SecretSharing.split(
                secret, threshold: threshold, shareNumbers: shareNumbers(shareCount, &rng))
            #expect(shares.count == shareCount)
            #expect(shares.allSatisfy { $0.value.count == length })
            #expect(try SecretSharing.combine(subset(shares, threshold, &rng)) == secret)
            let extra = threshold + Int(rng.next() % UInt64(shareCount - threshold + 1))
            #expect(try SecretSharing.combine(subset(shares, extra, &rng)) == secret)
            if threshold >= 2 {
                #expect(try SecretSharing.combine(subset(shares, threshold - 1, &rng)) != secret)
            }
        }
    }

    /// The largest sharing libgfshare allows: 255 shares, threshold 128.
    @Test func twoHundredFiftyFiveShares() throws {
        var rng = SplitMix64(seed: 255)
        let secret = secretBytes(32, &rng)
        let shares = try SecretSharing.split(secret, threshold: 128, shareNumbers: Array(1...255))
        #expect(try SecretSharing.combine(subset(shares, 128, &rng)) == secret)
        #expect(try SecretSharing.combine(subset(shares, 127, &rng)) != secret)
    }

    /// The coefficients are random: two sharings of one secret differ (t >= 2), yet both reconstruct it.
    @Test func sharingsAreRandomised() throws {
        let secret = try SecureBytes(randomCount: 32)
        let a = try SecretSharing.split(secret, threshold: 3, shareNumbers: [1, 2, 3, 4])
        let b = try SecretSharing.split(secret, threshold: 3, shareNumbers: [1, 2, 3, 4])
        #expect(a[0].value != b[0].value)
        #expect(try SecretSharing.combine(Array(a.prefix(3))) == SecretSharing.combine(Array(b.suffix(3))))
    }

    /// A shared X25519 secret key reconstructs to the same key pair.
    @Test func keyAgreementSecretKeyRoundTrips() throws {
        let key = try KeyAgreementKey()
        let shares = try SecretSharing.split(secretKeyOf: key, threshold: 2, shareNumbers: [7, 9, 200])
        let rebuilt = try KeyAgreementKey(secretKey: SecretSharing.combine([shares[2], shares[0]]))
        #expect(rebuilt.publicKey == key.publicKey)
    }

    @Test func invalidRequestsAreRefused() throws {
        let secret = try SecureBytes(randomCount: 32)
        expectSecurityError(.invalidShares) { _ = try SecretSharing.split(secret, threshold: 0, shareNumbers: [1, 2]) }
        expectSecurityError(.invalidShares) { _ = try SecretSharing.split(secret, threshold: 3, shareNumbers: [1, 2]) }
        expectSecurityError(.invalidShares) { _ = try SecretSharing.split(secret, threshold: 1, shareNumbers: [0, 2]) }
        expectSecurityError(.invalidShares) { _ = try SecretSharing.split(secret, threshold: 1, shareNumbers: [4, 4]) }
        expectSecurityError(.invalidShares) { _ = try SecretSharing.split(secret, threshold: 1, shareNumbers: []) }
        expectSecurityError(.invalidShares) {
            _ = try SecretSharing.split(secret, threshold: 1, shareNumbers: Array(repeating: 1, count: 256))
        }
        expectSecurityError(.invalidLength) {
            _ = try SecretSharing.split(SecureBytes(zeros: 0), threshold: 1, shareNumbers: [1])
        }
        expectSecurityError(.invalidShares) { _ = try SecretShare(number: 0, value: secret) }
        expectSecurityError(.invalidShares) { _ = try SecretSharing.combine([]) }
        let shares = try SecretSharing.split(secret, threshold: 2, shareNumbers: [1, 2, 3])
        expectSecurityError(.invalidShares) { _ = try SecretSharing.combine([shares[0], shares[0]]) }
        let short = try SecretShare(number: 9, value: SecureBytes(zeros: 31))
        expectSecurityError(.invalidShares) { _ = try SecretSharing.combine([shares[0], short]) }
    }

    @Test func sharesNeverPrintTheirBytes() throws {
        let share = try SecretShare(number: 3, value: SecureBytes(copying: [0xAB, 0xCD]))
        #expect(!"\(share)".lowercased().contains("ab"))
        #expect("\(share)".contains("redacted"))
    }
}
