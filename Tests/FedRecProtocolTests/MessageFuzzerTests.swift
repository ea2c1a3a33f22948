import FedRecFederation
import FedRecFuzzing
import FedRecProtocol
import FedRecTensor
import Testing

/// The small, fast version of `fedrec bench fuzz` (which runs 1,000,000 messages).
@Suite("Message fuzzing")
struct MessageFuzzerTests {
    @Test("a seeded run of 22,000 mutated messages breaks no invariant, and every target both accepts and refuses")
    func seededRun() throws {
        var fuzzer = try MessageFuzzer(seed: 3)
        fuzzer.run(messages: 22_000)
        let report = fuzzer.report
        #expect(report.violationCount == 0, "\(report.violations.joined(separator: "\n"))")
        #expect(report.messages == 22_000)
        for target in FuzzTarget.allCases {
            let tally = try #require(report.tallies[target], "\(target)")
            #expect(tally.messages == 2_000, "\(target)")
            #expect(tally.accepted > 0 && tally.rejectedCount > 0, "\(target): \(tally)")
        }
        // The checks that matter most are reached: tampered envelopes fail authentication, replays are refused,
        // non-finite values and forged advertised keys are caught.
        #expect(report.tallies[.sealedUpdate]!.rejected["security.authenticationFailed", default: 0] > 0)
        let replays = report.tallies[.sealedUpdate]!.rejected.filter {
            $0.key == "security.replayedMessage" || $0.key == "security.outOfOrderMessage"
        }
        #expect(!replays.isEmpty)
        #expect(report.tallies[.updatePayload]!.rejected["protocol.nonFinite", default: 0] > 0)
        #expect(report.tallies[.advertisedKeys]!.rejected["secagg.invalidSignature", default: 0] > 0)
        // Every refusal of a poll is reached: bad proofs, a client not enrolled, stale stamps, replays.
        let polls = report.tallies[.poll]!.rejected
        let pollRefusals = ["authenticationFailed", "notEnrolled", "stalePoll", "replayed"].map { "protocol.\($0)" }
        for kind in pollRefusals {
            #expect(polls[kind, default: 0] > 0, "\(kind): \(polls)")
        }
    }

    @Test("the invariant checks flag what a parser must not accept")
    func invariantsCanFail() {
        let shapes = PayloadShapes(userTowerCount: 4, itemRows: 2, dimension: 2)
        let limits = (deltaNorm: 10.0, gradientNorm: 10.0, examples: 100)
        let good = ClientUpdate(
            userTowerDelta: [0.1, 0, -0.2, 0.3],
            itemEmbeddingGradient: .dense(Matrix(rows: 2, columns: 2, repeating: 1)),
            exampleCount: 5, meanLoss: 1)
        #expect(FuzzInvariants.updateProblem(good, shapes: shapes, limits: limits) == nil)
        var nonFinite = good
        nonFinite.userTowerDelta[2] = .nan
        #expect(FuzzInvariants.updateProblem(nonFinite, shapes: shapes, limits: limits) == "non-finite delta")
        var short = good
        short.userTowerDelta.removeLast()
        #expect(FuzzInvariants.updateProblem(short, shapes: shapes, limits: limits) == "delta of the wrong length")
        var large = good
        large.itemEmbeddingGradient = .dense(Matrix(rows: 2, columns: 2, repeating: 6))
        #expect(FuzzInvariants.updateProblem(large, shapes: shapes, limits: limits) == "gradient norm above its bound")
        var noExamples = good
        noExamples.exampleCount = 0
        #expect(
            FuzzInvariants.updateProblem(noExamples, shapes: shapes, limits: limits) == "example count out of bounds")

        let model = GlobalModelPayload(
            round: 3, userTower: [1, 2, 3, 4], itemEmbeddings: Matrix(rows: 2, columns: 2, repeating: 0.5))
        #expect(FuzzInvariants.assignmentProblem(model, shapes: shapes, round: 3) == nil)
        #expect(FuzzInvariants.assignmentProblem(model, shapes: shapes, round: 4) == "assignment of another round")
        var infinite = model
        infinite.itemEmbeddings.storage[1] = .infinity
        #expect(FuzzInvariants.assignmentProblem(infinite, shapes: shapes, round: 3) == "non-finite assignment")
    }
}
