import FedRecClient
import FedRecCoordinator
import FedRecProtocol
import Foundation
import GRPCCore
import GRPCInProcessTransport
import Testing

/// An attacker on the path between a client process and the coordinator, as a client interceptor: it rewrites
/// every Enrol answer (which travels in the clear) with `alter`.
struct EnrolAnswerRewriter: ClientInterceptor {
    let alter: @Sendable (inout Fedrec_V1_EnrolResponse) -> Void

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>, context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        var response = try await next(request, context)
        guard Output.self == Fedrec_V1_EnrolResponse.self, case .success(var contents) = response.accepted else {
            return response
        }
        let alter = self.alter
        let parts = contents.bodyParts.map { @Sendable part -> StreamingClientResponse<Output>.Contents.BodyPart in
            guard case .message(let message) = part, var answer = message as? Fedrec_V1_EnrolResponse else {
                return part
            }
            alter(&answer)
            return .message(answer as! Output)
        }
        contents.bodyParts = RPCAsyncSequence(wrapping: parts)
        response.accepted = .success(contents)
        return response
    }
}

/// A client process whose enrol answer was altered on the way stops (exit 4) instead of refusing every round.
@Suite("Enrol answers altered on the way")
struct AlteredEnrolAnswerTests {
    /// Runs a coordinator and one client process whose enrol answers `alter` rewrites; returns how the client
    /// process ended (nil: it did not end with a `ClientError` within the guard's two minutes).
    func clientOutcome(alter: @escaping @Sendable (inout Fedrec_V1_EnrolResponse) -> Void) async throws
        -> ClientError?
    {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        var options = fixture.coordinatorOptions(rounds: 1)
        options.evaluationInterval = 0
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(options: options, transport: transport.server)
        let clients = try ClientBuilder.build(
            options: fixture.clientOptions(.first(100)), transport: transport.client,
            interceptors: [EnrolAnswerRewriter(alter: alter)])
        return try await withThrowingTaskGroup(of: ClientError?.self) { group in
            group.addTask {
                try await coordinator.run()
                return nil
            }
            group.addTask {
                do {
                    try await clients.run()
                    return nil
                } catch let error as ClientError {
                    return error
                }
            }
            // A guard against the endless refusal this suite is about, not a timing check.
            group.addTask {
                try await Task.sleep(for: .seconds(120))
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Larger shapes (the sealed model is smaller than expected) and smaller ones (larger than expected: it must
    /// still be read, not refused as oversized round after round).
    @Test(
        "a model configuration of other shapes is caught by the sealed model's run terms at the first round",
        arguments: [true, false])
    func otherShapes(larger: Bool) async throws {
        let outcome = try await clientOutcome { answer in
            var json =
                try! JSONSerialization.jsonObject(with: Data(answer.modelConfigurationJson.utf8))
                as! [String: Any]
            let dimension = json["dimension"] as! Int
            json["dimension"] = larger ? dimension * 2 : dimension / 2
            answer.modelConfigurationJson = String(
                decoding: try! JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        }
        let error = try #require(outcome)
        #expect(error.code == .coordinatorMismatch, "\(error)")
        #expect(error.message.contains("the enrol answer was altered on the way"), "\(error)")
    }

    /// Shapes whose model no client buffers (the configuration allows d up to 2^24) are refused at enrolment,
    /// before any chunk of an assignment is read.
    @Test("a model configuration of gigantic shapes is refused at enrolment")
    func giganticShapes() async throws {
        let outcome = try await clientOutcome { answer in
            var json =
                try! JSONSerialization.jsonObject(with: Data(answer.modelConfigurationJson.utf8))
                as! [String: Any]
            json["dimension"] = 1 << 24
            answer.modelConfigurationJson = String(
                decoding: try! JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        }
        let error = try #require(outcome)
        #expect(error.code == .setup && error.message.contains("a client takes at most"), "\(error)")
    }

    @Test("an answer that leaves a hosted client out of both lists is refused at enrolment")
    func clientLeftOut() async throws {
        let outcome = try await clientOutcome { answer in answer.accepted.removeFirst() }
        let error = try #require(outcome)
        #expect(error.code == .coordinatorMismatch, "\(error)")
        #expect(error.message.contains("neither accepts nor refuses 1 of this process's 6 client(s)"), "\(error)")
    }

    @Test("an answer accepting only clients this process does not host is a refusal")
    func onlyForeignClients() async throws {
        let outcome = try await clientOutcome { answer in
            answer.rejected = answer.accepted.map { id in
                .with {
                    $0.clientID = id
                    $0.code = "enrolmentRefused"
                    $0.message = "forged"
                }
            }
            answer.accepted = ["user-nobody"]
        }
        let error = try #require(outcome)
        #expect(error.code == .enrolmentRefused, "\(error)")
        #expect(error.message.contains("accepted none of the 6 client(s)"), "\(error)")
    }
}
