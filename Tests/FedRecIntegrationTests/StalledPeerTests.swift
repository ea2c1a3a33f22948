import FedRecClient
import FedRecCoordinator
import FedRecProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Peers that connect and then say nothing must not hold a process forever.
struct StalledPeerTests {
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

    @Test(
        "a coordinator that accepts the connection and never answers is reported unreachable",
        .timeLimit(.minutes(1)))
    func silentCoordinatorIsUnreachable() async throws {
        let fixture = try Fixture(users: 2)
        defer { fixture.remove() }
        // A listening socket nobody serves: the kernel completes connections into its backlog, nothing answers.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 16) == 0
                    && getsockname(listener, $0, &length) == 0
            }
        }
        try #require(bound)
        var options = fixture.clientOptions(.first(1))
        options.connectTimeout = .seconds(1)
        let client = try ClientBuilder.build(
            options: options,
            transport: try HTTP2ClientTransport.Posix(
                target: .ipv4(address: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port))),
                transportSecurity: .plaintext))
        await #expect {
            try await client.run()
        } throws: { error in
            (error as? ClientError)?.code == .unreachable
        }
    }
}
