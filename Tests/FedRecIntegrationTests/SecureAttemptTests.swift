import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import GRPCInProcessTransport
import Testing

@testable import FedRecCoordinator

/// The coordinator core's secure-aggregation attempts, driven directly (no client processes): a client still
/// waiting on an abandoned attempt must learn that it is over, and a late message of that attempt must not
/// exclude its sender from the next one.
@Suite("Secure aggregation attempts")
struct SecureAttemptTests {
    /// A core built for `fixture` with every user's session in place, as after enrolment.
    func enrolledCore(_ fixture: Fixture) throws -> (CoordinatorCore, [String: Identity]) {
        let options = SecureAggregationTests().options(fixture, rounds: 1)
        let coordinator = try CoordinatorBuilder.build(options: options, transport: InProcessTransport().server)
        let core = coordinator.core
        let server = try KeyFiles.loadIdentity(path: fixture.keys + "/\(CoordinatorBuilder.identityName).key")
        var clients: [String: Identity] = [:]
        for user in fixture.userIDs {
            let id = Wire.clientID(forUser: user)
            let identity = try KeyFiles.loadIdentity(path: fixture.keys + "/\(id).key")
            clients[id] = identity
            let keys = try server.keyAgreement.serverSessionKeys(
                clientPublicKey: identity.publicIdentity.keyAgreementKey)
            core.state.withLock { $0.sessions[id] = Session(identity: identity.publicIdentity, keys: keys) }
        }
        return (core, clients)
    }

    func open(_ core: CoordinatorCore, cohort: [String]) -> Machine.Action {
        let shapes = core.shapes
        return core.openSecureRound(
            cohort: cohort, seed: 7,
            model: { round in
                GlobalModelPayload(
                    round: round, userTower: [Float](repeating: 0, count: shapes.userTowerCount),
                    itemEmbeddings: Matrix(rows: shapes.itemRows, columns: shapes.dimension))
            }, options: core.secureOptions!,
            deadline: .seconds(60), weighting: .examples)
    }

    @Test("a poll for an abandoned attempt's stage is told it is over, not to wait")
    func abandonedAttemptEndsItsPolls() throws {
        let fixture = try Fixture(users: 4)
        defer { fixture.remove() }
        let (core, clients) = try enrolledCore(fixture)
        let cohort = clients.keys.sorted()
        func started(_ action: Machine.Action) -> Bool { if case .startRound = action { true } else { false } }
        func poll(attempt: Int) throws -> CoordinatorCore.StageAnswer {
            try core.stageInputs(for: cohort, round: 0, attempt: attempt, stage: 1)
        }
        func waits(_ answer: CoordinatorCore.StageAnswer) -> Bool { if case .wait = answer { true } else { false } }
        try #require(started(open(core, cohort: cohort)), "attempt 0 did not start")
        // Before anything is collected, a poll for attempt 0's roster waits.
        try #require(waits(poll(attempt: 0)), "attempt 0's roster poll did not wait")
        // Attempt 0 is abandoned and attempt 1 opens straight away.
        guard case .retryRound(_, 1, _, _) = core.finishSecure(.aborted("test")) else {
            Issue.record("attempt 0 was not retried")
            return
        }
        try #require(started(open(core, cohort: cohort)), "attempt 1 did not start")
        guard case .aborted = try poll(attempt: 0) else {
            Issue.record("a poll for attempt 0 was not told it is over")
            return
        }
        try #require(waits(poll(attempt: 1)), "attempt 1's roster poll did not wait")
        // A late advertisement of attempt 0 is refused without excluding its sender from attempt 1.
        let late = cohort[0]
        let refusal = #expect(throws: ProtocolError.self) {
            try core.receiveSecure(kind: .advertiseKeys, plaintext: [1, 2, 3], client: late, round: 0, attempt: 0)
        }
        #expect(refusal?.message.contains("a stage message of attempt 0 while attempt 1 is open") == true)
        let excluded = core.state.withLock { s in s.secure.map { $0.server.isExcluded(0) } }
        #expect(excluded == false)
    }
}
