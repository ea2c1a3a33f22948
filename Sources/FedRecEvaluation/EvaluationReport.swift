internal import Foundation

/// Averaged metrics of one evaluation run under `fedrec-eval-v1`.
///
/// Invariants: `values[m]![k]` exists for every metric `m` and every `k` in `cutoffs`, and is the
/// mean over the `usersEvaluated` users (0 when there are none); all sums accumulate in `Double`.
public struct EvaluationReport: Sendable, Hashable, Codable {
    /// The protocol identifier written into every report.
    public static let protocolIdentifier = "fedrec-eval-v1"

    /// Always `EvaluationReport.protocolIdentifier` for reports built here.
    public let `protocol`: String
    /// The held-out slice the figures are on (`"test"` or `"validation"`).
    public let fold: String
    /// Users with at least one held-out item (the averaging denominator).
    public let usersEvaluated: Int
    /// The reported K values, ascending.
    public let cutoffs: [Int]
    /// metric -> K -> mean value.
    public let values: [Metric: [Int: Double]]

    /// Averages `outcomes` (each with `listLength >= max(cutoffs)`).
    public init(outcomes: [UserOutcome], cutoffs: [Int], fold: String) {
        let cutoffs = Array(Set(cutoffs)).sorted()
        precondition(!cutoffs.isEmpty && cutoffs[0] > 0, "cutoffs must be positive and non-empty")
        var values: [Metric: [Int: Double]] = [:]
        for metric in Metric.allCases {
            var perK: [Int: Double] = [:]
            for k in cutoffs {
                var sum = 0.0
                for outcome in outcomes { sum += outcome.value(of: metric, at: k) }
                perK[k] = outcomes.isEmpty ? 0 : sum / Double(outcomes.count)
            }
            values[metric] = perK
        }
        self.protocol = Self.protocolIdentifier
        self.fold = fold
        self.usersEvaluated = outcomes.count
        self.cutoffs = cutoffs
        self.values = values
    }

    /// The mean of `metric` at cutoff `k`, or `nil` when `k` was not evaluated.
    public func value(_ metric: Metric, at k: Int) -> Double? {
        values[metric]?[k]
    }

    /// The headline figure, Recall@20, when 20 is among the cutoffs.
    public var headline: Double? { value(.recall, at: 20) }

    /// A compact table, one row per metric and one column per K, four decimals:
    ///
    ///     fedrec-eval-v1  fold=test  users=943
    ///               @10     @20     @50
    ///     R      0.0622  0.0997  0.2040
    ///     NDCG   ...
    public var table: String {
        func pad(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }
        var lines = ["\(self.protocol)  fold=\(fold)  users=\(usersEvaluated)"]
        lines.append("    " + cutoffs.map { pad("@\($0)", 8) }.joined())
        for metric in Metric.allCases {
            let cells = cutoffs.map { k in pad(String(format: "%.4f", value(metric, at: k) ?? .nan), 8) }
            lines.append(metric.abbreviation.padding(toLength: 4, withPad: " ", startingAt: 0) + cells.joined())
        }
        return lines.joined(separator: "\n")
    }

    /// The report as JSON (sorted keys; metrics keyed by name, then by K as a string).
    public func json(prettyPrinted: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = prettyPrinted ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Decodes a report written by `json(prettyPrinted:)`.
    public init(json: String) throws {
        self = try JSONDecoder().decode(Self.self, from: Data(json.utf8))
    }
}

extension EvaluationReport: CustomStringConvertible {
    public var description: String { table }
}
