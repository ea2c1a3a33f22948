import FedRecProtocol
import FedRecSecurity
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Receives a chunked update and answers with the SHA-256 of what it reassembled; everything else is unused.
struct ChunkSink: Fedrec_V1_Coordinator.SimpleServiceProtocol {
    func getChallenge(request: Fedrec_V1_ChallengeRequest, context: ServerContext) async throws -> Fedrec_V1_Challenge {
        throw RPCError(code: .unimplemented, message: "")
    }
    func enrol(request: Fedrec_V1_EnrolRequest, context: ServerContext) async throws -> Fedrec_V1_EnrolResponse {
        throw RPCError(code: .unimplemented, message: "")
    }
    func getRound(request: Fedrec_V1_RoundRequest, response: RPCWriter<Fedrec_V1_RoundMessage>, context: ServerContext)
        async throws
    {
        throw RPCError(code: .unimplemented, message: "")
    }
    func getStage(request: Fedrec_V1_StageRequest, response: RPCWriter<Fedrec_V1_RoundMessage>, context: ServerContext)
        async throws
    {
        throw RPCError(code: .unimplemented, message: "")
    }
    func status(request: Fedrec_V1_StatusRequest, context: ServerContext) async throws -> Fedrec_V1_StatusResponse {
        throw RPCError(code: .unimplemented, message: "")
    }
    func submitUpdate(request: RPCAsyncSequence<Fedrec_V1_UpdateMessage, any Error>, context: ServerContext)
        async throws
        -> Fedrec_V1_SubmitResponse
    {
        var messages = request.makeAsyncIterator()
        guard case .header(let header)? = try await messages.next()?.part else {
            throw ProtocolError(code: .malformedChunk, message: "no header")
        }
        var assembler = try ChunkAssembler(plan: Wire.plan(header.payload), maximumLength: 64 << 20)
        while let next = try await messages.next() {
            guard case .data(let chunk)? = next.part else {
                throw ProtocolError(code: .malformedChunk, message: "not data")
            }
            try assembler.append(index: Int(chunk.index), chunk.data)
        }
        let payload = try assembler.finish()
        return .with {
            $0.accepted = true
            $0.message = "\(payload.count) " + SHA256.hex(try! SHA256.hash(payload))
        }
    }
}

@Suite("Loopback HTTP/2")
struct LoopbackTests {
    @Test("a 25 MB sealed payload goes through gRPC's default 4 MiB message limit in chunks")
    func twentyFiveMegabytes() async throws {
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [ChunkSink()])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            let address = try #require(try await transport.listeningAddress.ipv4)
            try await withGRPCClient(
                transport: .http2NIOPosix(
                    target: .ipv4(address: "127.0.0.1", port: address.port), transportSecurity: .plaintext)
            ) { client in
                let service = Fedrec_V1_Coordinator.Client(wrapping: client)
                var payload = [UInt8](repeating: 0, count: 25_000_000)
                for i in stride(from: 0, to: payload.count, by: 4093) {
                    payload[i] = UInt8(truncatingIfNeeded: i / 4093)
                }
                let messages = try Wire.updateMessages(
                    envelope: payload, clientID: "user-1", round: 0, attempt: 0, proofKey: try SymmetricKey())
                #expect(messages.count == 25)
                let response = try await service.submitUpdate(requestProducer: {
                    try await $0.write(contentsOf: messages)
                })
                #expect(response.accepted)
                #expect(response.message == "25000000 " + SHA256.hex(try SHA256.hash(payload)))
            }
            server.beginGracefulShutdown()
        }
    }
}
