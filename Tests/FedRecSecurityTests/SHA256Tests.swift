import FedRecSecurity
import Testing

@Suite struct SHA256Tests {
    @Test func knownAnswers() throws {
        // FIPS 180-2 test vectors.
        #expect(SHA256.hex(try SHA256.hash(Array("abc".utf8)))
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(try SHA256.hash([UInt8]()))
            == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func streamingEqualsOneShot() throws {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var hasher = try SHA256Hasher()
        for chunk in stride(from: 0, to: bytes.count, by: 777) {
            try hasher.update(bytes[chunk..<min(chunk + 777, bytes.count)])
        }
        #expect(try hasher.finalize() == SHA256.hash(bytes))
    }
}

@Suite struct SecureBytesTests {
    @Test func comparesContentsAndRedactsDescription() throws {
        let a = SecureBytes(copying: [1, 2, 3])
        var b = a
        #expect(a == b)
        b.withUnsafeMutableBytes { $0[0] = 9 }
        #expect(a != b)  // copy-on-write: `a` is untouched
        #expect(a.withUnsafeBytes { Array($0) } == [1, 2, 3])
        #expect(!a.description.contains("1"))
        let random = try SecureBytes(randomCount: 32)
        #expect(random.count == 32)
        #expect(random != (try SecureBytes(randomCount: 32)))
    }
}
