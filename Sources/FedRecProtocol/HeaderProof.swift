public import FedRecSecurity
public import Foundation

/// The tag an `UpdateHeader` carries (update and secure-stage messages alike).
///
/// The coordinator stores one message per named client at a time, and a message's envelope authenticates its
/// client only with the last chunk. Without this tag a sender holding no key could name an enrolled client,
/// stall, and hold that client's place until its call is cut, so that the client's genuine message is refused
/// meanwhile. With it, the place is taken only by a header sealed under the client's session key (client to
/// coordinator): an XChaCha20-Poly1305 tag over an empty plaintext, with every field of the header (client id,
/// round, attempt, the payload's length and chunk count) as associated data. A copy replays only a header the
/// client itself sent for that round and attempt, whose message the replay guard takes once.
public enum HeaderProof {
    /// Nonce and tag: an empty plaintext seals to nothing else.
    public static let byteCount = KeyProof.byteCount

    static func associatedData(_ header: Fedrec_V1_UpdateHeader) -> [UInt8] {
        var bytes = Array("fedrec-update-header-v1".utf8)
        func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
        let id = Array(header.clientID.utf8)
        u64(UInt64(id.count))
        bytes += id
        u64(header.round)
        u64(UInt64(header.attempt))
        u64(header.payload.totalLength)
        u64(UInt64(header.payload.chunkCount))
        return bytes
    }

    /// The proof of `header` (its `proof` field ignored) under `key`, the client's `SessionKeys.transmit`.
    public static func make(_ header: Fedrec_V1_UpdateHeader, key: SymmetricKey) throws -> Data {
        try KeyProof.make(key: key, authenticating: associatedData(header))
    }

    /// Whether `header.proof` authenticates the header under `key`, the coordinator's `SessionKeys.receive` of
    /// the named client.
    public static func verifies(_ header: Fedrec_V1_UpdateHeader, key: SymmetricKey) -> Bool {
        KeyProof.verifies(header.proof, key: key, authenticating: associatedData(header))
    }
}
