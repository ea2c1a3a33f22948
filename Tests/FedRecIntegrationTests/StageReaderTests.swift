import Foundation
import GRPCCore
import GRPCInProcessTransport
import Testing

@testable import FedRecClient
@testable import FedRecProtocol

/// The client's reader of `GetStage` answers, fed message sequences directly (no network).
@Suite("GetStage answer reader")
struct StageReaderTests {
    static let chunkSize = 4

    /// The messages carrying `payload` for `client`: a stage header, then its chunks.
    static func input(_ payload: [UInt8], for client: String) -> [Fedrec_V1_RoundMessage] {
        let (plan, chunks) = Chunker.split(payload, chunkSize: chunkSize)
        let header = Fedrec_V1_RoundMessage.with {
            $0.stageHeader = .with {
                $0.sealedFor = client
                $0.payload = Wire.payloadInfo(plan)
            }
        }
        return [header]
            + chunks.enumerated().map { index, chunk in
                .with {
                    $0.data = .with {
                        $0.index = UInt32(index)
                        $0.data = Data(chunk)
                    }
                }
            }
    }

    static func read(_ messages: [Fedrec_V1_RoundMessage], requested: Set<String>, answerLimit: Int? = nil)
        async throws -> FederatedClient<InProcessTransport.Client>.StageAnswer
    {
        let stream = AsyncThrowingStream<Fedrec_V1_RoundMessage, any Error> { continuation in
            for message in messages { continuation.yield(message) }
            continuation.finish()
        }
        return try await FederatedClient<InProcessTransport.Client>.readStage(
            RPCAsyncSequence(wrapping: stream), chunkSize: chunkSize, requested: requested, participantCount: 10,
            answerLimit: answerLimit)
    }

    @Test("inputs of several chunks for several clients are reassembled in order")
    func reassembles() async throws {
        let first = (0..<11).map { UInt8($0) }
        let second = (0..<5).map { UInt8(100 + $0) }
        let answer = try await Self.read(
            Self.input(first, for: "a") + Self.input(second, for: "b"), requested: ["a", "b"])
        guard case .inputs(let inputs) = answer else {
            Issue.record("expected inputs, got \(answer)")
            return
        }
        #expect(inputs.map(\.0) == ["a", "b"])
        #expect(inputs.map(\.1) == [first, second])
    }

    @Test("an input for a client not asked for, or a second one for the same client, is refused")
    func unrequested() async throws {
        for messages in [Self.input([1, 2], for: "c"), Self.input([1], for: "a") + Self.input([2], for: "a")] {
            let error = try #require(
                await #expect(throws: ProtocolError.self) { _ = try await Self.read(messages, requested: ["a", "b"]) })
            #expect(error.code == .unexpectedMessage && error.message.contains("not requested or sent twice"))
        }
    }

    @Test("an answer announcing more than its overall bound is refused before that input's chunks are stored")
    func overallBound() async throws {
        typealias Client = FederatedClient<InProcessTransport.Client>
        #expect(Client.maximumStageAnswerBytes(requested: 3, participantCount: 32) == 64 << 20)
        // Honest answers of a large cohort fit: a process hosting 82 of 5,000 participants is sent 82 rosters
        // of 164 bytes per participant.
        #expect(Client.maximumStageAnswerBytes(requested: 82, participantCount: 5_000) >= 82 * 5_000 * 164)
        // ...and one input never counts for more than the per-input limit.
        #expect(
            Client.maximumStageAnswerBytes(requested: 100, participantCount: 1 << 20)
                == 100 * Client.maximumStageInputBytes)
        // With a 20-byte bound: 11 + 5 bytes are taken, a third input of 8 is refused at its header.
        let messages = Self.input(Array(repeating: 1, count: 11), for: "a") + Self.input([2, 2, 2, 2, 2], for: "b")
        let answer = try await Self.read(messages, requested: ["a", "b", "c"], answerLimit: 20)
        guard case .inputs(let inputs) = answer else {
            Issue.record("expected inputs, got \(answer)")
            return
        }
        #expect(inputs.count == 2)
        let over = messages + [Self.input(Array(repeating: 3, count: 8), for: "c")[0]]
        let error = try #require(
            await #expect(throws: ProtocolError.self) {
                _ = try await Self.read(over, requested: ["a", "b", "c"], answerLimit: 20)
            })
        #expect(error.code == .oversized, "\(error)")
        #expect(error.message.contains("stage answer of more than 20 bytes for 3 client(s)"), "\(error)")
    }

    /// The next stage's inputs carried in a `SubmitUpdate` answer are checked as a `GetStage` answer is: nil
    /// (poll instead) when not ready, when one is for a client not asked for, twice for one client, or too large.
    @Test("stage inputs in an upload's answer are taken only as a GetStage answer would be")
    func inlineInputs() {
        typealias Client = FederatedClient<InProcessTransport.Client>
        func answer(_ inputs: [(String, Int)], ready: Bool = true, aborted: String = "") -> Fedrec_V1_SubmitResponse {
            .with {
                $0.accepted = true
                $0.stageReady = ready
                $0.stageAborted = aborted
                $0.stageInputs = inputs.map { input in
                    .with {
                        $0.sealedFor = input.0
                        $0.envelope = Data(repeating: 7, count: input.1)
                    }
                }
            }
        }
        let requested: Set<String> = ["a", "b"]
        guard case .inputs(let taken)? = Client.inlineStage(answer([("a", 3), ("b", 4)]), requested: requested)
        else {
            Issue.record("inputs expected")
            return
        }
        #expect(taken.map(\.0) == ["a", "b"] && taken.map(\.1.count) == [3, 4])
        if case .aborted(let reason)? = Client.inlineStage(answer([], aborted: "too few"), requested: requested) {
            #expect(reason == "too few")
        } else {
            Issue.record("aborted expected")
        }
        #expect(Client.inlineStage(nil, requested: requested) == nil)
        #expect(Client.inlineStage(answer([("a", 3)], ready: false), requested: requested) == nil)
        #expect(Client.inlineStage(answer([("c", 3)]), requested: requested) == nil)
        #expect(Client.inlineStage(answer([("a", 3), ("a", 3)]), requested: requested) == nil)
        #expect(
            Client.inlineStage(answer([("a", Client.maximumStageInputBytes + 1)]), requested: requested) == nil)
    }
}
