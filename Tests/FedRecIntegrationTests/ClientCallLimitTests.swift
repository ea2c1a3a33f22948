import FedRecProtocol
import GRPCCore
import GRPCInProcessTransport
import Testing

@testable import FedRecClient

/// How long a client's upload calls may last (a coordinator that stops reading must not hold them forever).
@Suite("Client upload call limits")
struct ClientCallLimitTests {
    typealias Client = FederatedClient<InProcessTransport.Client>

    @Test("an upload call ends the grace (plus a stage deadline) after the round's deadline or its start if later")
    func uploadTimeout() {
        let now = ContinuousClock.now
        let early = Client.uploadCallOptions(deadline: now + .seconds(90), now: now)
        #expect(early.timeout == .seconds(90) + Client.uploadGrace)
        let late = Client.uploadCallOptions(deadline: now - .seconds(5), now: now)
        #expect(late.timeout == Client.uploadGrace)
        #expect(Client.uploadGrace == .seconds(60))
        // A secure stage's call may also be collected for the stage deadline.
        let stage = Client.uploadCallOptions(deadline: now - .seconds(5), now: now, stage: .seconds(300))
        #expect(stage.timeout == .seconds(300) + Client.uploadGrace)
    }

    @Test(
        "an assignment is read up to 256 MiB or the enrolled model plus 1 MiB and the largest secure section, whichever is more"
    )
    func assignmentBound() {
        let small = PayloadShapes(userTowerCount: 100, itemRows: 10, dimension: 8)
        #expect(Client.maximumAssignmentBytes(small) == 256 << 20)
        let large = PayloadShapes(userTowerCount: 1 << 20, itemRows: 1 << 20, dimension: 64)
        // A secure section: 64 KiB of terms and 97 bytes per participant (an id of up to 64 bytes, its identity
        // key and framing) for up to 2^16 participants.
        #expect(Client.secureSectionBytes == (64 << 10) + 97 * 65_536)
        #expect(Client.maximumAssignmentBytes(large) == large.globalModelByteCount + (1 << 20) + Client.secureSectionBytes)
    }
}
