import FedRecClient
import FedRecCoordinator
import FedRecProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

struct DrainTests {
    @Test("a peer holding a stream open does not keep a coordinator that completed its rounds from stopping")
    func stalledStreamIsCutAfterTheLastRound() async throws {
        let fixture = try Fixture(users: 4)
        defer { fixture.remove() }
        var options = fixture.coordinatorOptions(rounds: 1)
        options.evaluationInterval = 0
        let serverTransport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
        let coordinator = try CoordinatorBuilder.build(options: options, transport: serverTransport)
        let outcome = try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await coordinator.run()
                return "coordinator stopped"
            }
            let port = try #require(try await serverTransport.listeningAddress.ipv4).port
            // A stream that sends its headers and then nothing, for as long as the server keeps it.
            group.addTask {
                try? await withGRPCClient(
                    transport: .http2NIOPosix(
                        target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
                ) { rogue in
                    let service = Fedrec_V1_Coordinator.Client(wrapping: rogue)
                    _ = try? await service.submitUpdate(requestProducer: { _ in
                        try? await Task.sleep(for: .seconds(3_600))
                    })
                }
                return "stalled stream ended"
            }
            let clients = try ClientBuilder.build(
                options: fixture.clientOptions(.first(100)),
                transport: try HTTP2ClientTransport.Posix(
                    target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext))
            group.addTask {
                try await clients.run()
                return "clients finished"
            }
            // A guard against the hang this test is about (not a timing check: the drain limit is 5 s).
            group.addTask {
                try await Task.sleep(for: .seconds(120))
                return "timed out"
            }
            var seen: [String] = []
            while seen.count < 3, let next = try await group.next() {
                seen.append(next)
                if next == "timed out" { break }
            }
            group.cancelAll()
            return seen
        }
        #expect(!outcome.contains("timed out"), "\(outcome)")
        #expect(Set(outcome) == ["coordinator stopped", "stalled stream ended", "clients finished"], "\(outcome)")
        #expect(coordinator.core.completedRounds == 1)
    }
}
