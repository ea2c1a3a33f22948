public import FedRecSecurity

/// What an enrolling client signs: it binds the coordinator's single-use challenge, the client's id and both of
/// its public keys, and the coordinator's pinned public keys, so a signature cannot be replayed to another
/// coordinator, for another id or with swapped keys.
///
/// Layout: `"fedrec-enrol-v1"` | challenge (32) | id length (u8) | id (UTF-8) | client Ed25519 (32) |
/// client X25519 (32) | coordinator Ed25519 (32) | coordinator X25519 (32).
public enum EnrolmentTranscript {
    public static let challengeByteCount = 32

    public static func bytes(challenge: [UInt8], client: PublicIdentity, coordinator: PublicIdentity) -> [UInt8] {
        var out = Array("fedrec-enrol-v1".utf8)
        out += challenge
        let id = Array(client.name.utf8)
        out.append(UInt8(truncatingIfNeeded: id.count))
        out += id
        out += client.signingKey.rawRepresentation
        out += client.keyAgreementKey.rawRepresentation
        out += coordinator.signingKey.rawRepresentation
        out += coordinator.keyAgreementKey.rawRepresentation
        return out
    }

    /// The client side: a signature over the transcript with the client's Ed25519 key.
    public static func sign(challenge: [UInt8], identity: Identity, coordinator: PublicIdentity) throws -> [UInt8] {
        try identity.signing.signature(
            for: bytes(challenge: challenge, client: identity.publicIdentity, coordinator: coordinator))
    }

    /// The coordinator side: the claimed identity must be on `allowList` with exactly these keys and the
    /// signature must verify. Throws `enrolmentRefused` (naming the client) otherwise.
    public static func verify(
        challenge: [UInt8], claimed: PublicIdentity, signature: [UInt8], coordinator: PublicIdentity,
        allowList: AllowList
    ) throws {
        do {
            try allowList.check(claimed)
        } catch let error as SecurityError {
            throw ProtocolError(code: .enrolmentRefused, message: error.message, client: claimed.name)
        }
        guard
            claimed.signingKey.isValidSignature(
                signature, for: bytes(challenge: challenge, client: claimed, coordinator: coordinator))
        else {
            throw ProtocolError(code: .enrolmentRefused, message: "signature does not verify", client: claimed.name)
        }
    }
}
