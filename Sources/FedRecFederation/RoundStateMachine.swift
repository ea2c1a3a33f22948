/// The coordinator's round logic as a pure state machine: no I/O, no clock reads, no tasks. The caller holds it
/// in a `Mutex` or an actor, feeds it events with the current instant of its injected clock, and performs the
/// actions it returns (send, schedule a timer, log, apply the aggregate).
///
/// States: `idle(round, attempt)` -> `openRound` -> `collecting` -> (every member answered, or the deadline)
/// -> `idle(round + 1, 0)` with an aggregate when at least `minimumClients` updates arrived, else
/// `idle(round, attempt + 1)` (retry with a new cohort) or, after `maximumAttempts`, `failed`. Under
/// `closesEveryAttempt` (differential privacy) every attempt closes its round, so there is no retry.
///
/// Generic over the clock's instant so tests drive it with a manual clock; a coordinator holding an
/// `any Clock<Duration>` opens the existential once when it builds the machine.
public struct RoundStateMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public struct Configuration: Sendable {
        /// Fewest accepted updates that make a round.
        public var minimumClients: Int
        /// Time from opening a round to its deadline.
        public var roundTimeout: Duration
        /// Attempts per round before giving up (1: no retry).
        public var maximumAttempts: Int
        /// Checks every update before it is aggregated.
        public var validator: UpdateValidator
        /// Example-count weights (FedAvg) or uniform weights (DP-FedAvg).
        public var weighting: AggregationWeighting = .examples
        /// Differential privacy (DP-FedAvg): every attempt closes its round with whatever arrived, none included
        /// (an aggregate of zeros, whose release is the noise alone), an abandoned secure attempt likewise, and
        /// `minimumClients` is not consulted. Drawing cohorts again until enough clients answer would make a
        /// client's chance of being in a released round exceed the sampling rate q the accountant charges.
        public var closesEveryAttempt: Bool = false

