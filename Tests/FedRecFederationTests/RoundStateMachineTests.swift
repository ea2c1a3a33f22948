import FedRecFederation
import FedRecModel
import FedRecTensor
import Testing

@Suite struct RoundStateMachineTests {
    typealias Machine = RoundStateMachine<ManualClock.Instant>
    let data = SyntheticData()

    func machine(minimum: Int = 2, attempts: Int = 2) -> Machine {
        Machine(
            configuration: .init(
                minimumClients: minimum, roundTimeout: .seconds(10), maximumAttempts: attempts,
                validator: data.validator))
    }

    func update(_ value: Float, examples: Int = 3) -> ClientUpdate {
        let c = data.configuration
        return ClientUpdate(
            userTowerDelta: [Float](repeating: value, count: ParameterLayout.userTower(c).count),
            itemEmbeddingGradient: .dense(Matrix(rows: c.itemCount, columns: c.dimension, repeating: value)),
            exampleCount: examples, meanLoss: value)
    }

    func code(_ action: Machine.Action) -> FederationError.Code? {
        if case .rejected(let error) = action { return error.code }
        return nil
    }

    @Test func acceptsOncePerMemberRejectsTheRestAndClosesAtTheDeadline() throws {
        let clock = ManualClock()
        var m = machine()
        guard
            case .startRound(let round, 0, let cohort, let deadline) = m.openRound(
                cohort: ["a", "b", "c", "d"], now: clock.now)
        else {
            Issue.record("round did not start")
            return
        }
        #expect(round == 0 && cohort == ["a", "b", "c", "d"] && deadline == clock.now.advanced(by: .seconds(10)))
        guard case .accepted("a", 1, 3) = m.receiveUpdate(update(1, examples: 1), from: "a", round: 0) else {
            Issue.record("a not accepted")
            return
        }
        #expect(code(m.receiveUpdate(update(1), from: "a", round: 0)) == .duplicateUpdate)
        #expect(code(m.receiveUpdate(update(1), from: "zed", round: 0)) == .notInCohort)
        #expect(code(m.receiveUpdate(update(1), from: "b", round: 1)) == .wrongRound)
        var bad = update(1)
        bad.userTowerDelta[0] = .nan
        #expect(code(m.receiveUpdate(bad, from: "c", round: 0)) == .nonFinite)
        #expect(code(m.receiveUpdate(update(1), from: "c", round: 0)) == .droppedOut)  // excluded for the round
        guard case .accepted("b", 2, 1) = m.receiveUpdate(update(4, examples: 3), from: "b", round: 0) else {
            Issue.record("b not accepted")
            return
        }
        // An early timer changes nothing; d is a straggler at the deadline.
        clock.advance(by: .seconds(9))
        guard case .none = m.deadlineReached(now: clock.now) else {
            Issue.record("closed before the deadline")
            return
        }
        clock.advance(by: .seconds(1))
        guard case .closeRound(let result) = m.deadlineReached(now: clock.now) else {
            Issue.record("round did not close at the deadline")
            return
        }
        #expect(result.round == 0 && result.stragglers == ["d"] && result.excluded == ["c"])
        #expect(result.aggregate.participants == ["a", "b"] && result.aggregate.exampleCount == 4)
        #expect(isClose(Double(result.aggregate.meanDelta[0]), (1 * 1 + 3 * 4) / 4.0))
        #expect(
            result.rejections.map(\.code) == [.duplicateUpdate, .notInCohort, .wrongRound, .nonFinite, .droppedOut])
        // Late updates go nowhere; the next round is 1.
        #expect(code(m.receiveUpdate(update(1), from: "d", round: 0)) == .roundNotOpen)
        #expect(m.currentRound == 1 && m.currentAttempt == 0)
    }

    @Test("a member repeating a refused update cannot grow the round's record; an exclusion's reason comes last")
    func floodOfRefusedUpdatesIsBounded() throws {
        let clock = ManualClock()
        var m = machine()
        _ = m.openRound(cohort: ["a", "b", "c"], now: clock.now)
        guard case .accepted = m.receiveUpdate(update(1), from: "a", round: 0) else {
            Issue.record("a not accepted")
            return
        }
        let flood = 5_000
        for _ in 0..<flood { #expect(code(m.receiveUpdate(update(1), from: "a", round: 0)) == .duplicateUpdate) }
        guard case .accepted = m.receiveUpdate(update(2), from: "b", round: 0) else {
            Issue.record("b not accepted")
            return
        }
        var bad = update(1)
        bad.userTowerDelta[3] = .infinity
        guard case .closeRound(let result) = m.receiveUpdate(bad, from: "c", round: 0) else {
            Issue.record("the round did not close when its last member was excluded")
            return
        }
        #expect(result.rejections.total == flood + 1)
        #expect(result.rejections.count == result.rejections.capacity)
        #expect(result.rejections.last?.code == .nonFinite && result.rejections.last?.client == "c")
        #expect(result.excluded == ["c"] && result.aggregate.participants == ["a", "b"])
    }

    @Test func closesEarlyWhenEveryMemberHasAnsweredOrDropped() {
        let clock = ManualClock()
        var m = machine()
        _ = m.openRound(cohort: ["a", "b", "c"], now: clock.now)
        _ = m.receiveUpdate(update(1), from: "a", round: 0)
        guard case .none = m.clientDropped("b") else {
            Issue.record("closed too early")
            return
        }
        guard case .closeRound(let result) = m.receiveUpdate(update(2), from: "c", round: 0) else {
            Issue.record("did not close when the last member answered")
            return
        }
        #expect(result.droppedOut == ["b"] && result.stragglers.isEmpty)
        #expect(code(m.receiveUpdate(update(1), from: "b", round: 0)) == .roundNotOpen)
    }

    @Test func retriesWithTooFewUpdatesThenFails() {
        let clock = ManualClock()
        var m = machine(minimum: 2, attempts: 2)
        _ = m.openRound(cohort: ["a", "b"], now: clock.now)
        _ = m.receiveUpdate(update(1), from: "a", round: 0)
        clock.advance(by: .seconds(11))
        guard case .retryRound(0, 1, let reason, _) = m.deadlineReached(now: clock.now) else {
            Issue.record("no retry")
            return
        }
        #expect(reason.code == .tooFewUpdates && reason.round == 0)
        #expect(m.currentRound == 0 && m.currentAttempt == 1)
        _ = m.openRound(cohort: ["c", "d", "e"], now: clock.now)
        _ = m.clientDropped("c")
        _ = m.clientDropped("d")
        guard case .fail(let error) = m.clientDropped("e") else {
            Issue.record("did not fail after the last attempt")
            return
        }
        #expect(error.code == .retriesExhausted)
        #expect(m.currentRound == nil)
    }

    @Test func aCohortBelowTheMinimumFailsTheAttemptAtOnce() {
        var m = machine(minimum: 3, attempts: 3)
        guard case .retryRound(0, 1, _, _) = m.openRound(cohort: ["a"], now: ManualClock().now) else {
            Issue.record("no immediate retry")
            return
        }
    }

    /// Under differential privacy no attempt is retried: a round closes with whatever arrived, none included,
    /// and an abandoned secure attempt closes empty (a re-drawn cohort would raise inclusion above q).
    @Test func underPrivacyEveryAttemptClosesItsRound() throws {
        let clock = ManualClock()
        var m = Machine(
            configuration: .init(
                minimumClients: 3, roundTimeout: .seconds(10), maximumAttempts: 2, validator: data.validator,
                weighting: .uniform, closesEveryAttempt: true))
        let layout = ParameterLayout.userTower(data.configuration)
        func isEmpty(_ aggregate: AggregateUpdate) -> Bool {
            aggregate.participants.isEmpty && aggregate.exampleCount == 0 && aggregate.meanDelta.count == layout.count
                && aggregate.meanDelta.allSatisfy { $0 == 0 }
                && aggregate.meanItemEmbeddingGradient.rows == data.configuration.itemCount
                && aggregate.meanItemEmbeddingGradient.storage.allSatisfy { $0 == 0 }
        }
        // An empty draw closes round 0 at once.
        guard case .closeRound(let empty) = m.openRound(cohort: [], now: clock.now) else {
            Issue.record("an empty cohort did not close the round")
            return
        }
        #expect(empty.round == 0 && isEmpty(empty.aggregate) && empty.abandoned == nil)
        // Fewer than the minimum arrive by the deadline: round 1 closes with them, attempt 0.
        guard case .startRound(1, 0, _, _) = m.openRound(cohort: ["a", "b"], now: clock.now) else {
            Issue.record("a cohort below the minimum did not open")
            return
        }
        _ = m.receiveUpdate(update(1), from: "a", round: 1)
        clock.advance(by: .seconds(11))
        guard case .closeRound(let short) = m.deadlineReached(now: clock.now) else {
            Issue.record("a short round was not closed")
            return
        }
        #expect(short.round == 1 && short.attempt == 0 && short.aggregate.participants == ["a"])
        #expect(short.stragglers == ["b"])
        // Nobody answers: round 2 closes empty.
        _ = m.openRound(cohort: ["c"], now: clock.now)
        guard case .closeRound(let silent) = m.clientDropped("c") else {
            Issue.record("a silent round was not closed")
            return
        }
        #expect(silent.round == 2 && isEmpty(silent.aggregate) && silent.droppedOut == ["c"])
        // An abandoned (secure) attempt closes round 3 empty, with its reason.
        _ = m.openRound(cohort: ["d", "e"], now: clock.now)
        let reason = FederationError(code: .tooFewUpdates, message: "stage aborted", round: 3)
        guard case .closeRound(let abandoned) = m.abandonAttempt(reason: reason) else {
            Issue.record("an abandoned attempt was not closed")
            return
        }
        #expect(abandoned.round == 3 && isEmpty(abandoned.aggregate) && abandoned.abandoned == reason)
        #expect(abandoned.stragglers == ["d", "e"])
        #expect(m.currentRound == 4 && m.currentAttempt == 0)
    }

    @Test func manualClockWakesSleepers() async throws {
        let clock = ManualClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        async let woke: Void = clock.sleep(until: deadline, tolerance: nil)
        // Advance until the sleeper has registered and woken.
        for _ in 0..<100 {
            await Task.yield()
            clock.advance(by: .seconds(1))
        }
        try await woke
        #expect(clock.now >= deadline)
    }
}
