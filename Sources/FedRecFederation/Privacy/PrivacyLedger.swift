/// The privacy spent so far by a training run and what the budget still allows.
///
/// Invariants: `history` lists runs of consecutive rounds with the same `(q, z)` (adjacent equal runs are
/// merged), each with `steps > 0`; the spent RDP curve is `Σ steps · rdpPerStep(q, z)` (additive
/// composition), so the ledger persists a few numbers, not a curve, and re-derives epsilon on load.
/// `z` is always the accounting noise multiplier (`configuration.noiseMultiplier`), also with adaptive
/// clipping, where the update itself uses `z_Δ`.
public struct PrivacyLedger: Sendable, Hashable, Codable {
    /// `steps` consecutive rounds at sampling rate `samplingRate` and noise multiplier `noiseMultiplier`.
    public struct Entry: Sendable, Hashable, Codable {
        public var samplingRate: Double
        public var noiseMultiplier: Double
        public var steps: Int
    }

    public let delta: Double
    /// Training may not take epsilon past this (nil: no limit, epsilon is only reported).
    public let epsilonBudget: Double?
    public let accountant: RDPAccountant
    /// The mechanism the next rounds will use.
    public private(set) var samplingRate: Double
    public private(set) var noiseMultiplier: Double
    public private(set) var history: [Entry]

    public init(
        samplingRate: Double, noiseMultiplier: Double, delta: Double, epsilonBudget: Double?,
        accountant: RDPAccountant = RDPAccountant()
    ) {
        precondition(samplingRate >= 0 && samplingRate <= 1, "sampling rate must lie in [0, 1]")
        precondition(noiseMultiplier >= 0, "noise multiplier must be non-negative")
        precondition(delta > 0 && delta < 1, "delta must lie in (0, 1)")
        self.samplingRate = samplingRate
        self.noiseMultiplier = noiseMultiplier
        self.delta = delta
        self.epsilonBudget = epsilonBudget
        self.accountant = accountant
        self.history = []
    }

    /// A fresh ledger for a validated configuration (its `targetEpsilon` becomes the budget).
    public init(configuration: DifferentialPrivacyConfiguration, accountant: RDPAccountant = RDPAccountant()) {
        self.init(
            samplingRate: configuration.samplingRate, noiseMultiplier: configuration.noiseMultiplier,
            delta: configuration.delta, epsilonBudget: configuration.targetEpsilon, accountant: accountant)
    }

    /// Rounds recorded so far.
    public var stepsTaken: Int { history.reduce(0) { $0 + $1.steps } }

    /// The composed RDP curve of the recorded rounds, aligned with `accountant.orders`.
    public var spentRDP: [Double] {
        var curve = [Double](repeating: 0, count: accountant.orders.count)
        for entry in history {
            let perStep = accountant.rdpPerStep(
                samplingRate: entry.samplingRate, noiseMultiplier: entry.noiseMultiplier)
            for i in curve.indices where perStep[i] != 0 { curve[i] += Double(entry.steps) * perStep[i] }
        }
        return curve
    }

    /// The `(ε, δ)` guarantee of the recorded rounds.
    public var spent: EpsilonGuarantee { accountant.epsilon(rdp: spentRDP, delta: delta) }

    /// Epsilon spent so far.
    public var epsilon: Double { spent.epsilon }

    /// Epsilon after `additionalSteps` more rounds with the current mechanism.
    public func epsilon(after additionalSteps: Int) -> Double {
        precondition(additionalSteps >= 0, "step count must be non-negative")
        let perStep = accountant.rdpPerStep(samplingRate: samplingRate, noiseMultiplier: noiseMultiplier)
        let curve = zip(spentRDP, perStep).map { base, step in step == 0 ? base : base + Double(additionalSteps) * step
        }
        return accountant.epsilon(rdp: curve, delta: delta).epsilon
    }

    /// True when `additionalSteps` more rounds stay within the budget (always true without one).
    public func canRun(additionalSteps: Int = 1) -> Bool {
        guard let budget = epsilonBudget else { return true }
        return epsilon(after: additionalSteps) <= budget
    }

    /// How many more rounds the budget allows with the current mechanism (nil: unlimited).
    public var remainingSteps: Int? {
        guard let budget = epsilonBudget else { return nil }
        return PrivacyCalibration.largestAdditionalSteps(
            spent: spentRDP,
            perStep: accountant.rdpPerStep(samplingRate: samplingRate, noiseMultiplier: noiseMultiplier),
            delta: delta, epsilonBudget: budget, accountant: accountant)
    }

    /// Throws `budgetExhausted` (with both epsilons in the message) unless `canRun(additionalSteps:)`.
    public func checkCanRun(additionalSteps: Int = 1) throws {
        guard let budget = epsilonBudget else { return }
        let after = epsilon(after: additionalSteps)
        guard after <= budget else {
            throw PrivacyError(
                code: .budgetExhausted,
                message: "\(additionalSteps) more round(s) after \(stepsTaken) would reach epsilon \(after) "
                    + "> target \(budget) at delta \(delta)",
                field: "targetEpsilon")
        }
    }

    /// Records `steps` completed rounds with the current mechanism. Recording is a fact, not a request:
    /// it is not refused past the budget (ask `canRun` before running).
    public mutating func record(steps: Int = 1) {
        precondition(steps >= 0, "step count must be non-negative")
        guard steps > 0 else { return }
        if var last = history.last, last.samplingRate == samplingRate, last.noiseMultiplier == noiseMultiplier {
            last.steps += steps
            history[history.count - 1] = last
        } else {
            history.append(Entry(samplingRate: samplingRate, noiseMultiplier: noiseMultiplier, steps: steps))
        }
    }

    /// Switches the mechanism for later rounds (e.g. the population, hence `q`, changed).
    public mutating func changeMechanism(samplingRate: Double, noiseMultiplier: Double) {
        precondition(samplingRate >= 0 && samplingRate <= 1, "sampling rate must lie in [0, 1]")
        precondition(noiseMultiplier >= 0, "noise multiplier must be non-negative")
        self.samplingRate = samplingRate
        self.noiseMultiplier = noiseMultiplier
    }
}
