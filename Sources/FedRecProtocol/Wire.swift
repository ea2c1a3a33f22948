public import FedRecSecurity
import Foundation
public import GRPCCore

/// Domain <-> wire conversions shared by the coordinator and the client.
public enum Wire {
    /// The identity name (client id) of a data-set user's virtual client.
    public static func clientID(forUser userID: String) -> String { "user-\(userID)" }

    /// SHA-256 of the run's terms a client learns, in the clear, at enrolment: the model configuration (JSON, as
    /// sent) and the fold. Every round's sealed model carries it (`GlobalModelPayload.runTerms`), so a client
    /// detects an enrol answer altered on the way.
    public static func runTermsDigest(modelConfigurationJSON: String, fold: String) throws -> [UInt8] {
        try SHA256.hash(Array("fedrec-run-terms-v1\n\(modelConfigurationJSON)\n\(fold)".utf8))
    }

    /// The client id in the header of a round's shared model envelope (kind `roundModel`): it is sealed for the
    /// whole cohort, not for one client. Not a valid user client id (those start with "user-").
    public static let cohortAudience = "cohort"

    public static func payloadInfo(_ plan: ChunkPlan) -> Fedrec_V1_PayloadInfo {
        .with {
            $0.totalLength = UInt64(plan.totalLength)
            $0.chunkCount = UInt32(plan.chunkCount)
        }
    }

    public static func plan(_ info: Fedrec_V1_PayloadInfo) -> ChunkPlan {
        ChunkPlan(
            totalLength: Int(clamping: info.totalLength), chunkCount: Int(info.chunkCount))
    }

    /// Metadata key of a failed `SubmitUpdate`: how many of the stream's messages were accepted nonetheless.
    public static let acceptedMetadataKey = "fedrec-accepted"
    /// Metadata key of a failed `SubmitUpdate`, one binary value per refused message: the client id its header
    /// named (UTF-8), in stream order. Binary, because a refused header's id is untrusted text.
    public static let refusedMetadataKey = "fedrec-refused-bin"

    /// Which of the messages of a failed `SubmitUpdate` call the coordinator took, from the client ids of the
    /// messages written (in order, one message per client) and the failure's metadata. The coordinator reads the
    /// stream in order and stops at a break, so the taken messages are the first `accepted` ones not refused;
    /// without an accepted count (the call failed in transport) none is known to be taken.
    public static func takenClients(written: [String], failure metadata: Metadata) -> [String] {
        guard let count = metadata[stringValues: acceptedMetadataKey].first(where: { _ in true }).flatMap({ Int($0) }),
            count > 0
        else { return [] }
        var refused: [String: Int] = [:]
        for value in metadata[binaryValues: refusedMetadataKey] {
            refused[String(decoding: value, as: UTF8.self), default: 0] += 1
        }
        var taken: [String] = []
        for id in written where taken.count < count {
            if let left = refused[id], left > 0 {
                refused[id] = left - 1
            } else {
                taken.append(id)
            }
        }
        return taken
    }

    /// The messages of one sealed update: the header, with its `HeaderProof` under `proofKey` (the client's
    /// `SessionKeys.transmit`), then the chunks.
    public static func updateMessages(
        envelope: [UInt8], clientID: String, round: Int, attempt: Int, proofKey: SymmetricKey,
        chunkSize: Int = ChunkPlan.defaultChunkSize
    ) throws -> [Fedrec_V1_UpdateMessage] {
        let (plan, chunks) = Chunker.split(envelope, chunkSize: chunkSize)
        var header = Fedrec_V1_UpdateHeader.with {
            $0.clientID = clientID
            $0.round = UInt64(round)
            $0.attempt = UInt32(attempt)
            $0.payload = payloadInfo(plan)
        }
        header.proof = try HeaderProof.make(header, key: proofKey)
        var messages: [Fedrec_V1_UpdateMessage] = [.with { $0.header = header }]
        for (index, chunk) in chunks.enumerated() {
            messages.append(
                .with {
                    $0.data = .with {
                        $0.index = UInt32(index)
                        $0.data = Data(chunk)
                    }
                })
        }
        return messages
    }

    /// Maps a security failure while opening an envelope to the protocol error the coordinator logs.
    public static func openingError(_ error: SecurityError, client: String, round: Int) -> ProtocolError {
        switch error.code {
        case .replayedMessage, .outOfOrderMessage:
            ProtocolError(code: .replayed, message: error.message, client: client, round: round)
        case .malformedMessage, .invalidLength:
            ProtocolError(code: .malformedPayload, message: error.message, client: client, round: round)
        default:
            ProtocolError(code: .authenticationFailed, message: error.message, client: client, round: round)
        }
    }
}
