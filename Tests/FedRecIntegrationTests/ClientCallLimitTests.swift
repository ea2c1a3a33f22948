import GRPCCore
import GRPCInProcessTransport
import Testing

@testable import FedRecClient

/// How long a client's upload calls may last (a coordinator that stops reading must not hold them forever).
@Suite("Client upload call limits")
struct ClientCallLimitTests {
    typealias Client = FederatedClient<InProcessTransport.Client>

    @Test("an upload call ends the grace after the round's deadline, or the grace after its start when later")
    func uploadTimeout() {
        let now = ContinuousClock.now
        let early = Client.uploadCallOptions(deadline: now + .seconds(90), now: now)
        #expect(early.timeout == .seconds(90) + Client.uploadGrace)
        let late = Client.uploadCallOptions(deadline: now - .seconds(5), now: now)
        #expect(late.timeout == Client.uploadGrace)
        #expect(Client.uploadGrace == .seconds(60))
    }
}
