import FedRecProtocol
import GRPCCore
import Testing

@testable import FedRecCoordinator

@Suite("SubmitUpdate failures")
struct SubmitFailureTests {
    func refusal(_ client: String) -> ProtocolError {
        ProtocolError(code: .authenticationFailed, message: "sealed box failed", client: client, round: 3)
    }

    @Test("one refusal fails the call as it is")
    func oneRefusal() {
        let failure = CoordinatorService.failure(
            broken: nil, refusals: [refusal("a")], refused: ["a"], submitted: 2, accepted: 1)
        #expect(failure.message == refusal("a").description)
        #expect(Array(failure.metadata[stringValues: Wire.acceptedMetadataKey]) == ["1"])
    }

    @Test("many refusals: the message names the first ten and counts the rest; the metadata lists them all")
    func manyRefusals() {
        let clients = (0..<25).map { "user-\($0)" }
        let failure = CoordinatorService.failure(
            broken: nil, refusals: clients.map(refusal), refused: clients, submitted: 30, accepted: 5)
        #expect(failure.message.hasPrefix("25 of 30 messages refused: user-0: sealed box failed; "))
        #expect(failure.message.contains("user-9: sealed box failed; and 15 more"))
        #expect(!failure.message.contains("user-10:"))
        #expect(Array(failure.metadata[binaryValues: Wire.refusedMetadataKey]).count == 25)
        #expect(Array(failure.metadata[stringValues: Wire.acceptedMetadataKey]) == ["5"])
    }

    @Test("a broken stream leads the message, with the refusals before it")
    func brokenStream() {
        let broken = ProtocolError(code: .malformedChunk, message: "expected a data chunk", client: "b", round: 3)
        let failure = CoordinatorService.failure(
            broken: broken, refusals: [refusal("a")], refused: ["a", "b"], submitted: 2, accepted: 0)
        #expect(failure.message.hasPrefix(broken.description))
        #expect(failure.message.contains("before it, 1 of 2 messages refused: a: sealed box failed"))
        #expect(failure.code == broken.rpcErrorCode)
    }
}