        public init(
            minimumClients: Int, roundTimeout: Duration, maximumAttempts: Int = 3, validator: UpdateValidator,
            weighting: AggregationWeighting = .examples, closesEveryAttempt: Bool = false
        ) {
            self.weighting = weighting
            self.closesEveryAttempt = closesEveryAttempt
            precondition(minimumClients > 0, "minimum clients must be positive")
            precondition(roundTimeout > .zero, "round timeout must be positive")
            precondition(maximumAttempts > 0, "maximum attempts must be positive")
            self.minimumClients = minimumClients
            self.roundTimeout = roundTimeout
            self.maximumAttempts = maximumAttempts
            self.validator = validator
        }
    }

    /// A closed round.
    public struct RoundResult: Sendable {
        public var round: Int
        public var attempt: Int
        public var aggregate: AggregateUpdate
        /// Cohort members that neither answered nor were reported dropped by the deadline.
        public var stragglers: [ClientID]
        /// Cohort members reported dropped out.
        public var droppedOut: [ClientID]
        /// Cohort members excluded for an invalid update.
        public var excluded: [ClientID]
        /// The messages refused during the round (including the ones returned as `.rejected`): the most recent
        /// ones, and how many in all. A member excluded by the message that closed the round has its reason last.
        public var rejections: BoundedLog<FederationError>
        /// Under `closesEveryAttempt`: why the attempt's contributions were lost (a secure attempt abandoned), so
        /// the round closed with an empty aggregate. Nil otherwise.
        public var abandoned: FederationError? = nil
    }

    /// What the caller must do next.
    public enum Action: Sendable {
        /// Nothing (keep waiting).
        case none
        /// Round opened: send the round to `cohort` and call `deadlineReached(now:)` at `deadline`.
        case startRound(round: Int, attempt: Int, cohort: [ClientID], deadline: Instant)
        /// The update was accepted into the aggregate.
        case accepted(client: ClientID, received: Int, outstanding: Int)
        /// The message was refused (log it; the round goes on).
        case rejected(FederationError)
        /// The round closed: apply `result.aggregate`, then open the next round.
        case closeRound(RoundResult)
        /// Too few updates: open the round again (new cohort, `attempt`), after logging `reason` and the
        /// round's `rejections`.
        case retryRound(round: Int, attempt: Int, reason: FederationError, rejections: BoundedLog<FederationError>)
        /// Too many failed attempts: stop the run.
        case fail(FederationError)
    }

    struct Collecting: Sendable {
        var round: Int
        var attempt: Int
        var cohort: [ClientID]
        var members: Set<ClientID>
        var deadline: Instant
        var reported: Set<ClientID> = []
        var droppedOut: [ClientID] = []
        var excluded: [ClientID] = []
        var rejections = BoundedLog<FederationError>()
        var aggregator: WeightedAggregator

        /// Members that have neither reported, dropped out nor been excluded.
        var outstanding: Int { members.count - reported.count - droppedOut.count - excluded.count }
    }

    enum State: Sendable {
        case idle(round: Int, attempt: Int)
        case collecting(Collecting)
        case failed(FederationError)
    }

    public let configuration: Configuration
    private(set) var state: State

    /// Starts idle before `firstRound` (a resumed coordinator passes its next round).
    public init(configuration: Configuration, firstRound: Int = 0) {
        self.configuration = configuration
        self.state = .idle(round: firstRound, attempt: 0)
    }

    /// The round that is open or will open next, or nil after failure.
    public var currentRound: Int? {
        switch state {
        case .idle(let round, _): round
        case .collecting(let c): c.round
        case .failed: nil
        }
    }

    /// The attempt of the current round.
    public var currentAttempt: Int? {
        switch state {
        case .idle(_, let attempt): attempt
        case .collecting(let c): c.attempt
        case .failed: nil
        }
    }

    public var isCollecting: Bool {
        if case .collecting = state { return true }
        return false
    }

    /// Opens the current round with `cohort` (sampled by the caller for `currentRound`/`currentAttempt`).
    /// An empty cohort, or one smaller than the minimum, fails the attempt at once (under `closesEveryAttempt`:
    /// an empty cohort closes the round at once, empty).
    public mutating func openRound(cohort: [ClientID], now: Instant) -> Action {
        guard case .idle(let round, let attempt) = state else {
            preconditionFailure("openRound called while a round is open or after failure")
        }
        let members = Set(cohort)
        precondition(members.count == cohort.count, "cohort lists a client twice")
        let layout = configuration.validator
        state = .collecting(
            Collecting(
                round: round, attempt: attempt, cohort: cohort, members: members,
                deadline: now.advanced(by: configuration.roundTimeout),
                aggregator: WeightedAggregator(
                    deltaCount: layout.layout.count, itemRows: layout.itemRows, dimension: layout.dimension,
                    weighting: configuration.weighting)))
        if cohort.isEmpty || (cohort.count < configuration.minimumClients && !configuration.closesEveryAttempt) {
            return close()
        }
        return .startRound(
            round: round, attempt: attempt, cohort: cohort, deadline: now.advanced(by: configuration.roundTimeout))
    }

    /// An update from `client` for `round`. Accepted once per cohort member and round; anything else is
    /// rejected with a reason. A member whose update fails validation is excluded from the round. Closes the
    /// round when no member is outstanding any more (the rejection then appears in the result's `rejections`).
    public mutating func receiveUpdate(_ update: ClientUpdate, from client: ClientID, round: Int) -> Action {
        guard case .collecting(var c) = state else {
            return .rejected(
                FederationError(
                    code: .roundNotOpen, message: "no round is collecting updates", client: client, round: round))
        }
        func reject(_ code: FederationError.Code, _ message: String) -> Action {
            let error = FederationError(code: code, message: message, client: client, round: round)
            c.rejections.append(error)
            state = .collecting(c)
            return .rejected(error)
        }
        guard round == c.round else {
            return reject(.wrongRound, "update for round \(round), round \(c.round) is open")
        }
        guard c.members.contains(client) else { return reject(.notInCohort, "not in the cohort of this round") }
        guard !c.reported.contains(client) else { return reject(.duplicateUpdate, "second update in one round") }
        guard !c.droppedOut.contains(client) else { return reject(.droppedOut, "client was reported dropped out") }
        guard !c.excluded.contains(client) else { return reject(.droppedOut, "client was excluded this round") }
        do {
            try configuration.validator.validate(update, client: client, round: round)
        } catch let error as FederationError {
            c.excluded.append(client)
            c.rejections.append(error)
            state = .collecting(c)
            return c.outstanding == 0 ? close() : .rejected(error)
        } catch {
            preconditionFailure("validator threw \(error)")
        }
        state = .idle(round: c.round, attempt: c.attempt)  // keep `c` uniquely referenced while aggregating
        c.aggregator.add(update, from: client)
        c.reported.insert(client)
        state = .collecting(c)
        return c.outstanding == 0
            ? close() : .accepted(client: client, received: c.reported.count, outstanding: c.outstanding)
    }

    /// `client` disconnected or crashed during the round (its update, if already accepted, stays in).
    /// Closes the round when no member is outstanding any more.
    public mutating func clientDropped(_ client: ClientID) -> Action {
        guard case .collecting(var c) = state, c.members.contains(client), !c.reported.contains(client),
            !c.droppedOut.contains(client), !c.excluded.contains(client)
        else { return .none }
        c.droppedOut.append(client)
        state = .collecting(c)
        return c.outstanding == 0 ? close() : .none
    }

    /// The timer fired. Closes the round when `now` is at or past its deadline (an early timer is ignored).
    public mutating func deadlineReached(now: Instant) -> Action {
        guard case .collecting(let c) = state, now >= c.deadline else { return .none }
        return close()
    }

    /// Secure aggregation: the open round's aggregate was computed by the masking stages, so the machine never
    /// saw an individual update. Closes the round with it when at least `minimumClients` contributed (always under
    /// `closesEveryAttempt`); otherwise the attempt is abandoned as by `abandonAttempt`.
    public mutating func closeWithSecureAggregate(
        _ aggregate: AggregateUpdate, droppedOut: [ClientID], excluded: [ClientID],
        rejections: BoundedLog<FederationError>
    ) -> Action {
        guard case .collecting(let c) = state else { return .none }
        guard aggregate.participants.count >= configuration.minimumClients || configuration.closesEveryAttempt else {
            return abandonAttempt(
                reason: FederationError(
                    code: .tooFewUpdates,
                    message: "\(aggregate.participants.count) masked input(s) from a cohort of \(c.cohort.count), "
                        + "need \(configuration.minimumClients)", round: c.round))
        }
        let contributed = Set(aggregate.participants)
        let gone = Set(droppedOut + excluded)
        let stragglers = c.cohort.filter { !contributed.contains($0) && !gone.contains($0) }
        var allRejections = c.rejections
        allRejections.append(contentsOf: rejections)
        state = .idle(round: c.round + 1, attempt: 0)
        return .closeRound(
            RoundResult(
                round: c.round, attempt: c.attempt, aggregate: aggregate, stragglers: stragglers,
                droppedOut: droppedOut, excluded: excluded, rejections: allRejections))
    }

    /// Secure aggregation: the open attempt cannot complete (too few clients survived a stage). Retries the round
    /// with the next attempt, or fails once `maximumAttempts` are used up; under `closesEveryAttempt` closes the
    /// round with an empty aggregate and `reason` as `abandoned`.
    public mutating func abandonAttempt(reason: FederationError) -> Action {
        guard case .collecting(let c) = state else { return .none }
        if configuration.closesEveryAttempt {
            return closeRound(c, aggregate: emptyAggregate(), contributors: [], abandoned: reason)
        }
        return retryOrFail(c, reason: reason)
    }

    private func emptyAggregate() -> AggregateUpdate {
        let layout = configuration.validator
        return AggregateUpdate.empty(
            deltaCount: layout.layout.count, itemRows: layout.itemRows, dimension: layout.dimension)
    }

    private mutating func closeRound(
        _ c: Collecting, aggregate: AggregateUpdate, contributors: Set<ClientID>, abandoned: FederationError? = nil
    ) -> Action {
        let gone = Set(c.droppedOut + c.excluded)
        let stragglers = c.cohort.filter { !contributors.contains($0) && !gone.contains($0) }
        state = .idle(round: c.round + 1, attempt: 0)
        return .closeRound(
            RoundResult(
                round: c.round, attempt: c.attempt, aggregate: aggregate, stragglers: stragglers,
                droppedOut: c.droppedOut, excluded: c.excluded, rejections: c.rejections, abandoned: abandoned))
    }

    private mutating func retryOrFail(_ c: Collecting, reason: FederationError) -> Action {
        if c.attempt + 1 < configuration.maximumAttempts {
            state = .idle(round: c.round, attempt: c.attempt + 1)
            return .retryRound(round: c.round, attempt: c.attempt + 1, reason: reason, rejections: c.rejections)
        }
        let error = FederationError(
            code: .retriesExhausted,
            message: "gave up after \(configuration.maximumAttempts) attempt(s): \(reason.message)",
            round: c.round)
        state = .failed(error)
        return .fail(error)
    }

    private mutating func close() -> Action {
        guard case .collecting(let c) = state else { return .none }
        let received = c.reported.count
        if received >= configuration.minimumClients, let aggregate = c.aggregator.result() {
            return closeRound(c, aggregate: aggregate, contributors: c.reported)
        }
        if configuration.closesEveryAttempt {
            return closeRound(c, aggregate: c.aggregator.result() ?? emptyAggregate(), contributors: c.reported)
        }
        let reason = FederationError(
            code: .tooFewUpdates,
            message: "\(received) update(s) from a cohort of \(c.cohort.count), need \(configuration.minimumClients)",
            round: c.round)
        return retryOrFail(c, reason: reason)
    }
}
